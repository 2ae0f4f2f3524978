"""A small HTTP/1.1 server on asyncio streams, for the fleet API.

The API needs little of HTTP: requests with a body of known length or in
chunks, replies of known length, one streamed reply (the journal), and
keep-alive connections that serve one request at a time. This module does that
on the standard library, which keeps fleetd's memory down: the aiohttp server
it replaces cost about 13 MiB of RSS in imports alone.

The handler gets a ``Request`` and returns a ``Response``, or the
``ChunkedReply`` it opened with ``Request.stream``. This module rejects
malformed requests itself, with the ``error_reply`` the server was built
with, and closes the connection after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote

log = logging.getLogger(__name__)

# Bytes of one request line or header line; also the stream reader's limit.
MAX_LINE_BYTES = 16 * 1024
MAX_HEADERS = 100
# A body the handler left unread is read and dropped up to this size, so the
# connection can take the next request. A larger one closes the connection.
MAX_UNREAD_BODY = 1024 * 1024
# A connection with no request in progress for this long is closed (seconds).
IDLE_TIMEOUT = 75.0
# Time a client has to send a whole request head (seconds).
HEAD_TIMEOUT = 30.0
# Time a client has to send a whole request body (seconds).
BODY_TIMEOUT = 60.0
# Connections served at once. A client over the limit is disconnected at
# once, so a flood of connections cannot take every file descriptor fleetd
# needs for etcd and D-Bus.
MAX_CONNECTIONS = 512
# Time a TLS client has to finish its handshake (seconds). asyncio's default
# is 60 s, and a half-open handshake keeps a file descriptor open that long.
TLS_HANDSHAKE_TIMEOUT = 10.0
# Maximum digits of a Content-Length, so int() never converts a huge number.
MAX_LENGTH_DIGITS = 18
# A chunk size line: hex digits, then an optional extension after ";".
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?\r?\n")


class RequestError(Exception):
    """A request this server rejects; the reply has status ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Response:
    """A reply whose whole body is known: status, headers and body."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class ChunkedReply:
    """A reply sent piece by piece: in chunked transfer coding over HTTP/1.1,
    and ended by closing the connection for an HTTP/1.0 client."""

    def __init__(
        self, writer: asyncio.StreamWriter, status: int, chunked: bool
    ) -> None:
        self._writer = writer
        self.status = status
        self.chunked = chunked
        self.finished = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one chunk; empty data sends nothing."""
        if not data or self.finished:
            return
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self._writer.write(data)
        await self._writer.drain()

    async def finish(self) -> None:
        """Send the last chunk, which ends the reply."""
        if self.finished:
            return
        self.finished = True
        if self.chunked:
            self._writer.write(b"0\r\n\r\n")
            await self._writer.drain()


HttpReply = Response | ChunkedReply
Handler = Callable[["Request"], Awaitable[HttpReply]]


