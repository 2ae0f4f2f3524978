"""fleetd's HTTP API over its real unix socket and TLS listener, on a real etcd.

The API server runs in the test's event loop with a real registry, mirror
and machine registration; requests go through ``http.client`` in a thread,
as any HTTP client would send them. Expected shapes, status codes and
messages are those of the original fleet's API v1.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fleetd import __version__
from fleetd.api.backend import ApiBackend
from fleetd.api.listeners import TLSOptions
from fleetd.api.server import ApiServer
from fleetd.engine.engine import Engine
from fleetd.etcdserver import EtcdServer
from fleetd.model import Machine, UnitState
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.registry.mirror import RegistryMirror

pytestmark = pytest.mark.integration

MACHINE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
OTHER = "0f0e0d0c0b0a09080706050403020100"
TOKEN_LIMIT = 2
WEB_OPTIONS = [
    {"section": "Unit", "name": "Description", "value": "Web server"},
    {"section": "Service", "name": "ExecStart", "value": "/bin/sleep 100"},
]
UNAVAILABLE = {
    "error": {"code": 503, "message": "fleet server unable to communicate with etcd"}
}


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.path)
        self.sock = sock


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    data: bytes | None = None
    all_headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


@dataclass
class Api:
    """The API under test and the means to call it and inspect etcd."""

    server: ApiServer
    socket_path: str
    registry: EtcdRegistry
    presence: MachinePresence

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        connection = UnixHTTPConnection(self.socket_path)
        return await asyncio.to_thread(send, connection, method, path, body, headers)

    async def etcd_pairs(self) -> list[tuple[str, bytes]]:
        return (await self.registry.read_all())[1]

    async def put_unit(self, name: str, desired: str = "") -> Reply:
        body: dict[str, Any] = {"name": name, "options": WEB_OPTIONS}
        if desired:
            body["desiredState"] = desired
        return await self.call("PUT", f"/fleet/v1/units/{name}", body)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1, a client and a rogue client."""
    directory = tmp_path / "pki"
    directory.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True
        )

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        openssl(
            "req",
            "-x509",
            *key,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            "-days",
            "1",
            "-subj",
            f"/CN={ca}",
        )
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ca in (("server", "ca"), ("client", "ca"), ("rogue", "rogue-ca")):
        openssl(
            "req",
            *key,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        extra = ["-extfile", "server.ext"] if name == "server" else []
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca}.pem",
            "-CAkey",
            f"{ca}.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "1",
            *extra,
        )
    return directory


@pytest.fixture
async def api(
    etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path, certificates: Path
) -> AsyncIterator[Api]:
    """An API server, not yet registered: requests get 503 until ``register``."""
    async with open_registry([etcd_server.client_url], etcd_prefix, 5.0) as registry:
        mirror = RegistryMirror(registry)
        mirror_task = asyncio.create_task(mirror.run())
        machine = Machine(MACHINE, "127.0.0.1", {"role": "web"})
        presence = MachinePresence(registry, machine, 10)

        def ready() -> bool:
            return (
                presence.registered.is_set()
                and mirror.synced.is_set()
                and MACHINE in mirror.view.machines
            )

        backend = ApiBackend(registry, mirror, ready, MACHINE, TOKEN_LIMIT)
        socket_path = str(tmp_path / "fleet.sock")
        tls = TLSOptions(
            str(certificates / "server.pem"),
            str(certificates / "server.key"),
            str(certificates / "ca.pem"),
        )
        server = ApiServer(
            backend,
            unix_socket=socket_path,
            tls_address="127.0.0.1:0",
            tls=tls,
            environ={},
        )
        await server.start()
        try:
            yield Api(server, socket_path, registry, presence)
        finally:
            await server.close()
            mirror_task.cancel()
            await asyncio.gather(mirror_task, return_exceptions=True)
            await presence.withdraw()


async def register(api: Api) -> None:
    """Register the machine and wait until the API responds."""
    assert await api.presence.register_once()
    backend = api.server.backend
    await backend._until(lambda view: backend.ready(), "the machine registration")
    assert backend.ready()


