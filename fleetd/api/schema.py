"""The API's JSON entities: Unit, UnitOption, UnitState and Machine.

Field names and the omission of empty fields follow the original's schema
(every field of every entity is left out when empty), so clients written for
the original decode these bodies unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetd.model import Machine, UnitState
from fleetd.unit import UnitFile, UnitOption

JSONObject = dict[str, Any]


class SchemaError(ValueError):
    """A request body that does not have the shape of the entity it claims to be."""


def _omit_empty(fields: Mapping[str, Any]) -> JSONObject:
    return {key: value for key, value in fields.items() if value}


def options_json(options: Sequence[UnitOption]) -> list[JSONObject]:
    # An option whose value is empty keeps its name and section.
    return [
        _omit_empty({"section": o.section, "name": o.name, "value": o.value})
        for o in options
    ]


def unit_json(
    name: str,
    options: list[JSONObject],
    desired_state: str,
    current_state: str,
    machine_id: str,
) -> JSONObject:
    return _omit_empty(
        {
            "name": name,
            "options": options,
            "desiredState": desired_state,
            "currentState": current_state,
            "machineID": machine_id,
        }
    )


def unit_state_json(state: UnitState) -> JSONObject:
    return _omit_empty(
        {
            "name": state.name,
            "hash": state.hash,
            "machineID": state.machine_id,
            "systemdLoadState": state.load_state,
            "systemdActiveState": state.active_state,
            "systemdSubState": state.sub_state,
        }
    )


def machine_json(machine: Machine) -> JSONObject:
    return _omit_empty(
        {
            "id": machine.id,
            "primaryIP": machine.public_ip,
            "metadata": dict(machine.metadata),
        }
    )


@dataclass(frozen=True)
class UnitRequest:
    """The body of ``PUT /units/<name>``: every field is optional."""

    name: str = ""
    options: tuple[UnitOption, ...] = ()
    desired_state: str = ""

    def unit_file(self) -> UnitFile:
        return UnitFile(self.options)


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SchemaError(f"{where}{key} must be a string, not {type(value).__name__}")
    return value


def parse_unit_request(data: object) -> UnitRequest:
    """Check the decoded JSON body of a unit PUT; raise SchemaError if malformed.

    Fields of the wrong type are rejected, as a typed decoder would; unknown
    fields and the read-only currentState and machineID are ignored.
    """
    if not isinstance(data, dict):
        raise SchemaError("request body must be a JSON object (a Unit)")
    raw_options = data.get("options")
    if raw_options is None:
        raw_options = []
    if not isinstance(raw_options, list):
        raise SchemaError("options must be a list of UnitOption objects")
    options: list[UnitOption] = []
    for index, item in enumerate(raw_options):
        where = f"options[{index}]."
        if not isinstance(item, dict):
            raise SchemaError(f"options[{index}] must be a UnitOption object")
        section = _string(item, "section", where)
        name = _string(item, "name", where)
        value = _string(item, "value", where)
        if not section or not name:
            raise SchemaError(f"options[{index}] needs a section and a name")
        if any(c in section + name for c in "\n[]="):
            raise SchemaError(
                f"options[{index}]: section {section!r} or name {name!r} contains "
                "a newline, '[', ']' or '='"
            )
        try:
            (section + name + value).encode("utf-8")
        except UnicodeEncodeError as err:
            raise SchemaError(
                f"options[{index}] contains an unpaired surrogate; send valid UTF-8"
            ) from err
        options.append(UnitOption(section, name, value))
    return UnitRequest(
        name=_string(data, "name", ""),
        options=tuple(options),
        desired_state=_string(data, "desiredState", ""),
    )


@dataclass(frozen=True)
class MetadataOperation:
    """One validated operation of a machines PATCH."""

    op: str
    machine_id: str
    key: str
    value: str


METADATA_OPS = ("add", "remove", "replace")
_METADATA_PATH = re.compile(r"/([^/]+)/metadata/([A-Za-z0-9_.-]+)")


def parse_metadata_patch(data: object) -> list[MetadataOperation]:
    """Check every operation of a machines PATCH body before any is applied.

    The body is a JSON array of ``{"op", "path", "value": {"value": ...}}``
    with ``path`` ``/<machine ID>/metadata/<key>``; add and replace need a
    non-empty value. Raises SchemaError naming the first bad operation.
    """
    if not isinstance(data, list):
        raise SchemaError("request body must be a JSON array of operations")
    operations: list[MetadataOperation] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise SchemaError(f"operation {index} must be a JSON object")
        where = f"operation {index}: "
        op = _string(item, "op", where)
        if op not in METADATA_OPS:
            raise SchemaError(f"{where}invalid op {op!r}; use add, remove or replace")
        path = _string(item, "path", where)
        match = _METADATA_PATH.fullmatch(path)
        if match is None:
            raise SchemaError(
                f"{where}invalid path {path!r}; use /<machine ID>/metadata/<key> "
                "with a key of letters, digits, '_', '.' and '-'"
            )
        wrapper = item.get("value")
        if wrapper is None:
            wrapper = {}
        if not isinstance(wrapper, dict):
            raise SchemaError(f'{where}value must be an object {{"value": "..."}}')
        value = _string(wrapper, "value", f"{where}value.")
        if op != "remove" and not value:
            raise SchemaError(f"{where}{op} needs a non-empty value")
        machine_id, key = match.groups()
        operations.append(
            MetadataOperation(op, machine_id, key, "" if op == "remove" else value)
        )
    return operations
