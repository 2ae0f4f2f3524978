"""A small asyncio client for etcd v3's JSON gateway, on the standard library.

etcd serves, on its client port, the gRPC API and a gateway that maps each
call to an HTTP/1.1 POST with a JSON body: ``/v3/kv/range``, ``/v3/kv/put``,
``/v3/kv/txn``, ``/v3/lease/grant``, ``/v3/watch`` and so on. In those bodies
keys and values are base64 strings and int64 fields are decimal strings, so
``{"key": "Zm9v", "revision": "12"}``. The gateway sends a reply as one JSON
object, except for the streaming calls (watch, lease keep-alive), whose reply
is a chunked body of newline-separated ``{"result": ...}`` or
``{"error": ...}`` objects. An error reply has an HTTP error status and a body
``{"error": ..., "message": ..., "code": <gRPC status code>}``. This is how
etcd 3.4 behaves (checked against 3.4.23). The client needs only the
standard library: with the gRPC client etcd3aio instead, importing
fleetd.server took 54 MiB of RSS, and without it 41 MiB (ru_maxrss,
Python 3.11).

``GatewayClient`` keeps a small pool of keep-alive connections. A call takes
an idle connection, or opens one, and uses it alone until the reply is read,
so concurrent calls never share a connection mid-request. Connections go to
the endpoint that last worked, and to the next endpoint when one cannot be
reached or a call to it times out. Nothing waits between attempts, so the
first call after etcd comes back succeeds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

Json = dict[str, Any]

DEFAULT_PORT = 2379
# Maximum calls in flight at once; further calls wait for a free connection.
# Each call uses its own connection, and etcd serves them side by side.
MAX_CONNECTIONS = 16
# Limit of the stream reader's buffer, which also bounds one header line.
_READ_LIMIT = 1 << 20
# A watch connection idle this long gets TCP keep-alive probes (seconds).
# A peer that vanished without closing the connection (a host powered off, a
# network cut) then fails the watch after about 10 + 5 * 3 s, not never.
_KEEPALIVE_IDLE = 10
_KEEPALIVE_INTERVAL = 5
_KEEPALIVE_PROBES = 3

# The gRPC status codes etcd puts in the "code" field of an error reply.
GRPC_CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
UNAUTHENTICATED = 16
# etcd's message when it does not know a token: after --auth-token-ttl of
# disuse, and at times after a restart (seen with etcd 3.4.23).
INVALID_TOKEN_MESSAGE = "invalid auth token"


class GatewayError(Exception):
    """A gateway call failed: no connection, a dropped connection or a bad reply."""


class EtcdStatusError(GatewayError):
    """etcd returned an error for a call; ``code`` is its gRPC status code."""

    def __init__(self, code: int, message: str) -> None:
        name = GRPC_CODE_NAMES[code] if 0 <= code < len(GRPC_CODE_NAMES) else code
        super().__init__(f"{name}: {message}")
        self.code = code
        self.message = message

    @property
    def token_rejected(self) -> bool:
        """Whether etcd rejected the auth token, so authenticating again may help."""
        return self.code == UNAUTHENTICATED or INVALID_TOKEN_MESSAGE in self.message


class _StaleConnection(GatewayError):
    """A reused connection closed before any byte of the reply arrived."""


# -- encoding -------------------------------------------------------------


def encode_bytes(data: bytes) -> str:
    """Encode a key or value as the gateway expects bytes: base64 text."""
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str | None) -> bytes:
    """Decode a base64 field of a reply; a missing field is empty bytes."""
    if not text:
        return b""
    try:
        # binascii directly: base64.b64decode's checks cost twice the decoding.
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as err:
        raise GatewayError(f"invalid base64 in etcd's reply: {text[:40]!r}") from err


def decode_int(value: str | int | None) -> int:
    """Decode an int64 field, which the gateway sends as a string; missing is 0."""
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError as err:
        raise GatewayError(f"invalid integer in etcd's reply: {value!r}") from err


def prefix_range_end(prefix: bytes) -> bytes:
    """Return the range end that selects every key starting with ``prefix``.

    That is the prefix with its last byte below 0xff incremented and the
    bytes after it dropped. A prefix of only 0xff bytes, or an empty one,
    gives ``b"\\0"``, which etcd reads as "every key from the start key on".
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def parse_messages(body: bytes) -> list[Json]:
    """Parse a reply body: one JSON object, or several separated by newlines."""
    messages: list[Json] = []
    for line in body.split(b"\n"):
        if line.strip():
            messages.append(_parse_json(line))
    return messages