@pytest.fixture
async def ready_api(api: Api) -> Api:
    await register(api)
    return api


# -- availability, headers, routing --------------------------------------------


async def test_unavailable_until_registered(api: Api) -> None:
    reply = await api.call("GET", "/fleet/v1/units")
    assert reply.status == 503
    assert reply.json() == UNAVAILABLE
    await register(api)
    reply = await api.call("GET", "/fleet/v1/units")
    assert reply.status == 200
    assert reply.json() == {}


async def test_server_header_and_content_type(ready_api: Api) -> None:
    reply = await ready_api.call("GET", "/fleet/v1/machines")
    assert reply.headers["Server"] == f"fleetd/{__version__}"
    assert reply.headers["Content-Type"].startswith("application/json")


async def test_socket_is_owner_only(ready_api: Api) -> None:
    mode = os.stat(ready_api.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 405),
        ("GET", "/fleet/v1", 405),
        ("GET", "/v1-alpha", 405),
        ("GET", "/fleet/v1/units/", 404),
        ("GET", "/fleet/v1/nothing", 404),
        ("GET", "/elsewhere", 404),
        ("POST", "/fleet/v1/units", 405),
        ("POST", "/fleet/v1/units/web.service", 405),
        ("DELETE", "/fleet/v1/machines", 405),
        ("PUT", "/fleet/v1/state", 405),
        ("POST", "/fleet/v1/discovery", 400),
    ],
)
async def test_routing_errors(
    ready_api: Api, method: str, path: str, status: int
) -> None:
    reply = await ready_api.call(method, path)
    assert reply.status == status
    assert reply.json()["error"]["code"] == status


async def test_method_not_allowed_messages(ready_api: Api) -> None:
    cases = {
        "/fleet/v1/units": "only GET supported against this resource",
        "/fleet/v1/units/web.service": (
            "only GET, PUT and DELETE supported against this resource"
        ),
        "/fleet/v1/machines": "only GET and PATCH supported against this resource",
    }
    for path, message in cases.items():
        reply = await ready_api.call("POST", path)
        assert reply.json() == {"error": {"code": 405, "message": message}}


async def test_discovery_document(ready_api: Api) -> None:
    reply = await ready_api.call("GET", "/fleet/v1/discovery")
    assert reply.status == 200
    document = reply.json()
    assert document["rootUrl"] == "$ENDPOINT/"
    assert document["servicePath"] == "fleet/v1/"
    assert set(document["schemas"]) >= {"Unit", "UnitOption", "UnitState", "Machine"}


async def test_v1_alpha_prefix(ready_api: Api) -> None:
    assert (await ready_api.put_unit("web.service")).status == 201
    reply = await ready_api.call("GET", "/v1-alpha/units/web.service")
    assert reply.status == 200
    assert reply.json()["name"] == "web.service"


