"""fleetctl commands against an in-memory registry that behaves like a cluster.

The fake registry keeps the records that the ``Registry`` protocol exposes.
When ``converge`` is on, it also acts as engine and agents. Shortly after a
desired state changes, it places the unit, reports the new current state and
wakes the ``changes()`` readers, so the commands' waits run as on a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import fleetctl.client
import fleetctl.commands.common
import fleetctl.commands.inspect
import fleetctl.waiting
from fleetctl.cli import cli
from fleetctl.client import ClientRegistry, Settings
from fleetctl.commands.common import is_global
from fleetd.errors import RegistryError
from fleetd.model import DesiredState, Machine, Unit, UnitState
from fleetd.unit import UnitFile

MACHINE_A = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
MACHINE_B = "0f0e0d0c0b0a09080706050403020100"

WEB = "[Unit]\nDescription=Web server\n\n[Service]\nExecStart=/bin/sleep 100\n"
WEB_CHANGED = "[Service]\nExecStart=/bin/sleep 200\n"
GLOBAL = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n"


class FakeRegistry:
    """An in-memory registry; ``converge`` makes it act like engine and agents."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.desired: dict[str, DesiredState] = {}
        self.placement: dict[str, str] = {}
        self.current: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.states: dict[tuple[str, str], UnitState] = {}
        self.machine_records: dict[str, Machine] = {
            MACHINE_A: Machine(MACHINE_A, "10.0.0.1", {"role": "web", "az": "1"}),
            MACHINE_B: Machine(MACHINE_B, "", {}),
        }
        self.writes: list[str] = []
        self.converge = True
        self.fail_reads = False
        self._waiters: list[asyncio.Future[None]] = []

    # -- reads ------------------------------------------------------------

    def _check(self) -> None:
        if self.fail_reads:
            raise RegistryError(
                "etcd at http://127.0.0.1:9 is unreachable:\nconnection refused"
            )

    def _unit(self, name: str) -> Unit:
        raw = self.files[name]
        return Unit(
            name=name,
            hash=UnitFile.parse(raw).hash(),
            raw=raw,
            desired_state=self.desired[name],
            machine_id=self.placement.get(name, ""),
            current_state=self.current.get(name, "inactive"),
            reason=self.reasons.get(name, ""),
        )

    async def units(self) -> list[Unit]:
        self._check()
        return [self._unit(name) for name in sorted(self.files)]

    async def unit(self, name: str) -> Unit | None:
        self._check()
        return self._unit(name) if name in self.files else None

    async def machines(self) -> list[Machine]:
        self._check()
        return [self.machine_records[key] for key in sorted(self.machine_records)]

    async def unit_states(self) -> list[UnitState]:
        self._check()
        return [self.states[key] for key in sorted(self.states)]

    async def cluster_secret(self) -> bytes:
        return b"secret"

    async def changes(self) -> AsyncIterator[None]:
        while True:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
            yield None

    # -- writes -----------------------------------------------------------

    async def create_unit(self, name: str, raw: str, desired: DesiredState) -> bool:
        if name in self.files:
            return False
        self.writes.append(f"create {name} {desired}")
        self.files[name] = raw
        self.desired[name] = desired
        self._notify()
        self._converge(name, desired)
        return True

    async def replace_unit(self, name: str, raw: str, desired: DesiredState) -> None:
        self.writes.append(f"replace {name} {desired}")
        self.files[name] = raw
        self.desired[name] = desired
        self._notify()
        self._converge(name, desired)

    async def set_desired_state(self, name: str, desired: DesiredState) -> bool:
        if name not in self.files:
            return False
        self.writes.append(f"desire {name} {desired}")
        self.desired[name] = desired
        self._notify()
        self._converge(name, desired)
        return True

    async def destroy_unit(self, name: str) -> bool:
        if name not in self.files:
            return False
        self.writes.append(f"destroy {name}")
        for table in (self.files, self.desired, self.placement, self.current):
            table.pop(name, None)
        self._notify()
        if self.converge:
            asyncio.get_running_loop().create_task(self._forget_states(name))
        return True

    # -- the simulated engine and agents ------------------------------------

    def _converge(self, name: str, desired: DesiredState) -> None:
        if self.converge:
            asyncio.get_running_loop().create_task(self._act(name, desired))

    async def _act(self, name: str, desired: DesiredState) -> None:
        await asyncio.sleep(0.01)
        if name not in self.files or "Global=true" in self.files[name]:
            return
        if desired is DesiredState.INACTIVE:
            self.placement.pop(name, None)
            self.current[name] = "inactive"
            self.states = {k: v for k, v in self.states.items() if k[0] != name}
        else:
            machine = self.placement.setdefault(name, MACHINE_A)
            self.current[name] = desired.value
            active = "active" if desired is DesiredState.LAUNCHED else "inactive"
            sub = "running" if desired is DesiredState.LAUNCHED else "dead"
            self.states[(name, machine)] = UnitState(
                name,
                machine,
                UnitFile.parse(self.files[name]).hash(),
                "loaded",
                active,
                sub,
            )
        self._notify()

    async def _forget_states(self, name: str) -> None:
        await asyncio.sleep(0.01)
        self.states = {k: v for k, v in self.states.items() if k[0] != name}
        self._notify()

    def _notify(self) -> None:
        loop = asyncio.get_running_loop()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.get_loop() is loop and not waiter.done():
                waiter.set_result(None)

    # -- test helpers -----------------------------------------------------

    def add(
        self,
        name: str,
        raw: str,
        desired: DesiredState = DesiredState.INACTIVE,
        machine: str = "",
        current: str = "inactive",
    ) -> None:
        self.files[name] = raw
        self.desired[name] = desired
        if machine:
            self.placement[name] = machine
        self.current[name] = current


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()

    @contextlib.asynccontextmanager
    async def open_fake(settings: Settings) -> AsyncIterator[ClientRegistry]:
        yield fake

    monkeypatch.setattr(fleetctl.client, "opener", open_fake)
    return fake


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def fast_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make one --block-attempts attempt last 0.2 s instead of 2 s."""
    monkeypatch.setattr(fleetctl.waiting, "ATTEMPT_SECONDS", 0.2)


def run(*args: str) -> Result:
    # The fake registry replaces etcd: it also has the cluster secret.
    environment = {"FLEETCTL_DRIVER": "etcd"}
    return CliRunner().invoke(cli, list(args), prog_name="fleetctl", env=environment)


# -- submit -------------------------------------------------------------------


def test_submit_creates_unit_inactive(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "web.service").write_text("# comment\n" + WEB)
    result = run("submit", "web.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Unit web.service inactive\n"
    assert registry.files["web.service"] == WEB
    assert registry.desired["web.service"] is DesiredState.INACTIVE


def test_submit_mangles_name_and_reads_path(
    registry: FakeRegistry, workdir: Path
) -> None:
    (workdir / "units").mkdir()
    (workdir / "units" / "web.service").write_text(WEB)
    result = run("submit", "units/web")
    assert result.exit_code == 0, result.output
    assert list(registry.files) == ["web.service"]


def test_submit_is_idempotent(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "web.service").write_text(WEB)
    registry.add("web.service", WEB)
    result = run("submit", "web.service")
    assert result.exit_code == 0
    assert result.output == ""
    assert registry.writes == []


def test_submit_warns_when_registry_differs(
    registry: FakeRegistry, workdir: Path
) -> None:
    (workdir / "web.service").write_text(WEB_CHANGED)
    registry.add("web.service", WEB)
    result = run("submit", "web.service")
    assert result.exit_code == 0
    assert result.stderr == (
        "WARNING: Unit web.service in registry differs from local unit file "
        "web.service. Add --replace to override.\n"
    )
    assert registry.writes == []


def test_submit_replace_overwrites(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "web.service").write_text(WEB_CHANGED)
    registry.add("web.service", WEB)
    result = run("submit", "--replace", "web.service")
    assert result.exit_code == 0, result.output
    assert registry.writes == ["replace web.service inactive"]
    assert registry.files["web.service"] == WEB_CHANGED


def test_submit_replace_same_file(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "web.service").write_text(WEB)
    registry.add("web.service", WEB)
    result = run("submit", "--replace", "web.service")
    assert result.exit_code == 0
    assert "Found same Unit(web.service) in Registry, nothing to do" in result.stderr
    assert registry.writes == []


def test_submit_replace_refused_in_loaded_state(
    registry: FakeRegistry, workdir: Path
) -> None:
    (workdir / "web.service").write_text(WEB_CHANGED)
    registry.add("web.service", WEB, DesiredState.LOADED, MACHINE_A, "loaded")
    result = run("submit", "--replace", "web.service")
    assert result.exit_code == 0
    assert "can not replace Unit(web.service) in state 'loaded'" in result.stderr
    assert registry.writes == []


def test_submit_bad_file_writes_nothing(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "good.service").write_text(WEB)
    (workdir / "bad.service").write_text("[Service]\nExecStart=/bin/true\nnonsense\n")
    result = run("submit", "good.service", "bad.service")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid unit file bad.service: ")
    assert result.stderr.count("\n") == 1
    assert registry.writes == []


def test_submit_option_error_names_unit_once(
    registry: FakeRegistry, workdir: Path
) -> None:
    (workdir / "badx.service").write_text(
        WEB + "\n[X-Fleet]\nGlobal=true\nMachineOf=db.service\n"
    )
    result = run("submit", "badx.service")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: invalid unit file badx.service: Global=true cannot be used with "
        "MachineOf."
    )
    assert result.stderr.count("badx.service") == 1
    assert registry.writes == []


def test_submit_option_warning_names_unit_once(
    registry: FakeRegistry, workdir: Path
) -> None:
    (workdir / "unkx.service").write_text(WEB + "\n[X-Fleet]\nFoo=1\n")
    result = run("submit", "unkx.service")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "WARNING: unit unkx.service: unrecognized option 'Foo' in [X-Fleet] "
        "section is ignored."
    )
    assert result.stderr.count("unkx.service") == 1
    assert registry.writes == ["create unkx.service inactive"]


def test_submit_missing_file(registry: FakeRegistry, workdir: Path) -> None:
    result = run("submit", "nope.service")
    assert result.exit_code == 1
    assert "unit nope.service is not in the registry" in result.stderr
    assert "'nope.service'" in result.stderr
    assert registry.writes == []


def test_submit_invalid_name(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "we b.service").write_text(WEB)
    result = run("submit", "we b.service")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: invalid character ' ' in unit name 'we b.service'"
    )
    assert result.stderr.count("\n") == 1
    assert registry.writes == []


def test_submit_instance_from_registry_template(
    registry: FakeRegistry, workdir: Path
) -> None:
    registry.add("app@.service", WEB)
    result = run("submit", "app@1.service")
    assert result.exit_code == 0, result.output
    assert registry.files["app@1.service"] == WEB


def test_submit_instance_from_local_template(
    registry: FakeRegistry, workdir: Path
) -> None:
    (workdir / "app@.service").write_text(WEB)
    result = run("submit", "app@2.service")
    assert result.exit_code == 0, result.output
    assert registry.files == {"app@2.service": WEB}


# -- load and start -------------------------------------------------------------


def test_start_creates_and_waits(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "web.service").write_text(WEB)
    result = run("start", "web.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Unit web.service inactive\n"
        f"Unit web.service launched on {MACHINE_A[:8]}.../10.0.0.1\n"
    )
    assert registry.desired["web.service"] is DesiredState.LAUNCHED


def test_load_waits_for_loaded(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB)
    registry.placement["web.service"] = MACHINE_B
    result = run("load", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Unit web.service loaded on {MACHINE_B[:8]}...\n"


def test_start_no_block(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB)
    registry.converge = False
    result = run("start", "--no-block", "web.service")
    assert result.exit_code == 0
    assert result.stdout == "Triggered unit web.service start\n"
    assert registry.desired["web.service"] is DesiredState.LAUNCHED


def test_start_times_out(registry: FakeRegistry, fast_attempts: None) -> None:
    registry.add("web.service", WEB)
    registry.converge = False
    result = run("start", "--block-attempts=1", "web.service")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: timed out waiting for unit web.service to report state launched "
        "and become active\n"
    )


def test_wait_reports_progress(
    registry: FakeRegistry, fast_attempts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleetctl.waiting, "FIRST_REPORT_SECONDS", 0.0)
    registry.add("web.service", WEB)
    registry.converge = False
    result = run("load", "--block-attempts=1", "web.service")
    assert result.exit_code == 1
    assert (
        "for web.service to report state loaded (current state inactive)"
        in result.stderr
    )


def test_start_timeout_names_placement_reason(
    registry: FakeRegistry, fast_attempts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleetctl.waiting, "FIRST_REPORT_SECONDS", 0.0)
    registry.add("web.service", WEB)
    registry.reasons["web.service"] = "no machine has metadata role=db"
    registry.converge = False
    result = run("start", "--block-attempts=1", "web.service")
    assert result.exit_code == 1
    assert "not placed: no machine has metadata role=db" in result.stderr
    assert result.stderr.endswith(
        "and become active; the engine could not place it: no machine has "
        "metadata role=db\n"
    )


def test_start_global_unit_does_not_wait(registry: FakeRegistry) -> None:
    registry.add("agent.service", GLOBAL)
    registry.converge = False
    result = run("start", "agent.service")
    assert result.exit_code == 0
    assert result.stdout == "Triggered global unit agent.service start\n"


def test_start_template_rejected(registry: FakeRegistry, workdir: Path) -> None:
    (workdir / "app@.service").write_text(WEB)
    result = run("start", "app@.service")
    assert result.exit_code == 1
    assert "unit app@.service is a template" in result.stderr
    assert "app@1.service" in result.stderr
    assert registry.writes == []


def test_start_glob_acts_on_registry_units(registry: FakeRegistry) -> None:
    registry.add("web1.service", WEB)
    registry.add("web2.service", WEB)
    registry.add("db.service", WEB)
    result = run("start", "--no-block", "web*")
    assert result.exit_code == 0
    assert result.stdout == (
        "Triggered unit web1.service start\nTriggered unit web2.service start\n"
    )
    assert registry.desired["db.service"] is DesiredState.INACTIVE


# -- stop and unload ------------------------------------------------------------


def test_stop_inactive_unit_fails(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.add("idle.service", WEB)
    result = run("stop", "web.service", "idle.service")
    assert result.exit_code == 1
    assert "Unable to stop unit idle.service in state inactive" in result.stderr
    assert registry.writes == []


def test_stop_waits_for_loaded(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    result = run("stop", "web.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Unit web.service loaded on {MACHINE_A[:8]}.../10.0.0.1\n"
    assert result.stderr == "Successfully stopped units [web.service].\n"


def test_stop_skips_loaded_unit(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LOADED, MACHINE_A, "loaded")
    result = run("stop", "web.service")
    assert result.exit_code == 0
    assert registry.writes == []


def test_unload_waits_for_inactive(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    result = run("unload", "web.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Unit web.service inactive\n"
    assert result.stderr == "Successfully unloaded units [web.service].\n"
    assert registry.desired["web.service"] is DesiredState.INACTIVE


def test_unload_unknown_unit_warns_and_goes_on(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    result = run("unload", "--no-block", "web.service", "ghost")
    assert result.exit_code == 0
    assert "WARNING: unit ghost.service not found in the registry\n" in result.stderr
    assert registry.writes == ["desire web.service inactive"]


# -- destroy --------------------------------------------------------------------


def test_destroy_waits_until_gone(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.states[("web.service", MACHINE_A)] = UnitState(
        "web.service", MACHINE_A, "", "loaded", "active", "running"
    )
    result = run("destroy", "web.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Destroyed web.service\n"
    assert registry.files == {}
    assert registry.states == {}


def test_destroy_no_block_does_not_wait(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB)
    registry.states[("web.service", MACHINE_A)] = UnitState(
        "web.service", MACHINE_A, "", "loaded", "active", "running"
    )
    registry.converge = False
    result = run("destroy", "--no-block", "web.service")
    assert result.exit_code == 0
    assert result.stdout == "Destroyed web.service\n"


def test_destroy_times_out_while_machine_reports_unit(
    registry: FakeRegistry, fast_attempts: None
) -> None:
    registry.add("web.service", WEB)
    registry.states[("web.service", MACHINE_A)] = UnitState(
        "web.service", MACHINE_A, "", "loaded", "active", "running"
    )
    registry.converge = False
    result = run("destroy", "--block-attempts=1", "web.service")
    assert result.exit_code == 1
    assert "timed out waiting for unit web.service to be removed" in result.stderr


def test_destroy_glob(registry: FakeRegistry) -> None:
    for name in ("web1.service", "web2.service", "db.service"):
        registry.add(name, WEB)
    result = run("destroy", "web*")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Destroyed web1.service\nDestroyed web2.service\n"
    assert list(registry.files) == ["db.service"]


def test_destroy_glob_without_match_warns(registry: FakeRegistry) -> None:
    registry.add("db.service", WEB)
    result = run("destroy", "--no-block", "db.service", "web*")
    assert result.exit_code == 0
    assert "'web*' (no unit matches)" in result.stderr
    assert "Destroyed db.service" in result.stdout


def test_registry_error_is_one_line(registry: FakeRegistry) -> None:
    registry.fail_reads = True
    result = run("destroy", "web.service")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: etcd at http://127.0.0.1:9 is unreachable:; connection refused\n"
    )


# -- listings -------------------------------------------------------------------


def test_list_unit_files(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.add("agent.service", GLOBAL, DesiredState.LAUNCHED)
    registry.add("idle.service", WEB_CHANGED)
    web_hash = UnitFile.parse(WEB).hash()
    global_hash = UnitFile.parse(GLOBAL).hash()
    idle_hash = UnitFile.parse(WEB_CHANGED).hash()
    result = run("list-unit-files")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
        f"agent.service\t{global_hash[:7]}\tlaunched\t-\t\tglobal\n"
        f"idle.service\t{idle_hash[:7]}\tinactive\tinactive\t-\n"
        f"web.service\t{web_hash[:7]}\tlaunched\tlaunched\t{MACHINE_A[:8]}.../10.0.0.1\n"
    )


def test_list_unit_files_fields(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.add("agent.service", GLOBAL)
    result = run(
        "list-unit-files", "--no-legend", "--full", "--fields=unit,global,desc,target"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "agent.service\ttrue\t-\t\tglobal\n"
        f"web.service\tfalse\tWeb server\t{MACHINE_A}/10.0.0.1\n"
    )


def test_list_unit_files_tmachine_deprecated(registry: FakeRegistry) -> None:
    result = run("list-unit-files", "--fields=unit,tmachine")
    assert result.exit_code == 0
    assert 'The "tmachine" field is deprecated. Use "target" instead' in result.stderr
    assert result.stdout == "UNIT\tTMACHINE\n"


def test_list_units(registry: FakeRegistry) -> None:
    registry.states[("web.service", MACHINE_A)] = UnitState(
        "web.service", MACHINE_A, "1c6fb6f3684bafb0c1", "loaded", "active", "running"
    )
    registry.states[("web.service", MACHINE_B)] = UnitState(
        "web.service", MACHINE_B, "", "loaded", "failed", "failed"
    )
    result = run("list-units")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "UNIT\t\tMACHINE\t\t\tACTIVE\tSUB\n"
        f"web.service\t{MACHINE_B[:8]}...\t\tfailed\tfailed\n"
        f"web.service\t{MACHINE_A[:8]}.../10.0.0.1\tactive\trunning\n"
    )


def test_list_units_short_flag_and_fields(registry: FakeRegistry) -> None:
    registry.states[("web.service", MACHINE_A)] = UnitState(
        "web.service", MACHINE_A, "1c6fb6f3684bafb0c1", "loaded", "active", "running"
    )
    result = run("list-units", "-l", "--no-legend", "--fields=hash,load,machine")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"1c6fb6f3684bafb0c1\tloaded\t{MACHINE_A}/10.0.0.1\n"


def test_list_machines(registry: FakeRegistry) -> None:
    result = run("list-machines")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "MACHINE\t\tIP\t\tMETADATA\n"
        f"{MACHINE_B[:8]}...\t-\t\t-\n"
        f"{MACHINE_A[:8]}...\t10.0.0.1\taz=1,role=web\n"
    )


def test_list_machines_full(registry: FakeRegistry) -> None:
    result = run("list-machines", "--full", "--no-legend", "--fields=machine")
    assert result.exit_code == 0
    assert result.stdout == f"{MACHINE_B}\n{MACHINE_A}\n"


# -- cat and journal ------------------------------------------------------------


def test_cat_prints_stored_file(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB)
    result = run("cat", "web")
    assert result.exit_code == 0
    assert result.stdout == WEB


def test_cat_unknown_unit(registry: FakeRegistry) -> None:
    result = run("cat", "web")
    assert result.exit_code == 1
    assert "unit web.service not found in the registry" in result.stderr


def test_cat_glob_must_match_one(registry: FakeRegistry) -> None:
    registry.add("web1.service", WEB)
    registry.add("web2.service", WEB)
    result = run("cat", "web*")
    assert result.exit_code == 1
    assert "'web*' matches 2 units" in result.stderr


@pytest.fixture
def local_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine is MACHINE_A."""
    path = tmp_path / "machine-id"
    path.write_text(MACHINE_A + "\n")
    monkeypatch.setattr(fleetctl.commands.common, "MACHINE_ID_PATH", path)