def _parse_json(data: bytes) -> Json:
    try:
        message = json.loads(data)
    except ValueError as err:
        raise GatewayError(
            f"etcd's reply is not JSON ({err}): {data[:80]!r}; check that the "
            "endpoint is an etcd v3 client URL"
        ) from err
    if not isinstance(message, dict):
        raise GatewayError(f"etcd's reply is not a JSON object: {data[:80]!r}")
    return message


def status_error(message: Json, http_status: int = 0) -> EtcdStatusError:
    """Build the error of an error reply, in either of the gateway's two forms.

    A plain call's body is ``{"error": text, "message": text, "code": n}``.
    An error inside a stream is ``{"error": {"grpc_code": n, "message": ...}}``.
    """
    error = message.get("error")
    if isinstance(error, dict):
        code = error.get("grpc_code", 2)
        text = error.get("message", "")
    else:
        code = message.get("code", 2)
        text = message.get("message") or error or f"HTTP status {http_status}"
    if not isinstance(code, int):
        code = 2
    return EtcdStatusError(code, str(text))


def _error_reply(status: int, path: str, body: bytes) -> GatewayError:
    """Build the error of a reply with HTTP status ``status``, JSON or not."""
    try:
        messages = parse_messages(body)
    except GatewayError:
        return GatewayError(
            f"HTTP status {status} for {path}: {body[:80]!r}; check that the "
            "endpoint is an etcd v3 client URL"
        )
    return status_error(messages[0] if messages else {}, status)


def stream_result(message: Json) -> Json:
    """Return the ``result`` of one stream message, raising its error if any."""
    if "error" in message:
        raise status_error(message)
    result = message.get("result")
    if not isinstance(result, dict):
        raise GatewayError(f"etcd's stream message has no result: {message!r:.80}")
    return result


# -- endpoints ------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One etcd client URL, split into the parts a connection needs."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        """The ``host:port`` of the Host header, with brackets for IPv6."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}"