async def test_metrics(ready_api: Api) -> None:
    await ready_api.call("GET", "/fleet/v1/units")
    reply = await ready_api.call("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode()
    assert "# TYPE fleet_api_request_count_total counter" in text
    assert 'fleet_api_request_count_total{method="GET",code="200"}' in text
    assert "fleet_registry_machine_count 1" in text


async def test_metrics_after_engine_pass(ready_api: Api) -> None:
    assert (await ready_api.put_unit("web.service", desired="launched")).status == 201
    engine = Engine(
        ready_api.registry,
        ready_api.server.backend.mirror,
        ready_api.presence,
        interval=1.0,
    )
    assert await engine.campaign()
    await engine.reconcile()
    reply = await ready_api.call("GET", "/metrics")
    assert reply.status == 200
    text = reply.body.decode()
    names = [
        "fleet_engine_leader_start_time",
        "fleet_engine_task_count_total",
        "fleet_engine_task_failure_count_total",
        "fleet_engine_reconcile_count_total",
        "fleet_engine_reconcile_duration_second",
        "fleet_engine_reconcile_failure_count_total",
        "fleet_registry_operation_count_total",
        "fleet_registry_operation_duration_second",
        "fleet_registry_operation_failed_count_total",
    ]
    for name in names:
        assert f"# TYPE {name} " in text, name
    # The pass placed web.service on the only machine, in one transaction.
    assert re.search(
        r'^fleet_engine_task_count_total\{type="place"\} [1-9]', text, re.M
    )
    assert re.search(r"^fleet_engine_reconcile_count_total [1-9]", text, re.M)
    assert re.search(r"^fleet_engine_leader_start_time [1-9]", text, re.M)
    assert re.search(
        r'^fleet_registry_operation_duration_second_count\{ops="txn"\} [1-9]',
        text,
        re.M,
    )


# -- units ---------------------------------------------------------------------


async def test_unit_lifecycle(ready_api: Api) -> None:
    created = await ready_api.put_unit("web.service")
    assert created.status == 201
    assert created.body == b""

    reply = await ready_api.call("GET", "/fleet/v1/units/web.service")
    assert reply.status == 200
    assert reply.json() == {
        "name": "web.service",
        "options": WEB_OPTIONS,
        "desiredState": "inactive",
        "currentState": "inactive",
    }

    same = await ready_api.put_unit("web.service", desired="loaded")
    assert same.status == 204
    reply = await ready_api.call("GET", "/fleet/v1/units/web.service")
    assert reply.json()["desiredState"] == "loaded"

    state_only = await ready_api.call(
        "PUT", "/fleet/v1/units/web.service", {"desiredState": "launched"}
    )
    assert state_only.status == 204

    changed = [
        *WEB_OPTIONS[:1],
        {"section": "Service", "name": "ExecStart", "value": "/bin/true"},
    ]
    replaced = await ready_api.call(
        "PUT", "/fleet/v1/units/web.service", {"options": changed}
    )
    assert replaced.status == 201
    reply = await ready_api.call("GET", "/fleet/v1/units/web.service")
    assert reply.json()["options"] == changed
    assert reply.json()["desiredState"] == "inactive"

    deleted = await ready_api.call("DELETE", "/fleet/v1/units/web.service")
    assert deleted.status == 204
    again = await ready_api.call("DELETE", "/fleet/v1/units/web.service")
    assert again.json() == {"error": {"code": 404, "message": "unit does not exist"}}
    missing = await ready_api.call("GET", "/fleet/v1/units/web.service")
    assert missing.status == 404
    assert missing.json() == {"error": {"code": 404, "message": "unit does not exist"}}


async def test_create_with_desired_state(ready_api: Api) -> None:
    assert (await ready_api.put_unit("web.service", desired="launched")).status == 201
    reply = await ready_api.call("GET", "/fleet/v1/units/web.service")
    assert reply.json()["desiredState"] == "launched"


async def test_global_unit_has_no_current_state(ready_api: Api) -> None:
    options = [*WEB_OPTIONS, {"section": "X-Fleet", "name": "Global", "value": "true"}]
    body = {"options": options, "desiredState": "launched"}
    assert (
        await ready_api.call("PUT", "/fleet/v1/units/g.service", body)
    ).status == 201
    unit = (await ready_api.call("GET", "/fleet/v1/units/g.service")).json()
    assert "currentState" not in unit
    assert "machineID" not in unit


async def test_if_none_match_creates_only(ready_api: Api) -> None:
    headers = {"If-None-Match": "*"}
    body = {"options": WEB_OPTIONS}
    path = "/fleet/v1/units/web.service"
    assert (await ready_api.call("PUT", path, body, headers)).status == 201
    assert (await ready_api.call("PUT", path, body, headers)).status == 412


BAD_PUTS = [
    pytest.param(
        {"Content-Type": "text/plain"},
        {"options": WEB_OPTIONS},
        415,
        None,
        id="content-type",
    ),
    pytest.param(
        {"Content-Type": "application/xml"},
        {"options": WEB_OPTIONS},
        415,
        None,
        id="xml",
    ),
    pytest.param({}, b"{not json", 400, None, id="undecodable"),
    pytest.param({}, {"options": "nope"}, 400, None, id="options-not-list"),
    pytest.param(
        {},
        {"name": "other.service", "options": WEB_OPTIONS},
        400,
        "name in URL 'web.service' differs from unit name in request body "
        "'other.service'",
        id="name-mismatch",
    ),
    pytest.param(
        {}, {}, 409, "unit does not exist and options field empty", id="no-options"
    ),
    pytest.param(
        {},
        {"options": WEB_OPTIONS, "desiredState": "running"},
        400,
        None,
        id="bad-state",
    ),
    pytest.param(
        {},
        {"options": [{"section": "Service", "name": "ExecStart", "value": "x" * 3000}]},
        400,
        None,
        id="invalid-options",
    ),
]


@pytest.mark.parametrize(("headers", "body", "status", "message"), BAD_PUTS)
async def test_bad_put_changes_nothing(
    ready_api: Api,
    headers: dict[str, str],
    body: Any,
    status: int,
    message: str | None,
) -> None:
    before = await ready_api.etcd_pairs()
    reply = await ready_api.call("PUT", "/fleet/v1/units/web.service", body, headers)
    assert reply.status == status
    assert reply.json()["error"]["code"] == status
    if message is not None:
        assert reply.json()["error"]["message"] == message
    assert await ready_api.etcd_pairs() == before


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("web", {"options": WEB_OPTIONS}, 400),
        ("web.nothing", {"options": WEB_OPTIONS}, 400),
        ("web@.service", {"options": WEB_OPTIONS, "desiredState": "launched"}, 400),
    ],
)
async def test_invalid_unit_name_changes_nothing(
    ready_api: Api, name: str, body: Any, status: int
) -> None:
    before = await ready_api.etcd_pairs()
    reply = await ready_api.call("PUT", f"/fleet/v1/units/{name}", body)
    assert reply.status == status
    assert await ready_api.etcd_pairs() == before


