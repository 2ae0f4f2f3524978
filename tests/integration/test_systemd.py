"""SystemdManager against the real systemd 252 of a test host.

The D-Bus client has to run inside the host, because the host's /run (and
so its bus sockets) is private. Each test runs this file as a script inside
the host: the script plays one scenario with a SystemdManager and prints, as
JSON, the states its watch callback received. The test then checks that
record and inspects the host with systemctl.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetd.errors import SystemdError, UnitNameError
from fleetd.systemd import SystemdManager, UnitSystemdState

pytestmark = pytest.mark.integration

UNITS_DIR = "/run/fleet/units"
PRIVATE_BUS = "unix:path=/run/systemd/private"
WAIT_TIMEOUT = 20.0  # seconds a scenario waits for one expected state
SLEEPER = "[Service]\nExecStart=/bin/sleep infinity\n"

Event = tuple[str, str, str, str]  # (unit, load, active, sub)


# The driver that runs inside the host


class Recorder:
    """States received by the watch callback, in order, with a way to wait."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def record(self, name: str, state: UnitSystemdState) -> None:
        self.events.append((name, state.load, state.active, state.sub))
        self._changed.set()

    async def wait_for(self, name: str, load: str, active: str, sub: str) -> None:
        """Wait until the latest state received for ``name`` is the one given."""
        expected = (name, load, active, sub)
        async with asyncio.timeout(WAIT_TIMEOUT):
            while self._latest(name) != expected:
                self._changed.clear()
                await self._changed.wait()

    def _latest(self, name: str) -> Event | None:
        for event in reversed(self.events):
            if event[0] == name:
                return event
        return None


