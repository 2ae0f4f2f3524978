"""The installed fleetctl as a subprocess against a real etcd.

Each test uses its own key prefix. No fleetd runs here: where a command
waits for agents, the test writes the records an agent and the engine would
write, through the registry's own methods and key layout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetd.etcdserver import EtcdServer
from fleetd.model import DesiredState, Machine, UnitState
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.unit import UnitFile

pytestmark = pytest.mark.integration

FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
MACHINE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
WEB = "[Unit]\nDescription=Web server\n\n[Service]\nExecStart=/bin/sleep 100\n"


@dataclass
class Fleetctl:
    """Runs the installed fleetctl against the test's etcd and key prefix."""

    endpoint: str
    prefix: str
    cwd: Path

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLEETCTL_DRIVER": "etcd",
            "FLEETCTL_ENDPOINT": self.endpoint,
            "FLEETCTL_ETCD_KEY_PREFIX": self.prefix,
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLEETCTL, *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env=self.environment(),
            timeout=60,
        )

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            FLEETCTL,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd,
            env=self.environment(),
        )


@pytest.fixture
def fleetctl(etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path) -> Fleetctl:
    return Fleetctl(etcd_server.client_url, etcd_prefix, tmp_path)


@pytest.fixture
async def registry(
    etcd_server: EtcdServer, etcd_prefix: str
) -> AsyncIterator[EtcdRegistry]:
    async with open_registry([etcd_server.client_url], etcd_prefix, 3.0) as opened:
        yield opened


async def stored_keys(registry: EtcdRegistry) -> list[str]:
    _, pairs = await registry.read_all()
    return [key for key, _ in pairs]


async def publish(
    registry: EtcdRegistry,
    name: str,
    fleet_state: str,
    machine_id: str = MACHINE,
) -> None:
    """Write what the engine and the agent of a machine write for a placed unit."""
    unit = await registry.unit(name)
    assert unit is not None
    await registry.put(
        keys.machine_key(machine_id),
        keys.encode_machine(Machine(machine_id, "127.0.0.5", {"role": "web"})),
    )
    await registry.put(keys.placement_key(name), machine_id)
    state = UnitState(
        name, machine_id, unit.hash, "loaded", "active", "running", fleet_state
    )
    await registry.put(keys.state_key(name, machine_id), keys.encode_state(state))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- submit, list-unit-files, cat, destroy -----------------------------------------


async def test_submit_list_cat_destroy_round_trip(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    (fleetctl.cwd / "web.service").write_text("# a comment\n" + WEB)
    unit_hash = UnitFile.parse(WEB).hash()

    submitted = fleetctl.run("submit", "web.service")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout == "Unit web.service inactive\n"

    listed = fleetctl.run("list-unit-files")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == (
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
        f"web.service\t{unit_hash[:7]}\tinactive\tinactive\t-\n"
    )

    shown = fleetctl.run("cat", "web")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == WEB

    again = fleetctl.run("submit", "web.service")
    assert again.returncode == 0
    assert again.stdout == ""

    destroyed = fleetctl.run("destroy", "web.service")
    assert destroyed.returncode == 0, destroyed.stderr
    assert destroyed.stdout == "Destroyed web.service\n"
    assert await registry.unit("web.service") is None

    empty = fleetctl.run("list-unit-files", "--no-legend")
    assert empty.returncode == 0
    assert empty.stdout == ""


async def test_submit_replace_updates_hash(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    path = fleetctl.cwd / "web.service"
    path.write_text(WEB)
    assert fleetctl.run("submit", "web.service").returncode == 0
    changed = "[Service]\nExecStart=/bin/sleep 5\n"
    path.write_text(changed)

    warned = fleetctl.run("submit", "web.service")
    assert warned.returncode == 0
    assert "differs from local unit file web.service" in warned.stderr

    replaced = fleetctl.run("submit", "--replace", "web.service")
    assert replaced.returncode == 0, replaced.stderr
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.raw == changed
    assert unit.hash == UnitFile.parse(changed).hash()


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        (
            {"bad.service": "[Service]\nExecStart=/bin/true\nbare words\n"},
            ["good.service", "bad.service"],
            "Error: invalid unit file bad.service: ",
        ),
        ({}, ["good.service", "missing.service"], "Error: unit missing.service is"),
        (
            {"we b.service": WEB},
            ["good.service", "we b.service"],
            "Error: invalid character ' ' in unit name 'we b.service'",
        ),
        (
            {"app@.service": WEB},
            ["good.service", "app@.service"],
            "Error: unit app@.service is a template",
        ),
    ],
)
async def test_bad_input_writes_nothing(
    fleetctl: Fleetctl,
    registry: EtcdRegistry,
    files: dict[str, str],
    args: list[str],
    message: str,
) -> None:
    (fleetctl.cwd / "good.service").write_text(WEB)
    for name, text in files.items():
        (fleetctl.cwd / name).write_text(text)

    result = fleetctl.run("start", *args)

    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert await stored_keys(registry) == []


