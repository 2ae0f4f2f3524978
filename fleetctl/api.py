"""The API driver: fleetctl over fleetd's HTTP API v1, with http.client.

The endpoint is ``unix:///path/to/fleet.sock`` (the default,
``unix:///var/run/fleet.sock``), ``http://HOST:PORT`` or ``https://HOST:PORT``.
One keep-alive connection carries every request of a command. This module
imports no asyncio HTTP library, so fleetctl starts fast: its methods are
``async`` to fit the registry protocol but block while a request runs.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from fleetd.errors import ApiError, FleetError
from fleetd.model import DesiredState, Machine, Unit, UnitState
from fleetd.unit import UnitFile, UnitOption

log = logging.getLogger(__name__)

API_PATH = "/fleet/v1"
# How often a wait re-reads the units over the API, which has no watch.
# The original fleetctl polled every 250 ms too.
POLL_SECONDS = 0.25
JOURNAL_CHUNK = 65536
# The wait for a status reply, at least: fleetd may give systemctl 20 s and
# the peer machine 10 s more to connect and reply.
STATUS_TIMEOUT = 35.0


@dataclass(frozen=True)
class ApiEndpoint:
    """An API location: a unix socket path, or a host and port over HTTP(S)."""

    url: str
    socket_path: str = ""
    host: str = ""
    port: int = 0
    tls: bool = False
    base_path: str = ""
    # Opens the stream to the API in place of a direct connection (--tunnel
    # with a unix socket endpoint); it takes the timeout in seconds.
    opener: Callable[[float | None], socket.socket] | None = None


def parse_endpoint(url: str) -> ApiEndpoint:
    """Parse an API endpoint URL; raise FleetError naming the fix if invalid."""
    parts = urlsplit(url)
    if parts.scheme in {"unix", "file"}:
        if parts.netloc:
            raise FleetError(
                f"unable to connect to host {parts.netloc!r} with scheme "
                f"{parts.scheme!r}: write the socket path after three slashes, "
                f"as in unix:///{parts.netloc}{parts.path}"
            )
        if not parts.path:
            raise FleetError(f"invalid API endpoint {url!r}: no socket path")
        return ApiEndpoint(url, socket_path=parts.path)
    if parts.scheme in {"http", "https"}:
        try:
            port = parts.port
        except ValueError as err:
            raise FleetError(f"invalid API endpoint {url!r}: {err}") from err
        if not parts.hostname:
            raise FleetError(f"invalid API endpoint {url!r}: no host")
        tls = parts.scheme == "https"
        return ApiEndpoint(
            url,
            host=parts.hostname,
            port=port or (443 if tls else 80),
            tls=tls,
            base_path=parts.path.rstrip("/"),
        )
    raise FleetError(
        f"invalid API endpoint {url!r}: use unix:///PATH, http://HOST:PORT or "
        "https://HOST:PORT"
    )


class _OpenerConnection(http.client.HTTPConnection):
    def __init__(
        self, opener: Callable[[float | None], socket.socket], timeout: float | None
    ) -> None:
        super().__init__("localhost", timeout=timeout)
        self.opener = opener

    def connect(self) -> None:
        self.sock = self.opener(self.timeout)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class TLSClientFiles:
    """PEM files for https endpoints; empty strings when unused."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def _connection(
    endpoint: ApiEndpoint, timeout: float, tls: TLSClientFiles
) -> http.client.HTTPConnection:
    if endpoint.opener is not None:
        return _OpenerConnection(endpoint.opener, timeout)
    if endpoint.socket_path:
        return _UnixConnection(endpoint.socket_path, timeout)
    if not endpoint.tls:
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    # Imported here because only https endpoints need it.
    import ssl

    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file or tls.key_file:
            context.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (OSError, ssl.SSLError) as err:
        raise FleetError(
            f"cannot load the TLS files (--ca-file {tls.ca_file!r}, --cert-file "
            f"{tls.cert_file!r}, --key-file {tls.key_file!r}): {err}"
        ) from err
    return http.client.HTTPSConnection(
        endpoint.host, endpoint.port, timeout=timeout, context=context
    )


@dataclass(frozen=True)
class MachineStatus:
    """The output and exit code of ``systemctl status`` for a unit on one machine."""

    machine_id: str
    exit_code: int
    output: str
    # Why fleetd could not run systemctl status on that machine, else "".
    error: str = ""


def status_from_json(data: dict[str, Any]) -> MachineStatus:
    return MachineStatus(
        machine_id=str(data.get("machineID") or ""),
        exit_code=int(data.get("exitCode") or 0),
        output=str(data.get("output") or ""),
        error=str(data.get("error") or ""),
    )


def _unit_path(name: str) -> str:
    return f"/units/{quote(name, safe='@:')}"