Scenario = Callable[[SystemdManager, Recorder, list[str]], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


@scenario
async def start_stop(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    name = args[0]
    manager.track([name])
    await manager.write_unit(name, SLEEPER)
    await manager.reload()
    await recorder.wait_for(name, "loaded", "inactive", "dead")

    await manager.start(name)
    await recorder.wait_for(name, "loaded", "active", "running")
    await manager.stop(name)
    await recorder.wait_for(name, "loaded", "inactive", "dead")
    return {}


@scenario
async def failing(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    name = args[0]
    manager.track([name])
    await manager.write_unit(name, "[Service]\nExecStart=/bin/false\n")
    await manager.reload()
    await manager.start(name)
    await recorder.wait_for(name, "loaded", "failed", "failed")
    return {}


@scenario
async def write_only(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    name, raw = args
    await manager.write_unit(name, raw)
    await manager.reload()
    return {}


@scenario
async def remove(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    name = args[0]
    manager.track([name])
    await manager.write_unit(name, SLEEPER + "[Install]\nWantedBy=multi-user.target\n")
    await manager.reload()
    await manager.start(name)
    await recorder.wait_for(name, "loaded", "active", "running")

    await manager.remove_unit(name)
    await manager.reload()
    await recorder.wait_for(name, "not-found", "inactive", "dead")
    await manager.remove_unit(name)  # a second removal finds nothing to do
    return {"local_units": manager.local_units()}


@scenario
async def replace(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    name = args[0]
    manager.track([name])
    await manager.write_unit(name, "[Unit]\nDescription=version 1\n" + SLEEPER)
    await manager.reload()
    await manager.start(name)
    await recorder.wait_for(name, "loaded", "active", "running")

    # The caller's restart after new content: write, reload, stop, start.
    await manager.write_unit(name, "[Unit]\nDescription=version 2\n" + SLEEPER)
    await manager.reload()
    await manager.stop(name)
    await recorder.wait_for(name, "loaded", "inactive", "dead")
    await manager.start(name)
    await recorder.wait_for(name, "loaded", "active", "running")
    return {}


@scenario
async def many(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    prefix, count = args[0], int(args[1])
    names = [f"{prefix}-{index}.service" for index in range(count)]
    for name in names:
        await manager.write_unit(name, SLEEPER)

    started = time.monotonic()
    await manager.reload()
    reload_seconds = time.monotonic() - started

    started = time.monotonic()
    states = await manager.states(names)
    states_seconds = time.monotonic() - started

    for name in names:
        await manager.remove_unit(name)
    await manager.reload()
    return {
        "reload_seconds": reload_seconds,
        "states_seconds": states_seconds,
        "states": {name: list(vars(state).values()) for name, state in states.items()},
        "local_units_after": manager.local_units(),
    }


@scenario
async def errors(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    name = args[0]
    messages: dict[str, str] = {}
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "start": lambda: manager.start(name),
        "stop": lambda: manager.stop(name),
        "states": lambda: manager.states([name.replace(".", "@.")]),
        "enable": lambda: manager.write_unit(
            name, SLEEPER + "[Install]\nAlias=other.socket\n"
        ),
    }
    for key, call in calls.items():
        try:
            await call()
        except SystemdError as err:
            messages[key] = str(err)

    try:
        await manager.write_unit("../" + name, SLEEPER)
    except UnitNameError as err:
        messages["name"] = str(err)
    return {"messages": messages, "local_units": manager.local_units()}


@scenario
async def reconnect(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    """Start a unit, break the connection with ``args[1:]``, then stop it."""
    name, command = args[0], args[1:]
    manager.track([name])
    await manager.write_unit(name, SLEEPER)
    await manager.reload()
    await manager.start(name)
    await recorder.wait_for(name, "loaded", "active", "running")

    bus = manager._bus
    subprocess.run(command, check=True, capture_output=True)
    async with asyncio.timeout(WAIT_TIMEOUT):
        while manager._bus is bus or not manager.connected:
            await asyncio.sleep(0.05)
        reconnected = manager._bus is not bus

    # Retry until systemd replies, because it may still be rejoining the bus.
    async with asyncio.timeout(WAIT_TIMEOUT):
        while True:
            try:
                await manager.stop(name)
                break
            except SystemdError:
                await asyncio.sleep(0.1)
    await recorder.wait_for(name, "loaded", "inactive", "dead")
    return {"reconnected": reconnected}


@scenario
async def systemd_rejoins_bus(
    manager: SystemdManager, recorder: Recorder, args: list[str]
) -> dict[str, Any]:
    """Start a unit, re-execute systemd, then stop the unit; same connection."""
    name = args[0]
    manager.track([name])
    await manager.write_unit(name, SLEEPER)
    await manager.reload()
    await manager.start(name)
    await recorder.wait_for(name, "loaded", "active", "running")

    bus = manager._bus
    owner = manager._systemd_owner
    subprocess.run(["systemctl", "daemon-reexec"], check=True, capture_output=True)
    async with asyncio.timeout(WAIT_TIMEOUT):
        while manager._systemd_owner in (None, owner):
            await asyncio.sleep(0.05)

    async with asyncio.timeout(WAIT_TIMEOUT):
        while True:
            try:
                await manager.stop(name)
                break
            except SystemdError:
                await asyncio.sleep(0.1)
    await recorder.wait_for(name, "loaded", "inactive", "dead")
    return {"same_connection": manager._bus is bus}


async def drive(name: str, bus_address: str | None, args: list[str]) -> dict[str, Any]:
    manager = SystemdManager(Path(UNITS_DIR), bus_address or None)
    recorder = Recorder()
    manager.watch(recorder.record)
    await manager.connect()
    try:
        result = await SCENARIOS[name](manager, recorder, args)
    finally:
        await manager.close()
    return {"events": recorder.events, **result}


def main(argv: list[str]) -> None:
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("FLEET_TEST_DEBUG") else logging.INFO,
        stream=sys.stderr,
    )
    name, bus_address, *args = argv
    result = asyncio.run(drive(name, bus_address, args))
    print(json.dumps(result))


# The tests, run outside the host


@pytest.fixture(scope="module")
def host() -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("test hosts need root to create namespaces")
    from fleetd.cluster.host import Host

    # The state directory must be outside the host's private /run and /tmp.
    parent = os.environ.get("FLEET_TEST_STATE_DIR", "/var/lib")
    state_dir = Path(tempfile.mkdtemp(prefix="fleet-test-systemd-", dir=parent))
    booted = Host.boot(f"systemd-{uuid.uuid4().hex[:8]}", state_dir, "127.0.0.41")
    try:
        yield booted
    finally:
        booted.kill()
        subprocess.run(["rm", "-rf", "--", str(state_dir)], check=True)


@pytest.fixture
def unit_name() -> str:
    return f"it-{uuid.uuid4().hex[:8]}.service"


def run_scenario(
    host: Any, name: str, *args: str, bus_address: str = ""
) -> dict[str, Any]:
    argv = [sys.executable, "-W", "error", __file__, name, bus_address, *args]
    result = host.run(argv, check=False, timeout=180)
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return output


def states_of(output: dict[str, Any], name: str) -> list[tuple[str, str, str]]:
    return [
        (load, active, sub)
        for unit, load, active, sub in output["events"]
        if unit == name
    ]


def systemctl(host: Any, *args: str) -> str:
    result = host.run(["systemctl", *args], check=False)
    return str(result.stdout.strip())


def exists_in_host(host: Any, path: str) -> bool:
    return bool(host.run(["test", "-e", path], check=False).returncode == 0)


@pytest.mark.parametrize("bus_address", ["", PRIVATE_BUS], ids=["bus", "private"])
def test_start_and_stop_seen_by_watch(
    host: Any, unit_name: str, bus_address: str
) -> None:
    output = run_scenario(host, "start_stop", unit_name, bus_address=bus_address)
    states = states_of(output, unit_name)
    running = states.index(("loaded", "active", "running"))
    assert ("loaded", "inactive", "dead") in states[running:]
    assert exists_in_host(host, f"/run/systemd/system/{unit_name}")


def test_failing_unit_reported_failed(host: Any, unit_name: str) -> None:
    output = run_scenario(host, "failing", unit_name)
    assert states_of(output, unit_name)[-1] == ("loaded", "failed", "failed")
    assert systemctl(host, "is-failed", unit_name) == "failed"


def test_install_section_enabled_at_runtime(host: Any, unit_name: str) -> None:
    raw = SLEEPER + "[Install]\nWantedBy=multi-user.target\n"
    run_scenario(host, "write_only", unit_name, raw)
    assert systemctl(host, "is-enabled", unit_name) == "enabled-runtime"
    wants = f"/run/systemd/system/multi-user.target.wants/{unit_name}"
    assert exists_in_host(host, wants)


def test_unit_without_install_only_linked(host: Any, unit_name: str) -> None:
    run_scenario(host, "write_only", unit_name, SLEEPER)
    assert systemctl(host, "is-enabled", unit_name) == "linked-runtime"
    assert systemctl(host, "show", "-p", "LoadState", "--value", unit_name) == "loaded"


def test_remove_unit_stops_and_removes(host: Any, unit_name: str) -> None:
    output = run_scenario(host, "remove", unit_name)
    states = states_of(output, unit_name)
    running = states.index(("loaded", "active", "running"))
    stopped = states.index(("loaded", "inactive", "dead"), running)
    assert states[-1] == ("not-found", "inactive", "dead")
    assert stopped < len(states) - 1
    assert unit_name not in output["local_units"]
    assert not exists_in_host(host, f"{UNITS_DIR}/{unit_name}")
    assert not exists_in_host(host, f"/run/systemd/system/{unit_name}")
    wants = f"/run/systemd/system/multi-user.target.wants/{unit_name}"
    assert not exists_in_host(host, wants)


def test_replaced_content_runs_after_restart(host: Any, unit_name: str) -> None:
    output = run_scenario(host, "replace", unit_name)
    assert states_of(output, unit_name)[-1] == ("loaded", "active", "running")
    assert systemctl(host, "show", "-p", "Description", "--value", unit_name) == (
        "version 2"
    )
    assert (
        systemctl(host, "show", "-p", "NeedDaemonReload", "--value", unit_name) == "no"
    )
    systemctl(host, "stop", unit_name)


def test_states_of_many_units_in_one_call(host: Any) -> None:
    prefix = f"many-{uuid.uuid4().hex[:6]}"
    output = run_scenario(host, "many", prefix, "300")
    states = output["states"]
    assert len(states) == 300
    assert all(state == ["loaded", "inactive", "dead"] for state in states.values())
    assert not any(name.startswith(prefix) for name in output["local_units_after"])
    print(
        f"reload with 300 new units: {output['reload_seconds']:.3f} s, "
        f"states of 300 units: {output['states_seconds']:.3f} s"
    )


def test_errors_name_unit_and_reply(host: Any, unit_name: str) -> None:
    output = run_scenario(host, "errors", unit_name)
    messages = output["messages"]
    assert messages["start"] == (
        f"systemd StartUnit({unit_name}) failed: "
        f"org.freedesktop.systemd1.NoSuchUnit: Unit {unit_name} not found."
    )
    assert f"StopUnit({unit_name})" in messages["stop"]
    assert "ListUnitsByNames" in messages["states"]
    assert "InvalidArgs" in messages["states"]
    assert f"EnableUnitFiles({unit_name})" in messages["enable"]
    assert "BadUnitSetting" in messages["enable"]
    assert "invalid unit name" in messages["name"]
    assert unit_name not in output["local_units"]


def test_reconnects_after_dbus_restart(host: Any, unit_name: str) -> None:
    output = run_scenario(
        host, "reconnect", unit_name, "systemctl", "restart", "dbus.service"
    )
    assert output["reconnected"]
    assert states_of(output, unit_name)[-1] == ("loaded", "inactive", "dead")


def test_reconnects_after_reexec_on_private_socket(host: Any, unit_name: str) -> None:
    output = run_scenario(
        host,
        "reconnect",
        unit_name,
        "systemctl",
        "daemon-reexec",
        bus_address=PRIVATE_BUS,
    )
    assert output["reconnected"]
    assert states_of(output, unit_name)[-1] == ("loaded", "inactive", "dead")


def test_resubscribes_after_reexec_on_bus(host: Any, unit_name: str) -> None:
    output = run_scenario(host, "systemd_rejoins_bus", unit_name)
    assert output["same_connection"]
    assert states_of(output, unit_name)[-1] == ("loaded", "inactive", "dead")


if __name__ == "__main__":
    main(sys.argv[1:])
