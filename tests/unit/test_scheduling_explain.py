"""fleetctl explain, the unplaceable-unit bound of waits and the placement resource.

fleetctl runs against the in-memory registry of test_fleetctl_commands; the
API resource runs against a registry view filled by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import fleetctl.waiting
from fleetctl.placement import placement_from_json
from fleetd.api.backend import ParsedFile
from fleetd.api.placement import placement
from fleetd.api.resources import ApiRequest, HttpError
from fleetd.model import DesiredState, Machine
from fleetd.registry import view as keys
from fleetd.registry.view import RegistryView, encode_machine, encode_unit_file
from fleetd.unit import UnitFile
from tests.unit.test_fleetctl_commands import (
    MACHINE_A,
    MACHINE_B,
    WEB,
    FakeRegistry,
    registry,  # noqa: F401 (a fixture)
    run,
)

EU = WEB + "\n[X-Fleet]\nMachineMetadata=region=eu\n"
REASON = "no machine has region=eu (2 machines checked)"


@pytest.fixture
def short_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up on an unplaceable unit after 0.3 s instead of 10 s, reading
    reasons from the first check."""
    monkeypatch.setattr(fleetctl.waiting, "UNPLACEABLE_SECONDS", 0.3)
    monkeypatch.setattr(fleetctl.waiting, "RECHECK_SECONDS", 0.05)
    monkeypatch.setattr(fleetctl.waiting, "FIRST_REPORT_SECONDS", 0.0)


def test_start_unplaceable_exits_with_reason(
    registry: FakeRegistry,  # noqa: F811
    short_bound: None,
) -> None:
    registry.add("eu.service", EU)
    registry.reasons["eu.service"] = REASON
    registry.converge = False

    result = run("start", "eu.service")

    assert result.exit_code == 1
    report, error = result.stderr.splitlines()
    assert report.endswith(f"(current state inactive), not placed: {REASON}")
    assert error == (
        f"Error: unit eu.service cannot be placed: {REASON}; it stays in the "
        "registry, and the engine places it once a machine fits (fleetctl "
        "explain eu.service shows each machine's check)"
    )
    assert registry.desired["eu.service"] is DesiredState.LAUNCHED


def test_start_unplaceable_waits_for_others(
    registry: FakeRegistry,  # noqa: F811
    short_bound: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.add("eu.service", EU)
    registry.add("web.service", WEB)
    registry.reasons["eu.service"] = REASON
    converge = registry._act

    async def converge_all_but_eu(name: str, desired: DesiredState) -> None:
        if name != "eu.service":
            await converge(name, desired)

    monkeypatch.setattr(registry, "_act", converge_all_but_eu)

    result = run("start", "eu.service", "web.service")

    assert result.exit_code == 1
    assert "Unit web.service launched on a1b2c3d4.../10.0.0.1" in result.stdout
    assert f"Error: unit eu.service cannot be placed: {REASON}" in result.stderr


def test_start_without_reason_uses_attempts(
    registry: FakeRegistry,  # noqa: F811
    short_bound: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleetctl.waiting, "ATTEMPT_SECONDS", 0.5)
    registry.add("web.service", WEB)
    registry.converge = False

    result = run("start", "--block-attempts=1", "web.service")

    assert result.exit_code == 1
    assert "cannot be placed" not in result.stderr
    assert "timed out waiting for unit web.service" in result.stderr


def test_explain_unplaceable_over_etcd(registry: FakeRegistry) -> None:  # noqa: F811
    registry.add("eu.service", EU, DesiredState.LAUNCHED)
    registry.reasons["eu.service"] = REASON

    result = run("explain", "eu")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Unit eu.service (desired state launched) is not placed: {REASON}"
    )
    # Machines in ID order: MACHINE_B sorts first and has no public IP.
    assert lines[1] == (
        f"{MACHINE_B[:8]}...: cannot run eu.service: metadata does not match "
        "region=eu (load 0)"
    )
    assert lines[2].startswith(f"{MACHINE_A[:8]}.../10.0.0.1: cannot run")
    assert len(lines) == 3