def unit_from_json(data: dict[str, Any]) -> Unit:
    options = tuple(
        UnitOption(
            str(option.get("section", "")),
            str(option.get("name", "")),
            str(option.get("value", "")),
        )
        for option in data.get("options") or ()
    )
    unit_file = UnitFile(options)
    return Unit(
        name=str(data.get("name", "")),
        hash=unit_file.hash(),
        raw=unit_file.serialize(),
        desired_state=DesiredState(data.get("desiredState") or "inactive"),
        machine_id=str(data.get("machineID", "")),
        current_state=str(data.get("currentState") or "inactive"),
    )


def state_from_json(data: dict[str, Any]) -> UnitState:
    # Positional arguments: list-units builds 10,000 of these, and keyword
    # arguments make each build about half again as slow.
    get = data.get
    return UnitState(
        str(get("name", "")),
        str(get("machineID", "")),
        str(get("hash", "")),
        str(get("systemdLoadState", "")),
        str(get("systemdActiveState", "")),
        str(get("systemdSubState", "")),
    )


def machine_from_json(data: dict[str, Any]) -> Machine:
    metadata = data.get("metadata") or {}
    return Machine(
        id=str(data.get("id", "")),
        public_ip=str(data.get("primaryIP", "")),
        metadata={str(key): str(value) for key, value in metadata.items()},
    )


def _options_json(raw: str) -> list[dict[str, str]]:
    return [
        {"section": o.section, "name": o.name, "value": o.value}
        for o in UnitFile.parse(raw).options
    ]