def parse_endpoint(url: str) -> Endpoint:
    """Parse one etcd URL; ``HOST:PORT`` without a scheme means http."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError as err:
        raise GatewayError(f"invalid etcd endpoint {url!r}: {err}") from err
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise GatewayError(
            f"invalid etcd endpoint {url!r}: use http://HOST:PORT or "
            "https://HOST:PORT, with an IPv6 address in brackets"
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as err:
        raise GatewayError(f"invalid etcd endpoint {url!r}: {err}") from err
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise GatewayError(
            f"invalid etcd endpoint {url!r}: remove the path; an endpoint is "
            "only a scheme, a host and a port"
        )
    host = parts.hostname
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError as err:
            raise GatewayError(f"invalid etcd endpoint {url!r}: {err}") from err
    return Endpoint(parts.scheme, host, port)


def parse_endpoints(urls: Sequence[str]) -> tuple[list[Endpoint], bool]:
    """Parse etcd URLs; returns the endpoints and whether they use TLS."""
    endpoints = [parse_endpoint(url) for url in urls]
    if not endpoints:
        raise GatewayError("no etcd endpoint given: set --endpoint or etcd_servers")
    schemes = {endpoint.scheme for endpoint in endpoints}
    if len(schemes) > 1:
        raise GatewayError(
            f"etcd endpoints {', '.join(urls)} mix http and https: use one scheme"
        )
    return endpoints, schemes == {"https"}


# -- HTTP/1.1 -------------------------------------------------------------


class _Connection:
    """One HTTP/1.1 connection to an endpoint, used by one call at a time."""

    def __init__(
        self,
        endpoint: Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.endpoint = endpoint
        self.reader = reader
        self.writer = writer
        # Requests sent on this connection, the current one included.
        self.requests = 0
        # Whether the status line of the current request's reply has arrived.
        self.replied = False
        self.reusable = True

    def usable(self) -> bool:
        """Return whether the idle connection is still open with nothing unread."""
        return (
            self.reusable
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.reader.exception() is None
        )

    def close(self) -> None:
        self.reusable = False
        self.writer.close()

    async def wait_closed(self) -> None:
        """Close, and wait until the socket is closed."""
        self.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def keep_alive_probes(self) -> None:
        """Turn on TCP keep-alive, so a silently vanished peer fails reads."""
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", _KEEPALIVE_IDLE),
            ("TCP_KEEPINTVL", _KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", _KEEPALIVE_PROBES),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)

    async def send(self, path: str, body: bytes, token: str) -> None:
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {self.endpoint.authority}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if token:
            head += f"Authorization: {token}\r\n"
        self.requests += 1
        self.replied = False
        self.writer.write(head.encode("latin-1") + b"\r\n" + body)
        await self.writer.drain()

    async def read_head(self) -> tuple[int, dict[str, str]]:
        """Read the status line and headers; returns the status and the headers."""
        status_line = await self.reader.readline()
        if not status_line:
            if self.requests > 1:
                raise _StaleConnection(f"{self.endpoint.url} closed the connection")
            raise GatewayError(
                f"{self.endpoint.url} closed the connection without a reply"
            )
        self.replied = True
        version, _, rest = status_line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise GatewayError(
                f"{self.endpoint.url} sent no HTTP reply: {status_line[:80]!r}; "
                "check that the endpoint is an etcd v3 client URL"
            )
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if not line.endswith(b"\n"):
                raise GatewayError(f"{self.endpoint.url} closed the connection")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if version == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
            self.reusable = False
        return int(code), headers

    async def read_chunks(self, headers: dict[str, str]) -> AsyncIterator[bytes]:
        """Yield the body's bytes as they arrive, in whatever framing it has."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await self.reader.readline()
                try:
                    size = int(size_line.split(b";")[0], 16)
                except ValueError as err:
                    raise GatewayError(
                        f"{self.endpoint.url} closed the connection mid-reply"
                        if not size_line
                        else f"invalid chunk size from {self.endpoint.url}: "
                        f"{size_line[:40]!r}"
                    ) from err
                if size == 0:
                    await self._skip_trailers()
                    return
                chunk = await self._read_exactly(size + 2)
                yield chunk[:-2]
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as err:
                raise GatewayError(
                    f"invalid Content-Length from {self.endpoint.url}: "
                    f"{headers['content-length']!r}"
                ) from err
            if length:
                yield await self._read_exactly(length)
        else:
            # The body runs until the server closes the connection.
            self.reusable = False
            while chunk := await self.reader.read(_READ_LIMIT):
                yield chunk

    async def read_body(self, headers: dict[str, str]) -> bytes:
        return b"".join([chunk async for chunk in self.read_chunks(headers)])

    async def _skip_trailers(self) -> None:
        while True:
            line = await self.reader.readline()
            if not line.endswith(b"\n"):
                raise GatewayError(f"{self.endpoint.url} closed the connection")
            if line in (b"\r\n", b"\n"):
                return

    async def _read_exactly(self, size: int) -> bytes:
        try:
            return await self.reader.readexactly(size)
        except asyncio.IncompleteReadError as err:
            raise GatewayError(
                f"{self.endpoint.url} closed the connection mid-reply"
            ) from err


# -- the client -----------------------------------------------------------


def ssl_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """Build the TLS context for etcd: ``ca_file`` or the system's CAs.

    ``cert_file`` and ``key_file`` are the client certificate and its key
    for etcd's --client-cert-auth. Raises ``GatewayError`` naming the file
    that cannot be read or parsed.
    """
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as err:
        raise GatewayError(f"cannot load the CA file {ca_file}: {err}") from err
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as err:
            raise GatewayError(
                f"cannot load the certificate {cert_file} with key "
                f"{key_file or '(in the certificate file)'}: {err}"
            ) from err
    return context