async def test_existing_unit_needs_desired_state(ready_api: Api) -> None:
    assert (await ready_api.put_unit("web.service")).status == 201
    before = await ready_api.etcd_pairs()
    reply = await ready_api.call(
        "PUT", "/fleet/v1/units/web.service", {"options": WEB_OPTIONS}
    )
    assert reply.json() == {
        "error": {
            "code": 409,
            "message": "must provide DesiredState to update existing unit",
        }
    }
    assert await ready_api.etcd_pairs() == before


async def test_template_may_be_stored_inactive(ready_api: Api) -> None:
    body = {"options": WEB_OPTIONS}
    assert (
        await ready_api.call("PUT", "/fleet/v1/units/web@.service", body)
    ).status == 201
    reply = await ready_api.call(
        "PUT", "/fleet/v1/units/web@.service", {"desiredState": "launched"}
    )
    assert reply.status == 400


# -- pagination -----------------------------------------------------------------


async def test_units_pagination(ready_api: Api) -> None:
    for number in range(5):
        assert (await ready_api.put_unit(f"u{number}.service")).status == 201
    first = (await ready_api.call("GET", "/fleet/v1/units")).json()
    assert [unit["name"] for unit in first["units"]] == ["u0.service", "u1.service"]
    # Limit 2, page 2, as two little-endian uint16 in URL-safe base64.
    assert first["nextPageToken"] == "AgACAA=="
    second = (
        await ready_api.call("GET", "/fleet/v1/units?nextPageToken=AgACAA==")
    ).json()
    assert [unit["name"] for unit in second["units"]] == ["u2.service", "u3.service"]
    third = (
        await ready_api.call(
            "GET", f"/fleet/v1/units?nextPageToken={second['nextPageToken']}"
        )
    ).json()
    assert [unit["name"] for unit in third["units"]] == ["u4.service"]
    assert "nextPageToken" not in third