class ApiRegistry:
    """The fleetctl registry operations, as requests to fleetd's API."""

    def __init__(
        self, endpoint: ApiEndpoint, timeout: float, tls: TLSClientFiles
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._tls = tls
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- HTTP -------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        data = None if body is None else json.dumps(body).encode()
        all_headers = dict(headers or {})
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        url = self.endpoint.base_path + API_PATH + path
        # A kept-alive connection the server has closed fails on first use,
        # so each request may reconnect once.
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = _connection(self.endpoint, self.timeout, self._tls)
            try:
                self._connection.request(method, url, body=data, headers=all_headers)
                return self._connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError) as err:
                self.close()
                if attempt == 2:
                    raise self._unreachable(err) from err
            except (OSError, http.client.HTTPException) as err:
                self.close()
                raise self._unreachable(err) from err
        raise AssertionError("unreachable")

    def _unreachable(self, err: BaseException) -> FleetError:
        detail = str(err) or type(err).__name__
        if isinstance(err, TimeoutError):
            detail = f"no response within {self.timeout:g}s"
        return FleetError(
            f"cannot reach the fleet API at {self.endpoint.url}: {detail}; check "
            "that fleetd runs there, or use --driver=etcd with --endpoint set to "
            "the etcd URLs"
        )

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send a request; return (status, decoded JSON or None) for a 2xx.

        Raises ApiError with the server's message for any other status.
        """
        response = self._send(method, path, body, headers)
        try:
            payload = response.read()
        except (OSError, http.client.HTTPException) as err:
            self.close()
            raise self._unreachable(err) from err
        if 200 <= response.status < 300:
            return response.status, json.loads(payload) if payload else None
        raise self._error(method, path, response.status, payload)

    def _error(self, method: str, path: str, status: int, payload: bytes) -> ApiError:
        message = ""
        from_fleet = True
        try:
            message = str(json.loads(payload)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = payload.decode(errors="replace").strip()
            from_fleet = False
        text = (
            f"fleet API at {self.endpoint.url} rejected {method} {API_PATH}{path} "
            f"with {status}: {message or http.client.responses.get(status, '')}"
        )
        if status == 404 and not from_fleet:
            # fleetd sends every error as JSON, so a plain 404 comes from some
            # other server, such as an etcd given as the API endpoint.
            text += (
                f"; {self.endpoint.url} does not serve the fleet API and may be "
                "etcd. To use etcd directly, add --driver=etcd"
            )
        return ApiError(status, text)

    def _list(
        self, path: str, field: str, query: dict[str, str] | None = None
    ) -> list[Any]:
        items: list[Any] = []
        params = dict(query or {})
        while True:
            suffix = f"?{urlencode(params)}" if params else ""
            _, page = self._request("GET", path + suffix)
            page = page or {}
            items.extend(page.get(field) or ())
            token = page.get("nextPageToken")
            if not token:
                return items
            params["nextPageToken"] = token

    # -- blocking writes, also used from several threads by fleetctl.bulk ----

    def clone(self) -> ApiRegistry:
        """Return a registry on the same endpoint with a connection of its own."""
        return ApiRegistry(self.endpoint, self.timeout, self._tls)

    def put_unit(
        self, name: str, raw: str, desired: DesiredState, *, create_only: bool
    ) -> bool:
        """Store ``raw`` as the file of ``name`` with the desired state ``desired``.

        With ``create_only``, returns False and writes nothing when the unit
        exists already; otherwise creates or replaces it and returns True.
        """
        body = {
            "name": name,
            "options": _options_json(raw),
            "desiredState": desired.value,
        }
        headers = {"If-None-Match": "*"} if create_only else None
        try:
            status, _ = self._request("PUT", _unit_path(name), body, headers)
        except ApiError as err:
            if create_only and err.status == 412:
                return False
            raise
        if status == 204:
            # The registry had this very file: only the desired state changed.
            log.debug("unit %s was unchanged; set its desired state", name)
        return True

    def put_desired_state(self, name: str, desired: DesiredState) -> bool:
        """Set the desired state of ``name``; False if the unit does not exist."""
        try:
            self._request(
                "PUT", _unit_path(name), {"name": name, "desiredState": desired.value}
            )
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        return True

    # -- the ClientRegistry protocol ---------------------------------------

    async def units(self) -> list[Unit]:
        return [unit_from_json(item) for item in self._list("/units", "units")]

    async def unit(self, name: str) -> Unit | None:
        try:
            _, data = self._request("GET", _unit_path(name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        return unit_from_json(data)

    async def create_unit(self, name: str, raw: str, desired: DesiredState) -> bool:
        return self.put_unit(name, raw, desired, create_only=True)

    async def replace_unit(self, name: str, raw: str, desired: DesiredState) -> None:
        self.put_unit(name, raw, desired, create_only=False)

    async def set_desired_state(self, name: str, desired: DesiredState) -> bool:
        return self.put_desired_state(name, desired)

    async def destroy_unit(self, name: str) -> bool:
        try:
            self._request("DELETE", _unit_path(name))
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    async def machines(self) -> list[Machine]:
        return [machine_from_json(item) for item in self._list("/machines", "machines")]

    async def unit_states(self) -> list[UnitState]:
        return [state_from_json(item) for item in self._list("/state", "states")]

    async def changes(self) -> AsyncIterator[None]:
        """Yield every POLL_SECONDS: the API has no watch to wait on."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            yield None

    async def cluster_secret(self) -> bytes:
        raise FleetError(
            "the API driver has no access to the cluster secret; fleetctl reads "
            "remote journals through fleetd's journal resource instead"
        )

    def stream_journal(
        self,
        name: str,
        lines: int,
        follow: bool,
        output: str,
        out: BinaryIO,
        machine_id: str = "",
    ) -> int:
        """Copy ``name``'s journal from whatever machine runs it to ``out``.

        ``machine_id`` (a full ID) picks the machine, and a global unit needs
        it. Returns 0 when the stream ends. Raises ApiError when fleetd
        rejects the request (unit not found, not running on that machine).
        """
        parameters: dict[str, str | int] = {
            "lines": lines,
            "follow": "true" if follow else "false",
            "output": output,
        }
        if machine_id:
            parameters["machineID"] = machine_id
        query = urlencode(parameters)
        response = self._send("GET", f"{_unit_path(name)}/journal?{query}")
        if response.status != 200:
            raise self._error(
                "GET", f"{_unit_path(name)}/journal", response.status, response.read()
            )
        if (
            follow
            and self._connection is not None
            and self._connection.sock is not None
        ):
            # A followed journal may stay quiet for longer than any timeout.
            self._connection.sock.settimeout(None)
        try:
            while chunk := response.read1(JOURNAL_CHUNK):
                out.write(chunk)
                out.flush()
        except (OSError, http.client.HTTPException) as err:
            raise self._unreachable(err) from err
        finally:
            self.close()
        return 0

    def unit_status(self, name: str, machine_id: str = "") -> list[MachineStatus]:
        """Return ``systemctl status`` of ``name`` from the machines that run it.

        One entry for a unit placed on one machine, one per machine for a
        global unit; ``machine_id`` limits the request to that machine.
        Raises ApiError when fleetd rejects it: 404 for an unknown unit, 409
        for a unit not loaded, 502 when the one machine cannot be reached.
        For a global unit, a machine that cannot be reached gets an entry
        with ``error`` set instead.
        """
        path = f"{_unit_path(name)}/status"
        if machine_id:
            path += "?" + urlencode({"machineID": machine_id})
        # systemctl on a remote machine may take longer than --request-timeout.
        slow = ApiRegistry(self.endpoint, max(self.timeout, STATUS_TIMEOUT), self._tls)
        try:
            _, data = slow._request("GET", path)
        finally:
            slow.close()
        items = data if isinstance(data, list) else [data]
        return [status_from_json(item) for item in items]