def test_journal_local_runs_journalctl(
    registry: FakeRegistry, local_machine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr("fleetctl.commands.inspect.subprocess.run", fake_run)
    monkeypatch.setattr("fleetctl.commands.inspect.shutil.which", lambda name: name)
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    result = run("journal", "--lines=5", "-f", "--output=cat", "web")
    assert result.exit_code == 3
    assert calls == [
        [
            "journalctl",
            "--unit",
            "web.service",
            "--no-pager",
            "-n",
            "5",
            "--output",
            "cat",
            "-f",
        ],
    ]


def test_journal_remote_streams_from_peer(
    registry: FakeRegistry, local_machine: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fleetd.peer

    calls: list[dict[str, Any]] = []

    async def fake_stream(machine: Machine, unit: str, **kwargs: Any) -> int:
        calls.append({"machine": machine.id, "unit": unit, **kwargs})
        return 0

    monkeypatch.setattr(fleetd.peer, "stream_journal", fake_stream)
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_B, "launched")
    result = run("journal", "web.service")
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert calls[0]["machine"] == MACHINE_B
    assert calls[0]["lines"] == 10
    assert calls[0]["follow"] is False
    assert calls[0]["output"] == "short"
    assert calls[0]["secret"] == b"secret"


def test_journal_inactive_unit(registry: FakeRegistry, local_machine: None) -> None:
    registry.add("web.service", WEB)
    result = run("journal", "web.service")
    assert result.exit_code == 1
    assert "Unit web.service does not appear to be running" in result.stderr


def test_journal_global_unit_not_running(
    registry: FakeRegistry, local_machine: None
) -> None:
    registry.add("agent.service", GLOBAL)
    result = run("journal", "agent.service")
    assert result.exit_code == 1
    assert "Unit agent.service does not appear to be running" in result.stderr


def test_journal_launched_global_on_no_machine(
    registry: FakeRegistry, local_machine: None
) -> None:
    registry.add("agent.service", GLOBAL, DesiredState.LAUNCHED)
    result = run("journal", "agent.service")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Global unit agent.service has desired state launched but no live "
        "machine reports a state for it; `fleetctl explain agent.service` shows "
        "each machine's check\n"
    )