async def test_exactly_full_last_page_has_token(ready_api: Api) -> None:
    for number in range(2):
        assert (await ready_api.put_unit(f"u{number}.service")).status == 201
    first = (await ready_api.call("GET", "/fleet/v1/units")).json()
    assert first["nextPageToken"] == "AgACAA=="
    last = await ready_api.call("GET", "/fleet/v1/units?nextPageToken=AgACAA==")
    assert last.json() == {}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("nextPageToken=EwBMLg==", "token limit must be 2"),
        ("nextPageToken=AgAAAA==", "page number must be greater than 0"),
        (
            "nextPageToken=AgACAA==&nextPageToken=AgACAA==",
            "too many values for page token",
        ),
        ("nextPageToken=%25%25", None),
        ("nextPageToken=", None),
    ],
)
@pytest.mark.parametrize("resource", ["units", "machines", "state"])
async def test_bad_page_token(
    ready_api: Api, resource: str, query: str, message: str | None
) -> None:
    reply = await ready_api.call("GET", f"/fleet/v1/{resource}?{query}")
    assert reply.status == 400
    if message is not None:
        assert reply.json() == {"error": {"code": 400, "message": message}}


# -- unit states ------------------------------------------------------------------


async def publish_state(api: Api, name: str, machine_id: str, active: str) -> None:
    state = UnitState(name, machine_id, "abc123", "loaded", active, "running")
    await api.registry.put(keys.state_key(name, machine_id), keys.encode_state(state))


async def test_states_and_filters(ready_api: Api) -> None:
    await publish_state(ready_api, "a.service", MACHINE, "active")
    await publish_state(ready_api, "a.service", OTHER, "failed")
    await publish_state(ready_api, "b.service", MACHINE, "active")
    backend = ready_api.server.backend
    await backend._until(lambda view: len(view.unit_states()) == 3, "three states")

    page = (await ready_api.call("GET", "/fleet/v1/state")).json()
    assert page["states"][0] == {
        "name": "a.service",
        "hash": "abc123",
        "machineID": OTHER,
        "systemdLoadState": "loaded",
        "systemdActiveState": "failed",
        "systemdSubState": "running",
    }
    by_machine = (
        await ready_api.call("GET", f"/fleet/v1/state?machineID={MACHINE}")
    ).json()
    assert [(s["name"], s["machineID"]) for s in by_machine["states"]] == [
        ("a.service", MACHINE),
        ("b.service", MACHINE),
    ]
    by_unit = (await ready_api.call("GET", "/fleet/v1/state?unitName=b.service")).json()
    assert [s["name"] for s in by_unit["states"]] == ["b.service"]
    none = await ready_api.call("GET", "/fleet/v1/state?machineID=unknown")
    assert none.json() == {}

    one = await ready_api.call("GET", "/fleet/v1/state/b.service")
    assert one.status == 200
    assert one.json()["machineID"] == MACHINE
    missing = await ready_api.call("GET", "/fleet/v1/state/c.service")
    assert missing.json() == {
        "error": {"code": 404, "message": "unit state does not exist"}
    }


# -- machines -------------------------------------------------------------------


def metadata_op(op: str, key: str, value: str = "", machine: str = MACHINE) -> Any:
    return {"op": op, "path": f"/{machine}/metadata/{key}", "value": {"value": value}}


async def test_machines_list(ready_api: Api) -> None:
    reply = await ready_api.call("GET", "/fleet/v1/machines")
    assert reply.json() == {
        "machines": [
            {"id": MACHINE, "primaryIP": "127.0.0.1", "metadata": {"role": "web"}}
        ]
    }