def test_unreachable_etcd_is_one_line(tmp_path: Path, etcd_prefix: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    fleetctl = Fleetctl(endpoint, etcd_prefix, tmp_path)
    result = fleetctl.run("--request-timeout=1", "list-unit-files")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
    assert endpoint in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


# -- list-machines, list-units ------------------------------------------------------


async def test_list_machines_and_units(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    assert await registry.create_unit("web.service", WEB, DesiredState.LAUNCHED)
    await publish(registry, "web.service", "launched")

    machines = fleetctl.run("list-machines")
    assert machines.returncode == 0, machines.stderr
    assert machines.stdout == (
        f"MACHINE\t\tIP\t\tMETADATA\n{MACHINE[:8]}...\t127.0.0.5\trole=web\n"
    )

    units = fleetctl.run("list-units")
    assert units.returncode == 0, units.stderr
    assert units.stdout == (
        "UNIT\t\tMACHINE\t\t\tACTIVE\tSUB\n"
        f"web.service\t{MACHINE[:8]}.../127.0.0.5\tactive\trunning\n"
    )

    files = fleetctl.run("list-unit-files", "--no-legend", "--fields=unit,state,target")
    assert files.returncode == 0, files.stderr
    assert files.stdout == f"web.service\tlaunched\t{MACHINE[:8]}.../127.0.0.5\n"


# -- start, load, stop, unload ----------------------------------------------------


async def test_start_waits_for_agent(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    (fleetctl.cwd / "web.service").write_text(WEB)
    process = await fleetctl.start("start", "--block-attempts=15", "web.service")

    async with asyncio.timeout(20):
        while True:
            unit = await registry.unit("web.service")
            if unit is not None and unit.desired_state is DesiredState.LAUNCHED:
                break
            await asyncio.sleep(0.05)
    await publish(registry, "web.service", "launched")
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 0, stderr.decode()
    assert stdout.decode() == (
        "Unit web.service inactive\n"
        f"Unit web.service launched on {MACHINE[:8]}.../127.0.0.5\n"
    )


def test_load_times_out_without_agents(fleetctl: Fleetctl) -> None:
    (fleetctl.cwd / "web.service").write_text(WEB)
    result = fleetctl.run("load", "--block-attempts=1", "web.service")
    assert result.returncode == 1
    assert result.stdout == "Unit web.service inactive\n"
    assert result.stderr.endswith(
        "Error: timed out waiting for unit web.service to report state loaded\n"
    )


async def test_start_no_block_sets_desired_state(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    (fleetctl.cwd / "web.service").write_text(WEB)
    result = fleetctl.run("start", "--no-block", "web.service")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Unit web.service inactive\nTriggered unit web.service start\n"
    )
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.desired_state is DesiredState.LAUNCHED


async def test_stop_inactive_unit_fails(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    assert await registry.create_unit("web.service", WEB, DesiredState.INACTIVE)
    result = fleetctl.run("stop", "web.service")
    assert result.returncode == 1
    assert "Unable to stop unit web.service in state inactive" in result.stderr
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.desired_state is DesiredState.INACTIVE


async def test_stop_and_unload_no_block(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    assert await registry.create_unit("web.service", WEB, DesiredState.LAUNCHED)
    await publish(registry, "web.service", "launched")

    stopped = fleetctl.run("stop", "--no-block", "web")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "Triggered unit web.service stop\n"
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.desired_state is DesiredState.LOADED

    unloaded = fleetctl.run("unload", "--no-block", "web")
    assert unloaded.returncode == 0, unloaded.stderr
    assert unloaded.stdout == "Triggered unit web.service unload\n"
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.desired_state is DesiredState.INACTIVE


# -- globs and unknown units --------------------------------------------------------


async def test_destroy_glob(fleetctl: Fleetctl, registry: EtcdRegistry) -> None:
    for name in ("web1.service", "web2.service", "db.service"):
        assert await registry.create_unit(name, WEB, DesiredState.INACTIVE)

    result = fleetctl.run("destroy", "web*")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "Destroyed web1.service\nDestroyed web2.service\n"
    assert [unit.name for unit in await registry.units()] == ["db.service"]


async def test_destroy_skips_unknown_units_with_warning(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    assert await registry.create_unit("db.service", WEB, DesiredState.INACTIVE)

    result = fleetctl.run("destroy", "db.service", "ghost.service", "web*")

    assert result.returncode == 0, result.stderr
    assert "WARNING: unit ghost.service not found in the registry" in result.stderr
    assert "WARNING: unit 'web*' (no unit matches) not found" in result.stderr
    assert result.stdout == "Destroyed db.service\n"
    assert await registry.units() == []


# -- journal --------------------------------------------------------------------


async def test_journal_of_local_unit_runs_journalctl(
    fleetctl: Fleetctl, registry: EtcdRegistry
) -> None:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        pytest.skip("journalctl is not installed")
    local_id = Path("/etc/machine-id").read_text().strip()
    assert await registry.create_unit("web.service", WEB, DesiredState.LAUNCHED)
    await publish(registry, "web.service", "launched", machine_id=local_id)
    argv = [journalctl, "--unit", "web.service", "--no-pager", "-n", "2"]
    argv += ["--output", "cat"]
    expected = subprocess.run(argv, capture_output=True, text=True)

    result = fleetctl.run("journal", "--lines=2", "--output=cat", "web")

    assert result.returncode == expected.returncode
    assert result.stdout == expected.stdout


def test_api_driver_on_etcd_endpoint(fleetctl: Fleetctl) -> None:
    result = fleetctl.run("--driver=API", "list-machines")
    assert result.returncode == 1
    assert "with 404: 404 page not found" in result.stderr
    assert "may be etcd. To use etcd directly, add --driver=etcd" in result.stderr
