"""Dynamic machine metadata in the registry view: merged over the static values."""

from __future__ import annotations

from fleetd.model import Machine
from fleetd.registry import view as keys
from fleetd.registry.view import RegistryView

MACHINE = "a" * 32


def machine_object(metadata: dict[str, str]) -> bytes:
    return keys.encode_machine(Machine(MACHINE, "127.0.0.11", metadata)).encode()


def test_dynamic_value_overrides_static() -> None:
    view = RegistryView()
    view.apply(keys.machine_key(MACHINE), machine_object({"role": "web"}))
    view.apply(keys.metadata_key(MACHINE, "role"), b"db")
    assert view.machines[MACHINE].metadata == {"role": "db"}
    assert view.static_machines[MACHINE].metadata == {"role": "web"}


def test_empty_dynamic_value_removes_key() -> None:
    view = RegistryView()
    view.apply(keys.machine_key(MACHINE), machine_object({"role": "web", "az": "1"}))
    view.apply(keys.metadata_key(MACHINE, "role"), b"")
    assert view.machines[MACHINE].metadata == {"az": "1"}


def test_dynamic_value_before_machine_joins() -> None:
    view = RegistryView()
    view.apply(keys.metadata_key(MACHINE, "disk"), b"ssd")
    assert MACHINE not in view.machines
    view.apply(keys.machine_key(MACHINE), machine_object({}))
    assert view.machines[MACHINE].metadata == {"disk": "ssd"}
    assert view.machine_list()[0].metadata == {"disk": "ssd"}


def test_deleted_dynamic_key_restores_static() -> None:
    view = RegistryView()
    view.apply(keys.machine_key(MACHINE), machine_object({"role": "web"}))
    view.apply(keys.metadata_key(MACHINE, "role"), b"db")
    view.apply(keys.metadata_key(MACHINE, "role"), None)
    assert view.machines[MACHINE].metadata == {"role": "web"}
    assert MACHINE not in view.dynamic_metadata


def test_machine_leaving_keeps_dynamic_values() -> None:
    view = RegistryView()
    view.apply(keys.machine_key(MACHINE), machine_object({}))
    view.apply(keys.metadata_key(MACHINE, "disk"), b"ssd")
    view.apply(keys.machine_key(MACHINE), None)
    assert MACHINE not in view.machines
    assert view.dynamic_metadata[MACHINE] == {"disk": "ssd"}