def test_journal_launched_unit_not_placed(
    registry: FakeRegistry, local_machine: None
) -> None:
    registry.add("nomatch.service", WEB, DesiredState.LAUNCHED)
    registry.reasons["nomatch.service"] = "no machine has metadata region=mars"
    result = run("journal", "nomatch.service")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Unit nomatch.service has desired state launched but is not placed "
        "on any machine: no machine has metadata region=mars; `fleetctl explain "
        "nomatch.service` shows each machine's check\n"
    )
    assert "fleetctl start" not in result.stderr


def test_journal_loaded_unit_not_placed_yet(
    registry: FakeRegistry, local_machine: None
) -> None:
    registry.add("web.service", WEB, DesiredState.LOADED)
    result = run("journal", "web.service")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Unit web.service has desired state loaded but is not placed on "
        "any machine; `fleetctl explain web.service` shows each machine's check\n"
    )


def test_stop_glob_skips_templates_and_inactive(registry: FakeRegistry) -> None:
    registry.add("sl@.service", WEB)
    registry.add("sl@1.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.add("sl@2.service", WEB)
    result = run("stop", "--no-block", "sl@*")
    assert result.exit_code == 0
    assert registry.writes == ["desire sl@1.service loaded"]
    assert "skipping unit sl@2.service in state inactive" in result.stderr


def test_stop_right_after_start_is_kept(registry: FakeRegistry) -> None:
    registry.add("slow.service", WEB, DesiredState.LAUNCHED)
    result = run("stop", "--no-block", "slow.service")
    assert result.exit_code == 0
    assert registry.writes == ["desire slow.service loaded"]


# -- restart --------------------------------------------------------------------


def test_restart_stops_then_starts(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    result = run("restart", "--no-block", "web.service")
    assert result.exit_code == 0, result.stderr
    assert registry.writes == [
        "desire web.service loaded",
        "desire web.service launched",
    ]
    assert "Triggered unit web.service restart" in result.stdout


def test_failed_restart_leaves_unit_launched(
    registry: FakeRegistry, fast_attempts: None
) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.converge = False

    result = run("restart", "--block-attempts=1", "web.service")

    assert result.exit_code == 1
    assert "to report state loaded" in result.stderr
    assert "set back to launched" in result.stderr
    assert registry.desired["web.service"] is DesiredState.LAUNCHED


def test_restart_of_loaded_unit_starts_it(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LOADED, MACHINE_A, "loaded")
    result = run("restart", "--no-block", "web.service")
    assert result.exit_code == 0, result.stderr
    assert registry.writes == ["desire web.service launched"]


def test_restart_of_inactive_unit_fails(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB)
    result = run("restart", "web.service")
    assert result.exit_code == 1
    assert "Unable to restart unit web.service in state inactive" in result.stderr
    assert registry.writes == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GLOBAL, True),
        ("[X-Fleet]\nGlobal=false\n", False),
        ("[Unit]\nDescription=Global web\n", False),
        (WEB, False),
    ],
)
def test_is_global_of_stored_file(raw: str, expected: bool) -> None:
    unit = Unit("web.service", "", raw, DesiredState.INACTIVE)
    assert is_global(unit) is expected