def test_explain_placed_unit_full_ids(registry: FakeRegistry) -> None:  # noqa: F811
    registry.add("web.service", WEB, DesiredState.LAUNCHED, MACHINE_A, "launched")

    result = run("explain", "--full", "web.service")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"Unit web.service (desired state launched) is placed on {MACHINE_A}/10.0.0.1"
    )
    assert lines[2] == (
        f"{MACHINE_A}/10.0.0.1: can run web.service (load 1, placed here)"
    )


def test_explain_unknown_unit_fails(registry: FakeRegistry) -> None:  # noqa: F811
    result = run("explain", "nothing")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: unit nothing.service not found; check the name with fleetctl "
        "list-unit-files\n"
    )


def test_placement_json_round_trip() -> None:
    decoded = placement_from_json(
        {
            "name": "eu.service",
            "desiredState": "launched",
            "reason": REASON,
            "machines": [{"id": MACHINE_A, "explanation": "cannot run eu.service"}],
        }
    )
    assert decoded.name == "eu.service"
    assert decoded.machine_id == ""
    assert decoded.reason == REASON
    assert not decoded.is_global
    assert [check.machine_id for check in decoded.machines] == [MACHINE_A]
    assert decoded.machines[0].public_ip == ""


# -- the API resource ------------------------------------------------------------


@dataclass
class ViewBackend:
    """The two members of ApiBackend that the placement resource reads."""

    view: RegistryView

    def parsed_file(self, name: str, unit_hash: str, raw: str) -> ParsedFile:
        return ParsedFile([], "Global=true" in raw)


def backend_with(units: dict[str, str], reasons: dict[str, str]) -> ViewBackend:
    view = RegistryView()
    for machine in (
        Machine(MACHINE_A, "10.0.0.1", {"region": "us"}),
        Machine(MACHINE_B, "10.0.0.2", {"region": "ap"}),
    ):
        view.apply(keys.machine_key(machine.id), encode_machine(machine).encode())
    for name, raw in units.items():
        unit_hash = UnitFile.parse(raw).hash()
        record = encode_unit_file(name, unit_hash, raw)
        view.apply(keys.unit_file_key(name), record.encode())
        view.apply(keys.desired_key(name), b"launched")
    for name, reason in reasons.items():
        view.apply(keys.reason_key(name), reason.encode())
    return ViewBackend(view)


def get(backend: ViewBackend, name: str, **query: str) -> object:
    request = ApiRequest("GET", {key: [value] for key, value in query.items()})
    reply = placement(backend, request, name)  # type: ignore[arg-type]
    assert reply.status == 200
    return json.loads(json.dumps(reply.body))


def test_resource_unplaceable_unit() -> None:
    backend = backend_with({"eu.service": EU}, {"eu.service": REASON})
    body = get(backend, "eu.service")
    assert body == {
        "name": "eu.service",
        "desiredState": "launched",
        "reason": REASON,
        "machines": [
            {
                "id": MACHINE_B,
                "primaryIP": "10.0.0.2",
                "explanation": "cannot run eu.service: metadata does not match "
                "region=eu (load 0)",
            },
            {
                "id": MACHINE_A,
                "primaryIP": "10.0.0.1",
                "explanation": "cannot run eu.service: metadata does not match "
                "region=eu (load 0)",
            },
        ],
    }


def test_resource_without_machines() -> None:
    backend = backend_with({"eu.service": EU}, {"eu.service": REASON})
    body = get(backend, "eu.service", machines="false")
    assert body == {"name": "eu.service", "desiredState": "launched", "reason": REASON}


def test_resource_global_unit() -> None:
    backend = backend_with({"g.service": WEB + "\n[X-Fleet]\nGlobal=true\n"}, {})
    body = get(backend, "g.service", machines="false")
    assert body == {"name": "g.service", "desiredState": "launched", "global": True}


@pytest.mark.parametrize(
    ("method", "name", "query", "status", "message"),
    [
        ("GET", "nothing.service", {}, 404, "unit does not exist"),
        ("PUT", "eu.service", {}, 405, "only GET supported against this resource"),
        ("GET", "eu.service", {"machines": ["no"]}, 400, "invalid machines='no'"),
    ],
)
def test_resource_errors(
    method: str, name: str, query: dict[str, list[str]], status: int, message: str
) -> None:
    backend = backend_with({"eu.service": EU}, {})
    with pytest.raises(HttpError, match=message) as raised:
        placement(backend, ApiRequest(method, query), name)  # type: ignore[arg-type]
    assert raised.value.status == status
