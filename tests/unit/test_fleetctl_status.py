"""fleetctl status of a global unit when one of its machines cannot be reached."""

from __future__ import annotations

import pytest

import fleetd.peer
from fleetd.model import Machine
from tests.unit.test_fleetctl_commands import (
    MACHINE_A,
    MACHINE_B,
    FakeRegistry,
    local_machine,
    registry,
    run,
)
from tests.unit.test_fleetctl_journal_global import add_global

__all__ = ["local_machine", "registry"]

# Sorts between MACHINE_B and MACHINE_A, so a section follows its failure.
MACHINE_C = "5c0a77a3" + "0" * 24


@pytest.fixture
def systemctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake systemctl status here and on MACHINE_B; refuse MACHINE_C's peer port."""

    async def local_status(unit: str) -> tuple[int, bytes]:
        return 0, f"{unit} here\n".encode()

    async def remote_status(
        machine: Machine, unit: str, *, secret: bytes
    ) -> tuple[int, bytes]:
        if machine.id == MACHINE_C:
            raise ConnectionRefusedError(111, "Connect call failed")
        return 3, f"{unit} on {machine.id[:4]}\n".encode()

    monkeypatch.setattr(fleetd.peer, "run_systemctl_status", local_status)
    monkeypatch.setattr(fleetd.peer, "fetch_status", remote_status)


def test_status_global_skips_dead_machine(
    registry: FakeRegistry, local_machine: None, systemctl: None
) -> None:
    registry.machine_records[MACHINE_C] = Machine(MACHINE_C, "127.0.0.12", {})
    add_global(registry, MACHINE_A, MACHINE_B, MACHINE_C)
    result = run("status", "agent.service")
    assert result.stdout == (
        f"Machine {MACHINE_B}:\nagent.service on 0f0e\n\n"
        f"Machine {MACHINE_A} (10.0.0.1):\nagent.service here\n"
    )
    assert result.stderr.startswith(
        f"Error: cannot run systemctl status agent.service on machine {MACHINE_C} "
        "at 127.0.0.12: [Errno 111] Connect call failed"
    )
    assert result.stderr.count("\n") == 1
    # A failed machine makes the exit status 1, over systemctl's 3.
    assert result.exit_code == 1


def test_status_dead_machine_then_next_unit(
    registry: FakeRegistry, local_machine: None, systemctl: None
) -> None:
    registry.machine_records[MACHINE_C] = Machine(MACHINE_C, "127.0.0.12", {})
    add_global(registry, MACHINE_C)
    registry.add("web.service", "[Service]\nExecStart=/bin/true\n")
    registry.placement["web.service"] = MACHINE_A
    registry.current["web.service"] = "launched"
    result = run("status", "agent.service", "web.service")
    assert result.stdout == "web.service here\n"
    assert f"machine {MACHINE_C}" in result.stderr
    assert result.exit_code == 1


def test_status_placed_unit_on_dead_machine(
    registry: FakeRegistry, local_machine: None, systemctl: None
) -> None:
    registry.machine_records[MACHINE_C] = Machine(MACHINE_C, "127.0.0.12", {})
    registry.add("web.service", "[Service]\nExecStart=/bin/true\n")
    registry.placement["web.service"] = MACHINE_C
    registry.current["web.service"] = "launched"
    result = run("status", "web.service")
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"Error: cannot run systemctl status web.service on machine {MACHINE_C} "
        "at 127.0.0.12: "
    )
    assert result.exit_code == 1
