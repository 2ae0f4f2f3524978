"""The API server: routing, the 503 gate and the listeners.

Every resource is mounted under both ``/fleet/v1`` and ``/v1-alpha``; item
paths are ``<resource>/<name>`` with no trailing slash. Until this machine is
registered and the registry mirror has its first copy, every request gets
503. Errors have the body ``{"error": {"code": <status>, "message": ...}}``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from urllib.parse import unquote

from fleetd import __version__
from fleetd.api import journal, placement, resources, status
from fleetd.api.backend import ApiBackend
from fleetd.api.http import (
    ChunkedReply,
    HttpReply,
    HttpServer,
    Request,
    RequestError,
    Response,
)
from fleetd.api.listeners import (
    TLSOptions,
    activation_sockets,
    bind_unix_socket,
    describe,
    is_tcp,
    parse_address,
    server_tls_context,
)
from fleetd.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fleetd.api.metrics import REGISTRY, MetricsRegistry
from fleetd.api.resources import ApiRequest, HttpError, Reply, error_body
from fleetd.config import Config
from fleetd.errors import RegistryError
from fleetd.presence import MachinePresence
from fleetd.registry.etcd import EtcdRegistry
from fleetd.registry.mirror import RegistryMirror
from fleetd.registry.view import RegistryView

log = logging.getLogger(__name__)

PREFIXES = ("/fleet/v1", "/v1-alpha")
SERVER_HEADER = f"fleetd/{__version__}"
UNAVAILABLE = "fleet server unable to communicate with etcd"
# A unit PUT or machines PATCH body larger than this is rejected with 413.
MAX_BODY_BYTES = 4 * 1024 * 1024


JSON_TYPE = "application/json; charset=utf-8"


def _json_response(reply: Reply) -> Response:
    headers = {"Server": SERVER_HEADER, **reply.headers}
    if reply.encoded is not None:
        return Response(
            reply.status, reply.encoded, {**headers, "Content-Type": JSON_TYPE}
        )
    if reply.body is None:
        return Response(reply.status, b"", headers)
    body = json.dumps(reply.body, separators=(",", ":")).encode()
    return Response(reply.status, body, {**headers, "Content-Type": JSON_TYPE})


def _error_response(status: int, message: str, **headers: str) -> Response:
    return _json_response(Reply(status, error_body(status, message), headers))


def split_path(raw_path: str) -> tuple[str, list[str]] | None:
    """Split a raw request path into its API prefix and decoded segments.

    Returns None for a path outside both prefixes. ``/fleet/v1/units/x`` is
    ("/fleet/v1", ["units", "x"]); the bare prefix has no segments.
    """
    for prefix in PREFIXES:
        if raw_path == prefix:
            return prefix, []
        if raw_path.startswith(prefix + "/"):
            rest = raw_path[len(prefix) + 1 :]
            return prefix, [unquote(part) for part in rest.split("/")]
    return None


class ApiServer:
    """The API served on its listeners from ``backend``."""

    def __init__(
        self,
        backend: ApiBackend,
        *,
        unix_socket: str = "",
        tls_address: str = "",
        tls: TLSOptions | None = None,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.unix_socket = Path(unix_socket) if unix_socket else None
        self.tls_address = tls_address
        self.tls = tls
        self._environ = environ if environ is not None else os.environ
        self._http: HttpServer | None = None
        self._bound_socket: Path | None = None
        self.addresses: list[str] = []
        self.metrics = MetricsRegistry()
        self._requests = self.metrics.counter(
            "api_request_count_total",
            "API requests answered, by method and status code.",
            ("method", "code"),
        )
        self._durations = self.metrics.summary(
            "api_request_duration_seconds",
            "Time to answer API requests, by method.",
            ("method",),
        )

        def view() -> RegistryView:
            return backend.view

        self.metrics.gauge(
            "registry_unit_count",
            "Units in the registry.",
            function=lambda: len(view().files),
        )
        self.metrics.gauge(
            "registry_machine_count",
            "Live machines in the registry.",
            function=lambda: len(view().machines),
        )
        self.metrics.gauge(
            "engine_leader",
            "1 while this machine's engine leads, else 0.",
            function=lambda: float(view().leader == backend.machine_id),
        )

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Open every listener and start serving (503 until ready).

        Raises ListenerError when a listener cannot be opened.
        """
        self.backend.start()
        http = self._http = HttpServer(self._dispatch, _error_response)
        context = server_tls_context(self.tls) if self.tls else None

        for sock in activation_sockets(self._environ):
            if is_tcp(sock) and context is None:
                log.error(
                    "not serving the API on the socket-activated TCP listener %s: "
                    "set api_tls_certfile, api_tls_keyfile and api_tls_cafile to "
                    "serve it with TLS",
                    describe(sock),
                )
                sock.close()
                continue
            await http.listen(sock, context if is_tcp(sock) else None)
            self.addresses.append(describe(sock))

        if self.unix_socket is not None and not self._activated(self.unix_socket):
            sock = bind_unix_socket(self.unix_socket)
            self._bound_socket = self.unix_socket
            await http.listen(sock, None)
            self.addresses.append(f"unix:{self.unix_socket}")

        if self.tls_address:
            host, port = parse_address(self.tls_address)
            assert context is not None, "api_tls_address without TLS files"
            await http.listen_tcp(host, port, context)
            self.addresses.append(f"https://{self.tls_address}")

        log.info("serving the fleet API on %s", ", ".join(self.addresses) or "nothing")

    def _activated(self, path: Path) -> bool:
        # A socket unit on api_socket hands fleetd that very socket, which
        # must not be replaced by a new one at the same path.
        # systemd reports the path after resolving links, so /var/run/fleet.sock
        # arrives as /run/fleet.sock.
        wanted = os.path.realpath(path)
        return any(
            os.path.realpath(address) == wanted
            for address in self.addresses
            if address.startswith("/")
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self.backend.close()
        if self._bound_socket is not None:
            self._bound_socket.unlink(missing_ok=True)
            self._bound_socket = None

    def tcp_port(self) -> int:
        """Return the port of the TLS listener (useful with port 0)."""
        assert self._http is not None
        for sock in self._http.sockets():
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        raise LookupError("no TCP listener")

    # -- requests -----------------------------------------------------------

    async def _dispatch(self, request: Request) -> HttpReply:
        started = time.monotonic()
        response: HttpReply
        try:
            response = await self._answer(request)
        except HttpError as err:
            response = _error_response(err.status, err.message, **err.headers)
        except RequestError as err:
            # A body over MAX_BODY_BYTES, or a malformed one.
            response = _error_response(err.status, err.message)
        except RegistryError as err:
            log.error("API request %s %s failed: %s", request.method, request.path, err)
            # The original sent 500 with an empty message.
            response = _error_response(500, "")
        self._requests.inc(method=request.method, code=str(response.status))
        self._durations.observe(time.monotonic() - started, method=request.method)
        return response

    async def _answer(self, request: Request) -> HttpReply:
        if not self.backend.ready():
            return _error_response(503, UNAVAILABLE)
        raw_path = request.raw_path
        if raw_path == "/metrics":
            if request.method != "GET":
                raise HttpError(
                    405, "only GET supported against this resource", Allow="GET"
                )
            text = REGISTRY.render() + self.metrics.render()
            return Response(
                200,
                text.encode(),
                {"Server": SERVER_HEADER, "Content-Type": METRICS_CONTENT_TYPE},
            )
        if raw_path == "/":
            raise HttpError(405, "no resource at /; the API is under /fleet/v1/")
        split = split_path(raw_path)
        if split is None:
            raise HttpError(404, f"no resource at {request.path}")
        _, segments = split
        if not segments:
            raise HttpError(405, "no resource at the API root; use its resources")
        return await self._route(request, segments)

    async def _api_request(self, request: Request, read_body: bool) -> ApiRequest:
        body = await request.read_body(MAX_BODY_BYTES) if read_body else b""
        return ApiRequest(
            method=request.method,
            query=request.query,
            content_types=request.header_values("Content-Type"),
            body=body,
            create_only=request.header("If-None-Match").strip() == "*",
        )

    async def _route(self, request: Request, segments: Sequence[str]) -> HttpReply:
        backend = self.backend
        resource, rest = segments[0], list(segments[1:])
        writes = request.method in {"PUT", "PATCH"}
        api_request = await self._api_request(request, writes)
        if not rest:
            if resource == "discovery":
                return _json_response(resources.discovery(backend, api_request))
            if resource == "machines":
                return _json_response(await resources.machines(backend, api_request))
            if resource == "units":
                return _json_response(resources.units(backend, api_request))
            if resource == "state":
                return _json_response(resources.states(backend, api_request))
        elif len(rest) == 1 and rest[0]:
            if resource == "units":
                return _json_response(
                    await resources.unit(backend, api_request, rest[0])
                )
            if resource == "state":
                return _json_response(resources.state(backend, api_request, rest[0]))
        elif (
            len(rest) == 2 and rest[0] and rest[1] == "journal" and resource == "units"
        ):
            return await self._journal(request, api_request, rest[0])
        elif len(rest) == 2 and rest[0] and rest[1] == "status" and resource == "units":
            return _json_response(
                await status.unit_status(backend, api_request, rest[0])
            )
        elif (
            len(rest) == 2
            and rest[0]
            and rest[1] == "placement"
            and resource == "units"
        ):
            return _json_response(placement.placement(backend, api_request, rest[0]))
        raise HttpError(404, f"no resource at {request.path}")

    async def _journal(
        self, request: Request, api_request: ApiRequest, name: str
    ) -> HttpReply:
        if api_request.method != "GET":
            raise HttpError(
                405, "only GET supported against this resource", Allow="GET"
            )
        query = journal.parse_journal_query(api_request.query)
        machine = journal.journal_machine(self.backend, name, query.machine_id)
        peer = None
        if machine.id != self.backend.machine_id:
            secret = await self.backend.registry.cluster_secret()
            peer = await journal.open_peer_journal(machine, name, query, secret)
        elif shutil.which("journalctl") is None:
            log.error("journal of %s: journalctl is not installed here", name)
            raise HttpError(
                500,
                f"journalctl is not installed on machine {machine.id}; the "
                "journal resource runs it there, so install systemd's journalctl",
            )

        response: ChunkedReply = await request.stream(
            200,
            {"Server": SERVER_HEADER, "Content-Type": "text/plain; charset=utf-8"},
        )
        try:
            if peer is None:
                await journal.stream_local(name, query, response.write, request.closed)
            else:
                await journal.stream_peer(*peer, response.write, request.closed)
            await response.finish()
        except (ConnectionError, OSError) as err:
            log.debug("journal client of %s went away: %s", name, err)
        return response


def api_server_from_config(
    config: Config,
    registry: EtcdRegistry,
    mirror: RegistryMirror,
    presence: MachinePresence,
) -> ApiServer:
    """Build the API of a fleetd from its options (api_socket, api_tls_*)."""

    def ready() -> bool:
        # Registered, and the mirror shows it, so reads include this machine.
        return (
            presence.registered.is_set()
            and mirror.synced.is_set()
            and presence.machine.id in mirror.view.machines
        )

    backend = ApiBackend(
        registry,
        mirror,
        ready,
        presence.machine.id,
        token_limit=config.token_limit,
        write_timeout=max(config.etcd_request_timeout * 5, 5.0),
    )
    tls = None
    if config.api_tls_address:
        tls = TLSOptions(
            config.api_tls_certfile, config.api_tls_keyfile, config.api_tls_cafile
        )
    return ApiServer(
        backend,
        unix_socket=config.api_socket,
        tls_address=config.api_tls_address,
        tls=tls,
    )