class GatewayClient:
    """Calls to etcd's JSON gateway over a pool of keep-alive connections.

    ``timeout`` bounds each call from the moment it has a connection slot:
    connecting, sending and reading the reply. ``tls`` is used for every
    endpoint when given. With a ``username``, the client authenticates
    before its first call and again whenever etcd rejects the token.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        timeout: float,
        tls: ssl.SSLContext | None = None,
        username: str = "",
        password: str = "",
    ) -> None:
        if not endpoints:
            raise GatewayError("no etcd endpoint given")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._tls = tls
        self._username = username
        self._password = password
        self._token = ""
        self._auth_lock = asyncio.Lock()
        self._preferred = 0
        # Connections of open streams (watches), which are outside the pool.
        self._streams: set[_Connection] = set()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    async def close(self) -> None:
        """Close the idle connections; calls after this fail."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(connection.wait_closed() for connection in idle))

    # -- calls ------------------------------------------------------------

    async def call(self, path: str, request: Json) -> Json:
        """POST ``request`` to ``path`` and return etcd's reply.

        Raises ``EtcdStatusError`` when etcd returns an error, ``GatewayError``
        when no endpoint can be reached or a connection fails, and
        ``TimeoutError`` after ``timeout`` seconds.
        """
        messages = await self._call_with_token(path, request)
        if len(messages) != 1:
            raise GatewayError(f"etcd sent {len(messages)} objects for {path}, not 1")
        return messages[0]

    async def call_stream(self, path: str, request: Json) -> Json:
        """POST one request to a streaming path; return the first ``result``.

        For the lease keep-alive, which etcd serves as a stream: the gateway
        ends the stream after the reply to a single request.
        """
        messages = await self._call_with_token(path, request)
        if not messages:
            raise GatewayError(f"etcd ended the stream of {path} without a reply")
        return stream_result(messages[0])

    async def authenticate(self) -> None:
        """Get a new auth token for the username and password."""
        reply = await self._exchange(
            "/v3/auth/authenticate",
            json.dumps({"name": self._username, "password": self._password}).encode(),
            token="",
        )
        token = reply[0].get("token") if reply else None
        if not isinstance(token, str) or not token:
            raise GatewayError("etcd returned no auth token")
        self._token = token

    async def _call_with_token(self, path: str, request: Json) -> list[Json]:
        body = json.dumps(request, separators=(",", ":")).encode()
        if self._username and not self._token:
            await self._renew_token("")
        token = self._token
        try:
            return await self._exchange(path, body, token)
        except EtcdStatusError as err:
            if not (self._username and err.token_rejected):
                raise
        log.info(
            "etcd rejected the auth token of user %s; authenticating again",
            self._username,
        )
        await self._renew_token(token)
        return await self._exchange(path, body, self._token)

    async def _renew_token(self, rejected: str) -> None:
        """Authenticate, unless a concurrent call replaced ``rejected`` already."""
        async with self._auth_lock:
            if self._token == rejected:
                await self.authenticate()

    async def _exchange(self, path: str, body: bytes, token: str) -> list[Json]:
        """Send one request on a pooled connection and return the reply's objects."""
        async with self._slots:
            connection: _Connection | None = None
            try:
                async with asyncio.timeout(self.timeout):
                    connection = self._take_idle()
                    if connection is None:
                        connection = await self._connect()
                    try:
                        status, reply = await self._request(
                            connection, path, body, token
                        )
                    except _StaleConnection:
                        # etcd closed the idle connection without replying,
                        # usually because it restarted while the connection
                        # sat in the pool, so it never read the request: send
                        # it again on a new connection.
                        # NOTE: if etcd crashed after applying the request but
                        # before replying, a write is applied twice.
                        connection.close()
                        connection = await self._connect()
                        status, reply = await self._request(
                            connection, path, body, token
                        )
            except BaseException as err:
                if connection is not None:
                    connection.close()
                    if isinstance(err, TimeoutError):
                        self._skip_endpoint(connection.endpoint)
                raise
            self._release(connection)
        if status != 200:
            raise _error_reply(status, path, reply)
        return parse_messages(reply)

    async def _request(
        self, connection: _Connection, path: str, body: bytes, token: str
    ) -> tuple[int, bytes]:
        try:
            await connection.send(path, body, token)
            status, headers = await connection.read_head()
            return status, await connection.read_body(headers)
        except OSError as err:
            if connection.requests > 1 and not connection.replied:
                raise _StaleConnection(str(err)) from err
            raise GatewayError(
                f"connection to {connection.endpoint.url} failed: {err}"
            ) from err

    def _take_idle(self) -> _Connection | None:
        preferred = self.endpoints[self._preferred]
        while self._idle:
            connection = self._idle.pop()
            if connection.usable() and connection.endpoint == preferred:
                return connection
            connection.close()
        return None

    def _skip_endpoint(self, endpoint: Endpoint) -> None:
        """Prefer the endpoint after ``endpoint``, which did not reply in time.

        An etcd that is stopped (SIGSTOP) or stalled still accepts
        connections, because the kernel completes them, so only a timeout
        shows it. Without this, every call would go on to that endpoint.
        """
        count = len(self.endpoints)
        if count == 1 or self.endpoints[self._preferred] != endpoint:
            return
        self._preferred = (self._preferred + 1) % count
        log.warning(
            "etcd endpoint %s did not reply within %gs; using %s",
            endpoint.url,
            self.timeout,
            self.endpoints[self._preferred].url,
        )
        # A watch on that endpoint would wait for its next event forever, so
        # its connection is closed: the watch fails, and its owner watches
        # again through the next endpoint.
        for connection in list(self._streams):
            if connection.endpoint == endpoint:
                connection.close()

    def _release(self, connection: _Connection) -> None:
        if (
            self._closed
            or not connection.usable()
            or len(self._idle) >= MAX_CONNECTIONS
        ):
            connection.close()
        else:
            self._idle.append(connection)

    async def _connect(self) -> _Connection:
        """Open a connection to the first endpoint that accepts, from the last good one.

        Each endpoint gets an equal share of the timeout, so one that drops
        packets leaves time for the others.
        """
        if self._closed:
            raise GatewayError("the etcd client is closed")
        count = len(self.endpoints)
        failures: list[str] = []
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            try:
                async with asyncio.timeout(self.timeout / count):
                    reader, writer = await asyncio.open_connection(
                        endpoint.host,
                        endpoint.port,
                        ssl=self._tls,
                        server_hostname=endpoint.host if self._tls else None,
                        limit=_READ_LIMIT,
                    )
            except TimeoutError:
                failures.append(f"{endpoint.url}: no connection within the timeout")
                continue
            except OSError as err:
                # asyncio replaces strerror with "Connect call failed (...)",
                # and an SSLError's errno is OpenSSL's, not the system's.
                reason = str(err)
                if err.errno and not isinstance(err, ssl.SSLError):
                    reason = os.strerror(err.errno)
                failures.append(f"{endpoint.url}: {reason}")
                continue
            if index != self._preferred:
                log.warning(
                    "etcd endpoint %s failed (%s); using %s",
                    self.endpoints[self._preferred].url,
                    failures[0] if failures else "unknown error",
                    endpoint.url,
                )
                self._preferred = index
            return _Connection(endpoint, reader, writer)
        raise GatewayError(f"cannot connect to etcd: {'; '.join(failures)}")

    # -- streams ----------------------------------------------------------

    async def stream(self, path: str, request: Json) -> AsyncGenerator[Json, None]:
        """POST ``request`` and yield the ``result`` of each message etcd streams.

        The stream gets a connection of its own, outside the pool and with
        TCP keep-alive on, closed when the generator ends or is closed. The
        timeout covers connecting and the reply's headers, not the wait for
        messages. A clean end of the stream returns; a dropped connection
        raises ``GatewayError``.
        """
        body = json.dumps(request, separators=(",", ":")).encode()
        if self._username and not self._token:
            await self._renew_token("")
        async with asyncio.timeout(self.timeout):
            connection = await self._connect()
        self._streams.add(connection)
        try:
            connection.keep_alive_probes()
            async with asyncio.timeout(self.timeout):
                try:
                    await connection.send(path, body, self._token)
                    status, headers = await connection.read_head()
                except OSError as err:
                    raise GatewayError(
                        f"connection to {connection.endpoint.url} failed: {err}"
                    ) from err
                if status != 200:
                    reply = await connection.read_body(headers)
                    raise _error_reply(status, path, reply)
            pending = b""
            try:
                async for chunk in connection.read_chunks(headers):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield stream_result(_parse_json(line))
            except OSError as err:
                raise GatewayError(
                    f"connection to {connection.endpoint.url} failed: {err}"
                ) from err
            if pending.strip():
                yield stream_result(_parse_json(pending))
        finally:
            self._streams.discard(connection)
            await connection.wait_closed()

    async def watch(self, create_request: Json) -> AsyncGenerator[Json, None]:
        """Open a watch and yield its responses, the creation reply included.

        When etcd cancels the watch at creation because it rejected the auth
        token, this authenticates again and opens the watch once more.
        """
        body = {"create_request": create_request}
        if self._username and not self._token:
            await self._renew_token("")
        token = self._token
        stream, first = await self._start_watch(body)
        reason = str(first.get("cancel_reason", ""))
        if self._username and first.get("canceled") and _is_auth_rejection(reason):
            await stream.aclose()
            log.info(
                "etcd rejected the auth token of user %s for a watch; "
                "authenticating again",
                self._username,
            )
            await self._renew_token(token)
            stream, first = await self._start_watch(body)
        try:
            yield first
            async for response in stream:
                yield response
        finally:
            await stream.aclose()

    async def _start_watch(self, body: Json) -> tuple[AsyncGenerator[Json, None], Json]:
        """Open a watch stream; returns it and its first response."""
        stream = self.stream("/v3/watch", body)
        try:
            return stream, await anext(stream)
        except StopAsyncIteration:
            raise GatewayError("etcd ended the watch before creating it") from None


def _is_auth_rejection(reason: str) -> bool:
    return INVALID_TOKEN_MESSAGE in reason or "Unauthenticated" in reason
