"""``--output json`` of list-units, list-unit-files and list-machines."""

from __future__ import annotations

import json

from fleetd.model import DesiredState, UnitState
from fleetd.unit import UnitFile
from tests.unit.test_fleetctl_commands import (
    GLOBAL,
    MACHINE_A,
    MACHINE_B,
    WEB,
    FakeRegistry,
    registry,
    run,
)

__all__ = ["registry"]


def add_states(registry: FakeRegistry) -> None:
    registry.states[("web.service", MACHINE_A)] = UnitState(
        "web.service", MACHINE_A, "1c6fb6f3684bafb0c1", "loaded", "active", "running"
    )
    registry.states[("web.service", MACHINE_B)] = UnitState(
        "web.service", MACHINE_B, "", "loaded", "failed", "failed"
    )


def test_list_units_json_all_fields(registry: FakeRegistry) -> None:
    add_states(registry)
    result = run("list-units", "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "unit": "web.service",
            "machine": MACHINE_B,
            "active": "failed",
            "sub": "failed",
            "load": "loaded",
            "hash": None,
        },
        {
            "unit": "web.service",
            "machine": f"{MACHINE_A}/10.0.0.1",
            "active": "active",
            "sub": "running",
            "load": "loaded",
            "hash": "1c6fb6f3684bafb0c1",
        },
    ]


def test_list_units_json_is_one_document(registry: FakeRegistry) -> None:
    add_states(registry)
    result = run("list-units", "--output=json", "--fields=unit")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        '[\n  {\n    "unit": "web.service"\n  },\n'
        '  {\n    "unit": "web.service"\n  }\n]\n'
    )


def test_list_units_json_keeps_field_order(registry: FakeRegistry) -> None:
    add_states(registry)
    result = run("list-units", "--output=json", "--fields=sub,unit")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [list(row) for row in rows] == [["sub", "unit"], ["sub", "unit"]]


def test_list_units_table_is_default(registry: FakeRegistry) -> None:
    add_states(registry)
    default = run("list-units")
    table = run("list-units", "--output", "table")
    assert table.exit_code == 0, table.output
    assert table.stdout == default.stdout
    assert table.stdout.startswith("UNIT\t\tMACHINE\t\t\tACTIVE\tSUB\n")


def test_list_units_json_empty(registry: FakeRegistry) -> None:
    result = run("list-units", "--output", "json", "--no-legend")
    assert result.exit_code == 0, result.output
    assert result.stdout == "[]\n"


def test_list_unit_files_json(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    registry.add("agent.service", GLOBAL, DesiredState.LAUNCHED)
    result = run("list-unit-files", "--output", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert json.loads(result.stdout) == [
        {
            "unit": "agent.service",
            "hash": UnitFile.parse(GLOBAL).hash(),
            "dstate": "launched",
            "state": None,
            "target": "global",
            "global": True,
            "desc": None,
        },
        {
            "unit": "web.service",
            "hash": UnitFile.parse(WEB).hash(),
            "dstate": "launched",
            "state": "launched",
            "target": f"{MACHINE_A}/10.0.0.1",
            "global": False,
            "desc": "Web server",
        },
    ]


def test_list_unit_files_json_tmachine_on_request(registry: FakeRegistry) -> None:
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")
    result = run("list-unit-files", "--output=json", "--fields=unit,tmachine")
    assert result.exit_code == 0, result.output
    assert "deprecated" in result.stderr
    assert json.loads(result.stdout) == [
        {"unit": "web.service", "tmachine": f"{MACHINE_A}/10.0.0.1"}
    ]


def test_list_machines_json(registry: FakeRegistry) -> None:
    result = run("list-machines", "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"machine": MACHINE_B, "ip": None, "metadata": {}},
        {
            "machine": MACHINE_A,
            "ip": "10.0.0.1",
            "metadata": {"az": "1", "role": "web"},
        },
    ]


def test_list_machines_json_unknown_field(registry: FakeRegistry) -> None:
    result = run("list-machines", "--output", "json", "--fields=machine,zone")
    assert result.exit_code == 1
    assert 'Invalid key in output format: "zone"' in result.stderr


def test_list_machines_bad_output(registry: FakeRegistry) -> None:
    result = run("list-machines", "--output", "yaml")
    assert result.exit_code == 2
    assert "'yaml' is not one of 'table', 'json'" in result.stderr
