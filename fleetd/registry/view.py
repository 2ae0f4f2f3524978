"""The registry's key layout, and a parsed view of the keys under the prefix.

Every key lives under the key prefix (``etcd_key_prefix``); see
docs/registry.md for the layout, who writes each key and how writes are fenced.
The view is pure: it is fed key/value pairs from a range read or from watch
events and keeps parsed records, so fleetctl, the engine and the agent read the
same layout through one piece of code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from fleetd.model import DesiredState, Machine, Unit, UnitState

log = logging.getLogger(__name__)

T = TypeVar("T")

UNITS = "units/"
STATES = "states/"
MACHINES = "machines/"
LEADER = "engine/leader"
SECRET = "cluster/secret"


def unit_file_key(name: str) -> str:
    return f"{UNITS}{name}/file"


def desired_key(name: str) -> str:
    return f"{UNITS}{name}/desired"


def placement_key(name: str) -> str:
    return f"{UNITS}{name}/placement"


def reason_key(name: str) -> str:
    return f"{UNITS}{name}/reason"


def unit_prefix(name: str) -> str:
    return f"{UNITS}{name}/"


def state_key(name: str, machine_id: str) -> str:
    return f"{STATES}{name}/{machine_id}"


def machine_key(machine_id: str) -> str:
    return f"{MACHINES}{machine_id}/object"


def metadata_key(machine_id: str, name: str) -> str:
    """Return the key of one dynamic metadata value of a machine (set by the API)."""
    return f"{MACHINES}{machine_id}/metadata/{name}"


def encode_unit_file(name: str, unit_hash: str, raw: str) -> str:
    return json.dumps({"name": name, "hash": unit_hash, "raw": raw})


def encode_machine(machine: Machine) -> str:
    return json.dumps(
        {
            "ID": machine.id,
            "PublicIP": machine.public_ip,
            "Metadata": dict(machine.metadata),
            "Version": machine.version,
            "PeerPort": machine.peer_port,
        }
    )


def encode_state(state: UnitState) -> str:
    return json.dumps(
        {
            "loadState": state.load_state,
            "activeState": state.active_state,
            "subState": state.sub_state,
            "unitHash": state.hash,
            "fleetState": state.fleet_state,
        }
    )


@dataclass(frozen=True)
class UnitFileRecord:
    """The stored file of one unit."""

    hash: str
    raw: str


class RegistryView:
    """Parsed records of every key under the prefix, updated key by key.

    Keys are given relative to the prefix. Values that do not parse are
    logged and treated as absent, so one corrupt key cannot stop a reader.
    """

    def __init__(self) -> None:
        self.files: dict[str, UnitFileRecord] = {}
        self.desired: dict[str, DesiredState] = {}
        self.placements: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.states: dict[str, dict[str, UnitState]] = {}
        # Live machines, their static metadata merged with the dynamic values.
        self.machines: dict[str, Machine] = {}
        self.static_machines: dict[str, Machine] = {}
        # Dynamic metadata per machine ID, live or not: "" means removed.
        self.dynamic_metadata: dict[str, dict[str, str]] = {}
        self.leader = ""

    def load(self, pairs: Iterable[tuple[str, bytes]]) -> None:
        for key, value in pairs:
            self.apply(key, value)

    def apply(self, key: str, value: bytes | None) -> None:
        """Record a put of ``value`` at ``key``, or its deletion when None."""
        try:
            self._apply(key, value)
        except (ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable registry key %s: %s", key, err)

    def _apply(self, key: str, value: bytes | None) -> None:
        if key.startswith(UNITS):
            name, _, leaf = key[len(UNITS) :].rpartition("/")
            if leaf == "file":
                self._set(self.files, name, value, _decode_file)
            elif leaf == "desired":
                self._set(self.desired, name, value, _decode_desired)
            elif leaf == "placement":
                self._set(self.placements, name, value, bytes.decode)
            elif leaf == "reason":
                self._set(self.reasons, name, value, bytes.decode)
        elif key.startswith(STATES):
            name, _, machine_id = key[len(STATES) :].rpartition("/")
            per_machine = self.states.setdefault(name, {})
            if value is None:
                per_machine.pop(machine_id, None)
                if not per_machine:
                    del self.states[name]
            else:
                per_machine[machine_id] = _decode_state(name, machine_id, value)
        elif key.startswith(MACHINES):
            machine_id, _, leaf = key[len(MACHINES) :].partition("/")
            if leaf == "object":
                self._set(self.static_machines, machine_id, value, _decode_machine)
                self._merge_metadata(machine_id)
            elif leaf.startswith("metadata/"):
                values = self.dynamic_metadata.setdefault(machine_id, {})
                self._set(values, leaf[len("metadata/") :], value, bytes.decode)
                if not values:
                    del self.dynamic_metadata[machine_id]
                self._merge_metadata(machine_id)
        elif key == LEADER:
            self.leader = value.decode() if value is not None else ""

    @staticmethod
    def _set(
        table: dict[str, T],
        name: str,
        value: bytes | None,
        decode: Callable[[bytes], T],
    ) -> None:
        if value is None:
            table.pop(name, None)
        else:
            table[name] = decode(value)

    def _merge_metadata(self, machine_id: str) -> None:
        # Dynamic values win over the static ones, and "" removes a key, so
        # the engine and the agent match [X-Fleet] metadata against both.
        static = self.static_machines.get(machine_id)
        if static is None:
            self.machines.pop(machine_id, None)
            return
        dynamic = self.dynamic_metadata.get(machine_id)
        if not dynamic:
            self.machines[machine_id] = static
            return
        metadata = {**static.metadata, **dynamic}
        merged = {key: value for key, value in metadata.items() if value != ""}
        self.machines[machine_id] = dataclasses.replace(static, metadata=merged)

    def unit(self, name: str) -> Unit | None:
        record = self.files.get(name)
        if record is None:
            return None
        machine_id = self.placements.get(name, "")
        current = "inactive"
        state = self.states.get(name, {}).get(machine_id) if machine_id else None
        if state is not None and machine_id in self.machines:
            current = state.fleet_state
        return Unit(
            name=name,
            hash=record.hash,
            raw=record.raw,
            desired_state=self.desired.get(name, DesiredState.INACTIVE),
            machine_id=machine_id,
            current_state=current,
            reason=self.reasons.get(name, ""),
        )

    def units(self) -> list[Unit]:
        units = (self.unit(name) for name in sorted(self.files))
        return [unit for unit in units if unit is not None]

    def unit_states(self) -> list[UnitState]:
        return [
            self.states[name][machine_id]
            for name in sorted(self.states)
            for machine_id in sorted(self.states[name])
        ]

    def machine_list(self) -> list[Machine]:
        return [self.machines[machine_id] for machine_id in sorted(self.machines)]


def _decode_file(value: bytes) -> UnitFileRecord:
    data = json.loads(value)
    return UnitFileRecord(hash=str(data["hash"]), raw=str(data["raw"]))


def _decode_desired(value: bytes) -> DesiredState:
    return DesiredState(value.decode())


def _decode_state(name: str, machine_id: str, value: bytes) -> UnitState:
    data: Mapping[str, object] = json.loads(value)
    return UnitState(
        name=name,
        machine_id=machine_id,
        hash=str(data.get("unitHash", "")),
        load_state=str(data.get("loadState", "")),
        active_state=str(data.get("activeState", "")),
        sub_state=str(data.get("subState", "")),
        fleet_state=str(data.get("fleetState", "loaded")),
    )


def _decode_machine(value: bytes) -> Machine:
    data = json.loads(value)
    metadata = data.get("Metadata") or {}
    return Machine(
        id=str(data["ID"]),
        public_ip=str(data.get("PublicIP", "")),
        metadata={str(k): str(v) for k, v in metadata.items()},
        version=str(data.get("Version", "")),
        peer_port=int(data.get("PeerPort", 0)),
    )