@dataclass
class Request:
    """One request: its head, parsed, and its body, read on demand."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]  # names in lower case, in order
    _reader: asyncio.StreamReader = field(repr=False)
    _writer: asyncio.StreamWriter = field(repr=False)
    _body_left: bool = field(default=False, repr=False)
    _body_started: bool = field(default=False, repr=False)
    # Whether stream() sent the head of a reply.
    streamed: bool = field(default=False, repr=False)

    @property
    def raw_path(self) -> str:
        """The path as sent, percent escapes kept, without the query."""
        return self.target.partition("?")[0]

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    @property
    def query(self) -> dict[str, list[str]]:
        """The query's values by name, decoded, in the order sent."""
        return parse_qs(self.target.partition("?")[2], keep_blank_values=True)

    def header(self, name: str, default: str = "") -> str:
        """Return the first value of header ``name`` (any case), or ``default``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key == lowered:
                return value
        return default

    def header_values(self, name: str) -> list[str]:
        """Return every value of header ``name`` (any case), in order."""
        lowered = name.lower()
        return [value for key, value in self.headers if key == lowered]

    @property
    def keep_alive(self) -> bool:
        if self.version == "HTTP/1.0":
            return False
        return "close" not in self.header("connection").lower()

    @property
    def reply_version(self) -> str:
        """HTTP/1.0 for an HTTP/1.0 client, which may not know 1.1's framing."""
        return "HTTP/1.0" if self.version == "HTTP/1.0" else "HTTP/1.1"

    def closed(self) -> bool:
        """Tell whether the client's connection is closing or gone."""
        return self._writer.transport.is_closing()

    async def read_body(self, limit: int) -> bytes:
        """Read the whole body; raises RequestError if it cannot be read.

        The status is 413 for a body over ``limit`` bytes, 400 for a malformed
        or truncated one and 408 for one not received within BODY_TIMEOUT.
        """
        if not self._body_left:
            return b""
        chunked = bool(self.header("transfer-encoding"))
        length = 0 if chunked else _content_length(self.header("content-length"))
        if length > limit:
            raise RequestError(
                413,
                f"request body of {length} bytes is over the {limit}-byte limit; "
                "send a smaller body",
            )
        expect = self.header("expect").lower() == "100-continue"
        if expect and self.version == "HTTP/1.1":
            self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self._writer.drain()
        # From here a failure leaves part of the body unread, so the
        # connection cannot take another request.
        self._body_started = True
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await (
                    self._read_chunked(limit)
                    if chunked
                    else self._reader.readexactly(length)
                )
        except asyncio.IncompleteReadError:
            raise RequestError(
                400, "the connection ended inside the request body"
            ) from None
        except TimeoutError:
            raise RequestError(
                408, f"the request body did not arrive within {BODY_TIMEOUT:g}s"
            ) from None
        self._body_left = False
        return body

    async def discard_body(self) -> bool:
        """Read and drop a body the handler left; False if it cannot be.

        A body that is large, chunked, or still waiting for "100 Continue"
        is not read: the connection has to close after the reply instead.
        """
        if not self._body_left:
            return True
        if self._body_started:
            return False
        if self.header("transfer-encoding") or self.header("expect"):
            return False
        if _content_length(self.header("content-length")) > MAX_UNREAD_BODY:
            return False
        try:
            await self.read_body(MAX_UNREAD_BODY)
        except RequestError as err:
            log.debug("API request body not read to its end: %s", err.message)
            return False
        return True

    async def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = await self._read_body_line()
            # Only plain hex digits: int(text, 16) also takes a sign, "0x"
            # and "_", which a proxy in front may read differently.
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise RequestError(
                    400,
                    f"bad chunk size line {line[:20]!r}: "
                    "each chunk starts with its size in hex",
                )
            size = int(match[1], 16)
            if size == 0:
                break
            if len(body) + size > limit:
                raise RequestError(
                    413,
                    f"request body is over the {limit}-byte limit; send a smaller body",
                )
            body += await self._reader.readexactly(size)
            if await self._reader.readexactly(2) != b"\r\n":
                raise RequestError(
                    400, "a chunk does not end in CRLF after its size in bytes"
                )
        # Trailer lines, if any, up to the blank line.
        for _ in range(MAX_HEADERS):
            if (await self._read_body_line()).strip() == b"":
                return bytes(body)
        raise RequestError(400, "too many trailer lines")

    async def _read_body_line(self) -> bytes:
        try:
            line = await self._reader.readline()
        except ValueError:
            # The stream reader's limit: a line over MAX_LINE_BYTES.
            raise RequestError(
                400, f"a line of the chunked body is over {MAX_LINE_BYTES} bytes"
            ) from None
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        return line

    async def stream(self, status: int, headers: dict[str, str]) -> ChunkedReply:
        """Send the head of a chunked reply and return it for writing."""
        chunked = self.reply_version == "HTTP/1.1"
        if chunked:
            headers = {**headers, "Transfer-Encoding": "chunked"}
        head = _head(status, headers, self.keep_alive, self.reply_version)
        self.streamed = True
        self._writer.write(head)
        await self._writer.drain()
        return ChunkedReply(self._writer, status, chunked)


def _content_length(text: str) -> int:
    # isascii: isdigit() is also true for digits such as "²" that int() rejects.
    if not (text.isascii() and text.isdigit()):
        raise RequestError(
            400, f"bad Content-Length {text[:20]!r}: give the body's size in bytes"
        )
    if len(text.lstrip("0")) > MAX_LENGTH_DIGITS:
        raise RequestError(
            413, f"Content-Length {text[:20]!r}... is too large; send a smaller body"
        )
    return int(text)


