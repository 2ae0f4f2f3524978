"""The installed fleetctl over fleetd's API, on its unix socket and over TLS.

The API server runs in the test's event loop on a real etcd (the fixtures of
test_api); fleetctl runs as a subprocess with the default driver. Where a
command needs agents, the test writes what the engine and the agents write.
"""

# The fixtures api, ready_api and certificates come from test_api, so the
# test functions' parameters redefine those imported names on purpose.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetd.model import Machine, UnitState
from fleetd.peer import PeerServer
from fleetd.registry import view as keys
from fleetd.unit import UnitFile
from tests.integration.test_api import (  # noqa: F401
    MACHINE,
    OTHER,
    Api,
    api,
    certificates,
    ready_api,
)
from tests.integration.test_fleetctl import free_port

pytestmark = pytest.mark.integration

FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
WEB = "[Unit]\nDescription=Web server\n\n[Service]\nExecStart=/bin/sleep 100\n"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


async def fleetctl(cwd: Path, *args: str, endpoint: str = "") -> Run:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLEETCTL_")
    }
    if endpoint:
        environment["FLEETCTL_ENDPOINT"] = endpoint
    process = await asyncio.create_subprocess_exec(
        FLEETCTL,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=environment,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def place(api: Api, name: str, machine_id: str, fleet_state: str) -> None:
    """Write what the engine and the agent write for a unit placed on a machine."""
    unit_hash = UnitFile.parse(WEB).hash()
    await api.registry.put(keys.placement_key(name), machine_id)
    state = UnitState(
        name, machine_id, unit_hash, "loaded", "active", "running", fleet_state
    )
    await api.registry.put(keys.state_key(name, machine_id), keys.encode_state(state))
    backend = api.server.backend
    await backend._until(
        lambda view: (
            view.unit(name) is not None and view.unit(name).current_state == fleet_state
        ),  # type: ignore[union-attr]
        f"{name} {fleet_state}",
    )


async def test_commands_over_unix_socket(ready_api: Api, tmp_path: Path) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    (tmp_path / "web.service").write_text("# a comment\n" + WEB)
    unit_hash = UnitFile.parse(WEB).hash()

    submitted = await fleetctl(tmp_path, "submit", "web.service", endpoint=endpoint)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout == "Unit web.service inactive\n"

    listed = await fleetctl(tmp_path, "list-unit-files", endpoint=endpoint)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == (
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
        f"web.service\t{unit_hash[:7]}\tinactive\tinactive\t-\n"
    )

    shown = await fleetctl(tmp_path, "cat", "web", endpoint=endpoint)
    assert shown.stdout == WEB

    started = await fleetctl(
        tmp_path, "start", "--no-block", "web.service", endpoint=endpoint
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout == "Triggered unit web.service start\n"
    await place(ready_api, "web.service", MACHINE, "launched")

    units = await fleetctl(tmp_path, "list-units", endpoint=endpoint)
    assert units.returncode == 0, units.stderr
    assert units.stdout == (
        "UNIT\t\tMACHINE\t\t\tACTIVE\tSUB\n"
        f"web.service\t{MACHINE[:8]}.../127.0.0.1\tactive\trunning\n"
    )

    machines = await fleetctl(tmp_path, "list-machines", endpoint=endpoint)
    assert machines.stdout == (
        f"MACHINE\t\tIP\t\tMETADATA\n{MACHINE[:8]}...\t127.0.0.1\trole=web\n"
    )

    destroyed = await fleetctl(
        tmp_path, "destroy", "--no-block", "web.service", endpoint=endpoint
    )
    assert destroyed.returncode == 0, destroyed.stderr
    assert destroyed.stdout == "Destroyed web.service\n"
    assert "web.service" not in ready_api.server.backend.view.files


async def test_start_waits_over_api(ready_api: Api, tmp_path: Path) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    (tmp_path / "web.service").write_text(WEB)
    start = asyncio.create_task(
        fleetctl(
            tmp_path, "start", "--block-attempts=10", "web.service", endpoint=endpoint
        )
    )
    backend = ready_api.server.backend
    await backend._until(
        lambda view: str(view.desired.get("web.service")) == "launched", "launched"
    )
    await place(ready_api, "web.service", MACHINE, "launched")
    started = await start
    assert started.returncode == 0, started.stderr
    assert started.stdout == (
        f"Unit web.service inactive\nUnit web.service launched on "
        f"{MACHINE[:8]}.../127.0.0.1\n"
    )


async def test_replace_keeps_hash(ready_api: Api, tmp_path: Path) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    changed = WEB.replace("100", "200")
    (tmp_path / "web.service").write_text(WEB)
    assert (
        await fleetctl(tmp_path, "submit", "web", endpoint=endpoint)
    ).returncode == 0
    (tmp_path / "web.service").write_text(changed)
    replaced = await fleetctl(tmp_path, "submit", "--replace", "web", endpoint=endpoint)
    assert replaced.returncode == 0, replaced.stderr
    listed = await fleetctl(
        tmp_path,
        "list-unit-files",
        "--full",
        "--no-legend",
        "--fields=unit,hash",
        endpoint=endpoint,
    )
    assert listed.stdout == f"web.service\t{UnitFile.parse(changed).hash()}\n"


async def test_commands_over_tls(
    ready_api: Api, tmp_path: Path, certificates: Path
) -> None:
    port = ready_api.server.tcp_port()
    tls = [
        f"--ca-file={certificates / 'ca.pem'}",
        f"--cert-file={certificates / 'client.pem'}",
        f"--key-file={certificates / 'client.key'}",
    ]
    endpoint = f"https://127.0.0.1:{port}"
    listed = await fleetctl(
        tmp_path, *tls, "list-machines", "--no-legend", endpoint=endpoint
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"{MACHINE[:8]}...\t127.0.0.1\trole=web\n"

    without_cert = await fleetctl(tmp_path, tls[0], "list-machines", endpoint=endpoint)
    assert without_cert.returncode == 1
    assert f"cannot reach the fleet API at {endpoint}" in without_cert.stderr


async def test_api_error_reaches_user(ready_api: Api, tmp_path: Path) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    shown = await fleetctl(tmp_path, "cat", "missing.service", endpoint=endpoint)
    assert shown.returncode == 1
    assert "missing.service not found" in shown.stderr


async def submit_placed(api: Api, tmp_path: Path, machine_id: str) -> str:
    endpoint = f"unix://{api.socket_path}"
    (tmp_path / "web.service").write_text(WEB)
    started = await fleetctl(
        tmp_path, "start", "--no-block", "web.service", endpoint=endpoint
    )
    assert started.returncode == 0, started.stderr
    await place(api, "web.service", machine_id, "launched")
    return endpoint


async def test_journal_of_local_unit(ready_api: Api, tmp_path: Path) -> None:
    # Placed on the API's own machine, so fleetd runs journalctl itself.
    # fleetctl must not run journalctl locally, which it would for a unit
    # placed on the machine in /etc/machine-id; MACHINE is not that one.
    endpoint = await submit_placed(ready_api, tmp_path, MACHINE)
    journal = await fleetctl(
        tmp_path, "journal", "--lines=3", "web.service", endpoint=endpoint
    )
    assert journal.returncode == 0, journal.stderr
    # This machine's journal has no entries for a unit that never ran.
    assert "No entries" in journal.stdout or journal.stdout == ""


async def test_journal_from_peer(ready_api: Api, tmp_path: Path) -> None:
    secret = await ready_api.registry.cluster_secret()
    port = free_port()
    peer = PeerServer(secret, "127.0.0.1", port)
    await peer.start()
    try:
        other = Machine(OTHER, "127.0.0.1", {}, peer_port=port)
        await ready_api.registry.put(
            keys.machine_key(OTHER), keys.encode_machine(other)
        )
        endpoint = await submit_placed(ready_api, tmp_path, OTHER)
        journal = await fleetctl(
            tmp_path, "journal", "--output=cat", "web.service", endpoint=endpoint
        )
        assert journal.returncode == 0, journal.stderr
        assert "No entries" in journal.stdout or journal.stdout == ""
    finally:
        await peer.close()


async def test_journal_of_global_unit_not_running(
    ready_api: Api, tmp_path: Path
) -> None:
    endpoint = f"unix://{ready_api.socket_path}"
    (tmp_path / "g.service").write_text(WEB + "\n[X-Fleet]\nGlobal=true\n")
    assert (await fleetctl(tmp_path, "submit", "g", endpoint=endpoint)).returncode == 0
    journal = await fleetctl(tmp_path, "journal", "g.service", endpoint=endpoint)
    assert journal.returncode == 1
    assert "Unit g.service does not appear to be running" in journal.stderr


def test_fleetctl_api_driver_skips_server_and_etcd_modules() -> None:
    code = (
        "import sys\n"
        "from fleetctl.cli import main\n"
        "sys.argv = ['fleetctl', '--endpoint', 'unix:///nonexistent.sock', "
        "'list-units']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp' "
        "or m in {'fleetd.registry.etcd', 'fleetd.registry.gateway'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
