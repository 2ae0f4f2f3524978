"""fleetctl.states: decoding state keys as the registry view does."""

from __future__ import annotations

import logging

import pytest

from fleetctl.states import decode_states
from fleetd.model import UnitState
from fleetd.registry.view import RegistryView, encode_state


def state(name: str, machine_id: str, active: str = "active") -> UnitState:
    return UnitState(name, machine_id, "0123abc", "loaded", active, "running")


def pair(value: UnitState) -> tuple[str, bytes]:
    key = f"states/{value.name}/{value.machine_id}"
    return key, encode_state(value).encode()


def test_decode_matches_registry_view() -> None:
    # etcd returns keys in byte order, in which "a/" sorts after "a.b/".
    pairs = [
        pair(state("a.b.service", "m2")),
        pair(state("a.b.service", "m1", "failed")),
        pair(state("a.service", "m1")),
        pair(state("a.service-x", "m9")),
    ]
    view = RegistryView()
    view.load(pairs)
    assert decode_states(pairs) == view.unit_states()
    assert [(s.name, s.machine_id) for s in decode_states(pairs)] == [
        ("a.b.service", "m1"),
        ("a.b.service", "m2"),
        ("a.service", "m1"),
        ("a.service-x", "m9"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        b'{"activeState": "active"} {}',
        b'  {"activeState": "active"}\n',
        '{"activeState": "active"}'.encode("utf-16"),
        b"{}",
    ],
)
def test_decode_takes_what_json_loads_takes(value: bytes) -> None:
    pairs = [("states/web.service/m1", value)]
    view = RegistryView()
    view.load(pairs)
    assert decode_states(pairs) == view.unit_states()


def test_decode_skips_unreadable_values(caplog: pytest.LogCaptureFixture) -> None:
    good = pair(state("web.service", "m1"))
    pairs = [("states/bad.service/m1", b"{not json"), good]
    pairs.append(("states/list.service/m1", b"[1, 2]"))
    with caplog.at_level(logging.WARNING):
        decoded = decode_states(pairs)
    assert decoded == [state("web.service", "m1")]
    assert "states/bad.service/m1" in caplog.text
    assert "states/list.service/m1" in caplog.text