def _head(
    status: int, headers: dict[str, str], keep_alive: bool, version: str = "HTTP/1.1"
) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"{version} {status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_head(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read a request line and headers; None at a clean end of the connection."""
    line = await _read_line(reader)
    while line in (b"\r\n", b"\n"):
        line = await _read_line(reader)
    if not line:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise RequestError(
            400, f"bad request line {line[:60]!r}: send METHOD PATH HTTP/1.1"
        )
    method, target, version = parts

    headers: list[tuple[str, str]] = []
    async with asyncio.timeout(HEAD_TIMEOUT):
        while True:
            line = await _read_line(reader)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise RequestError(400, "the connection ended inside the request head")
            if len(headers) >= MAX_HEADERS:
                raise RequestError(431, f"more than {MAX_HEADERS} header lines")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip() or name[0] in " \t":
                raise RequestError(
                    400, f"bad header line {line[:60]!r}: send Name: value"
                )
            headers.append((name.lower(), value.strip()))

    request = Request(method, target, version, headers, reader, writer)
    # Framing that two HTTP parsers could read differently is rejected, so a
    # proxy in front cannot see a different request boundary (smuggling).
    if len(set(request.header_values("content-length"))) > 1:
        raise RequestError(
            400, "Content-Length is set more than once with different values"
        )
    has_length = request.header("content-length", "0") != "0"
    codings = ",".join(request.header_values("transfer-encoding"))
    chunked = bool(codings)
    if chunked and request.header("content-length"):
        raise RequestError(
            400, "both Content-Length and Transfer-Encoding are set; send one of them"
        )
    if chunked and codings.lower().replace(" ", "") != "chunked":
        raise RequestError(501, "only the chunked transfer coding is supported")
    if has_length:
        _content_length(request.header("content-length"))
    request._body_left = has_length or chunked
    return request


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:
        # The stream reader's limit: a line longer than MAX_LINE_BYTES.
        raise RequestError(
            431, f"a line of the request head is over {MAX_LINE_BYTES} bytes"
        ) from None


class HttpServer:
    """Serves ``handler`` on any number of listening sockets."""

    def __init__(
        self, handler: Handler, error_reply: Callable[[int, str], Response]
    ) -> None:
        self._handler = handler
        self._error_reply = error_reply
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def listen(self, sock: socket.socket, context: ssl.SSLContext | None) -> None:
        """Serve on a socket already bound and listening (unix or TCP)."""
        server = await asyncio.start_server(
            self._serve,
            sock=sock,
            ssl=context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if context else None,
            limit=MAX_LINE_BYTES,
        )
        self._servers.append(server)

    async def listen_tcp(self, host: str, port: int, context: ssl.SSLContext) -> None:
        server = await asyncio.start_server(
            self._serve,
            host or None,
            port,
            ssl=context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            reuse_address=True,
            limit=MAX_LINE_BYTES,
        )
        self._servers.append(server)

    def sockets(self) -> list[socket.socket]:
        found: list[socket.socket] = []
        for server in self._servers:
            found.extend(server.sockets)
        return found

    async def close(self) -> None:
        """Stop listening and end every connection, streams included."""
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            log.warning(
                "API connection rejected: %d connections open already",
                len(self._connections),
            )
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as err:
            log.debug("API connection ended: %s", err or type(err).__name__)
        except ssl.SSLError as err:
            log.debug("API connection failed TLS: %s", err)
        except asyncio.CancelledError:
            # close() ends connections this way. The task is the connection's
            # own, and asyncio's stream callback logs a cancelled one as an
            # error, so it ends normally instead.
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    request = await read_head(reader, writer)
            except RequestError as err:
                log.debug("API request rejected with %d: %s", err.status, err.message)
                rejection = self._error_reply(err.status, err.message)
                await self._send(writer, rejection, False)
                return
            if request is None:
                return
            keep_alive = request.keep_alive
            reply: HttpReply
            try:
                reply = await self._handler(request)
            except Exception:
                log.exception("API request %s %s failed", request.method, request.path)
                if request.streamed:
                    # A second head inside the streamed body would corrupt
                    # it, so the client sees the connection end instead.
                    return
                reply = self._error_reply(500, "")
                keep_alive = False
            if keep_alive:
                keep_alive = await request.discard_body()
            if isinstance(reply, ChunkedReply):
                await reply.finish()
            else:
                await self._send(writer, reply, keep_alive, request)
            if not keep_alive:
                return

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        reply: Response,
        keep_alive: bool,
        request: Request | None = None,
    ) -> None:
        headers = {**reply.headers, "Content-Length": str(len(reply.body))}
        version = request.reply_version if request else "HTTP/1.1"
        data = _head(reply.status, headers, keep_alive, version)
        head_only = request is not None and request.method == "HEAD"
        writer.write(data if head_only else data + reply.body)
        await writer.drain()