async def test_metadata_patch(ready_api: Api) -> None:
    body = [
        metadata_op("add", "disk", "ssd"),
        metadata_op("replace", "role", "db"),
    ]
    reply = await ready_api.call("PATCH", "/fleet/v1/machines", body)
    assert reply.status == 204
    machine = (await ready_api.call("GET", "/fleet/v1/machines")).json()["machines"][0]
    assert machine["metadata"] == {"role": "db", "disk": "ssd"}

    removal = [{"op": "remove", "path": f"/{MACHINE}/metadata/role"}]
    assert (await ready_api.call("PATCH", "/fleet/v1/machines", removal)).status == 204
    machine = (await ready_api.call("GET", "/fleet/v1/machines")).json()["machines"][0]
    assert machine["metadata"] == {"disk": "ssd"}
    stored = dict(await ready_api.etcd_pairs())
    assert stored[keys.metadata_key(MACHINE, "role")] == b""


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[{", id="undecodable"),
        pytest.param({"op": "add"}, id="not-a-list"),
        pytest.param([metadata_op("set", "disk", "ssd")], id="bad-op"),
        pytest.param([metadata_op("add", "disk/x", "ssd")], id="bad-path"),
        pytest.param([metadata_op("add", "disk", "")], id="empty-value"),
        pytest.param(
            [{"op": "add", "path": f"/{MACHINE}/metadata/disk", "value": "ssd"}],
            id="value-not-object",
        ),
        pytest.param(
            [metadata_op("add", "disk", "ssd", machine=OTHER)], id="unknown-machine"
        ),
        pytest.param(
            [metadata_op("add", "disk", "ssd"), metadata_op("add", "bad key", "x")],
            id="one-bad-of-two",
        ),
    ],
)
async def test_bad_patch_changes_nothing(ready_api: Api, body: Any) -> None:
    before = await ready_api.etcd_pairs()
    reply = await ready_api.call("PATCH", "/fleet/v1/machines", body)
    assert reply.status == 400
    assert reply.json()["error"]["code"] == 400
    assert await ready_api.etcd_pairs() == before


# -- TLS and socket activation -------------------------------------------------


def tls_get(port: int, certificates: Path, client: str | None) -> int:
    context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    if client is not None:
        context.load_cert_chain(
            str(certificates / f"{client}.pem"), str(certificates / f"{client}.key")
        )
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=10
    )
    return send(connection, "GET", "/fleet/v1/machines").status


async def test_tls_with_client_certificate(ready_api: Api, certificates: Path) -> None:
    port = ready_api.server.tcp_port()
    assert await asyncio.to_thread(tls_get, port, certificates, "client") == 200


@pytest.mark.parametrize("client", [None, "rogue"])
async def test_tls_rejects_other_clients(
    ready_api: Api, certificates: Path, client: str | None
) -> None:
    port = ready_api.server.tcp_port()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(tls_get, port, certificates, client)


ACTIVATED_SERVER = """
import asyncio, sys
from fleetd.api.backend import ApiBackend
from fleetd.api.server import ApiServer
from fleetd.engine.engine import Engine

async def main() -> None:
    backend = ApiBackend(None, _Mirror(), lambda: False, "m")
    server = ApiServer(backend)
    await server.start()
    print(",".join(server.addresses), flush=True)
    await asyncio.sleep(60)

class _Mirror:
    def subscribe(self):
        return asyncio.Event()

asyncio.run(main())
"""


def test_socket_activation(tmp_path: Path) -> None:
    socket_path = tmp_path / "activated.sock"
    with subprocess.Popen(
        [
            "systemd-socket-activate",
            "--listen",
            str(socket_path),
            sys.executable,
            "-c",
            ACTIVATED_SERVER,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        check_activated(process, socket_path)


def check_activated(process: subprocess.Popen[str], socket_path: Path) -> None:
    try:
        assert process.stderr is not None
        # "Listening on <path> as 3." once the socket exists; the server
        # itself starts on the first connection.
        assert str(socket_path) in process.stderr.readline()
        reply = send(UnixHTTPConnection(str(socket_path)), "GET", "/fleet/v1/units")
        assert reply.status == 503
        assert reply.json() == UNAVAILABLE
        assert process.stdout is not None
        assert process.stdout.readline().strip() == str(socket_path)
    finally:
        process.kill()
        process.wait()
