"""fleetctl journal of a global unit: one section per machine, -f on one."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

import fleetd.peer
from fleetd.model import DesiredState, Machine, UnitState
from tests.unit.test_fleetctl_commands import (
    GLOBAL,
    MACHINE_A,
    MACHINE_B,
    WEB,
    FakeRegistry,
    local_machine,
    registry,
    run,
)

__all__ = ["local_machine", "registry"]


@pytest.fixture
def journals(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record journal reads: journalctl here, the peer stream elsewhere."""
    calls: list[dict[str, Any]] = []

    def fake_run(argv: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        calls.append({"machine": "local", "argv": argv})
        print("local lines")
        return subprocess.CompletedProcess(argv, 0)

    async def fake_stream(machine: Machine, unit: str, **kwargs: Any) -> int:
        calls.append({"machine": machine.id, "unit": unit, **kwargs})
        kwargs["out"].write(b"remote lines\n")
        return 0

    monkeypatch.setattr("fleetctl.commands.inspect.subprocess.run", fake_run)
    monkeypatch.setattr("fleetctl.commands.inspect.shutil.which", lambda name: name)
    monkeypatch.setattr(fleetd.peer, "stream_journal", fake_stream)
    return calls


def add_global(registry: FakeRegistry, *machine_ids: str) -> None:
    registry.add("agent.service", GLOBAL, DesiredState.LAUNCHED)
    for machine_id in machine_ids:
        registry.states[("agent.service", machine_id)] = UnitState(
            "agent.service", machine_id, "", "loaded", "active", "running"
        )


def test_journal_global_one_section_per_machine(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    add_global(registry, MACHINE_A, MACHINE_B)
    result = run("journal", "--lines=3", "agent.service")
    assert result.exit_code == 0, result.output
    # Sections are in machine ID order, and MACHINE_B publishes no IP.
    assert result.stdout == (
        f"Machine {MACHINE_B}:\nremote lines\n\n"
        f"Machine {MACHINE_A} (10.0.0.1):\nlocal lines\n"
    )
    assert journals[0]["machine"] == MACHINE_B
    assert journals[0]["lines"] == 3
    assert journals[0]["follow"] is False
    assert journals[0]["secret"] == b"secret"
    assert journals[1]["machine"] == "local"
    assert journals[1]["argv"][:3] == ["journalctl", "--unit", "agent.service"]


def test_journal_global_skips_gone_machines(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    add_global(registry, MACHINE_A, "f" * 32)
    result = run("journal", "agent.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Machine {MACHINE_A} (10.0.0.1):\nlocal lines\n"


def test_journal_global_follow_needs_machine(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    add_global(registry, MACHINE_A, MACHINE_B)
    result = run("journal", "-f", "agent.service")
    assert result.exit_code == 2
    assert "Unit agent.service is global, so -f needs one machine" in result.stderr
    assert "--machine ID" in result.stderr
    assert journals == []


def test_journal_global_follow_on_machine_prefix(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    add_global(registry, MACHINE_A, MACHINE_B)
    result = run("journal", "-f", "--machine", MACHINE_B[:4], "agent.service")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Machine {MACHINE_B}:\nremote lines\n"
    assert len(journals) == 1
    assert journals[0]["machine"] == MACHINE_B
    assert journals[0]["follow"] is True


def test_journal_global_unknown_machine_prefix(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    add_global(registry, MACHINE_A)
    result = run("journal", "--machine", MACHINE_B[:4], "agent.service")
    assert result.exit_code == 1
    assert "not running on a machine whose ID starts with '0f0e'" in result.stderr
    assert MACHINE_A in result.stderr
    assert journals == []


def test_journal_global_ambiguous_machine_prefix(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    add_global(registry, MACHINE_A, MACHINE_B)
    result = run("journal", "--machine=", "-f", "agent.service")
    assert result.exit_code == 2
    other = "a1b2" + "0" * 28
    registry.machine_records[other] = Machine(other, "10.0.0.3", {})
    add_global(registry, MACHINE_A, other)
    ambiguous = run("journal", "--machine=a1b2", "agent.service")
    assert ambiguous.exit_code == 1
    assert "more than one machine running agent.service" in ambiguous.stderr
    assert journals == []


def test_journal_placed_unit_on_other_machine(
    registry: FakeRegistry, local_machine: None, journals: list[dict[str, Any]]
) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_B, "launched")
    result = run("journal", "--machine", MACHINE_A[:6], "web.service")
    assert result.exit_code == 1
    assert f"Unit web.service runs on machine {MACHINE_B}" in result.stderr
    assert journals == []
    placed = run("journal", "--machine", MACHINE_B[:6], "web.service")
    assert placed.exit_code == 0, placed.output
    # A unit placed on one machine gets no heading, as before.
    assert placed.stdout == "remote lines\n"


def test_journal_global_dead_machine_others_print(
    registry: FakeRegistry,
    local_machine: None,
    journals: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sorts between MACHINE_B and MACHINE_A, so sections follow the failure.
    dead = "5c0a77a3" + "0" * 24
    registry.machine_records[dead] = Machine(dead, "127.0.0.12", {})
    add_global(registry, MACHINE_A, MACHINE_B, dead)
    working_stream = fleetd.peer.stream_journal

    async def stream(machine: Machine, unit: str, **kwargs: Any) -> int:
        if machine.id == dead:
            raise ConnectionRefusedError(111, "Connect call failed")
        return await working_stream(machine, unit, **kwargs)

    monkeypatch.setattr(fleetd.peer, "stream_journal", stream)
    result = run("journal", "agent.service")
    assert result.stdout == (
        f"Machine {MACHINE_B}:\nremote lines\n\n"
        f"Machine {dead} (127.0.0.12):\n\n"
        f"Machine {MACHINE_A} (10.0.0.1):\nlocal lines\n"
    )
    assert result.stderr.startswith(
        f"Error: cannot read the journal of agent.service from machine {dead} at "
        "127.0.0.12: [Errno 111] Connect call failed"
    )
    assert result.stderr.count("\n") == 1
    assert result.exit_code == 1
