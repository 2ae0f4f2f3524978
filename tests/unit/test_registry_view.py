import json

from fleetd.model import DesiredState, Machine, UnitState
from fleetd.registry import view as keys
from fleetd.registry.view import RegistryView

MACHINE = "a" * 32
OTHER = "b" * 32


def loaded_view() -> RegistryView:
    registry_view = RegistryView()
    registry_view.load(
        [
            (
                keys.unit_file_key("web.service"),
                b'{"name":"web.service","hash":"h1",'
                b'"raw":"[Service]\\nExecStart=/bin/true\\n"}',
            ),
            (keys.desired_key("web.service"), b"launched"),
            (keys.placement_key("web.service"), MACHINE.encode()),
            (
                keys.machine_key(MACHINE),
                keys.encode_machine(
                    Machine(MACHINE, "127.0.0.11", {"a": "b"})
                ).encode(),
            ),
            (
                keys.state_key("web.service", MACHINE),
                keys.encode_state(
                    UnitState(
                        "web.service",
                        MACHINE,
                        "h1",
                        "loaded",
                        "active",
                        "running",
                        "launched",
                    )
                ).encode(),
            ),
        ]
    )
    return registry_view


def test_unit_current_state_comes_from_its_machine() -> None:
    unit = loaded_view().unit("web.service")
    assert unit is not None
    assert unit.desired_state is DesiredState.LAUNCHED
    assert unit.machine_id == MACHINE
    assert unit.current_state == "launched"


def test_unit_is_inactive_when_its_machine_is_gone() -> None:
    registry_view = loaded_view()
    registry_view.apply(keys.machine_key(MACHINE), None)
    unit = registry_view.unit("web.service")
    assert unit is not None
    assert unit.current_state == "inactive"


def test_state_from_another_machine_does_not_count() -> None:
    registry_view = loaded_view()
    registry_view.apply(keys.placement_key("web.service"), OTHER.encode())
    unit = registry_view.unit("web.service")
    assert unit is not None
    assert unit.current_state == "inactive"


def test_deleting_the_file_removes_the_unit() -> None:
    registry_view = loaded_view()
    registry_view.apply(keys.unit_file_key("web.service"), None)
    assert registry_view.units() == []


def test_machine_round_trips_through_json() -> None:
    machine = loaded_view().machines[MACHINE]
    assert machine.public_ip == "127.0.0.11"
    assert dict(machine.metadata) == {"a": "b"}


def test_unreadable_value_is_ignored() -> None:
    registry_view = loaded_view()
    registry_view.apply(keys.machine_key(OTHER), b"{not json")
    assert OTHER not in registry_view.machines
    assert MACHINE in registry_view.machines


def test_unit_states_sorted_by_unit_then_machine() -> None:
    registry_view = loaded_view()
    state = json.dumps({"loadState": "loaded", "activeState": "active"}).encode()
    registry_view.apply(keys.state_key("a.service", OTHER), state)
    registry_view.apply(keys.state_key("a.service", MACHINE), state)
    names = [(s.name, s.machine_id) for s in registry_view.unit_states()]
    assert names == [
        ("a.service", MACHINE),
        ("a.service", OTHER),
        ("web.service", MACHINE),
    ]


def test_removing_last_state_drops_unit_entry() -> None:
    registry_view = loaded_view()
    registry_view.apply(keys.state_key("web.service", MACHINE), None)
    assert registry_view.unit_states() == []
