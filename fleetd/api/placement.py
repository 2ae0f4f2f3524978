"""The placement resource: why a unit is on its machine, or why it is not placed.

``GET /fleet/v1/units/<name>/placement`` is not in the original fleet. It
returns the unit's placement, the reason the engine leader recorded when it
could not place the unit, and one line per live machine from
``scheduler.explain``. The lines are computed by this fleetd from its
registry mirror, the same input the engine plans from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fleetd.api.backend import ApiBackend
from fleetd.api.resources import ApiRequest, HttpError, Reply
from fleetd.api.schema import JSONObject
from fleetd.engine.scheduler import UnitSpec, explain
from fleetd.errors import UnitFileError
from fleetd.model import Machine, Unit
from fleetd.rules import Requirements, requirements_of
from fleetd.unit import UnitFile

log = logging.getLogger(__name__)

# Requirements by (unit name, unit hash). The name is part of the key because
# %n, %p and %i in [X-Fleet] values depend on it.
_requirements: dict[tuple[str, str], Requirements] = {}


def placement(backend: ApiBackend, request: ApiRequest, name: str) -> Reply:
    """Serve ``GET units/<name>/placement``; ``?machines=false`` skips the lines.

    Returns 404 for an unknown unit and 405 for any method but GET.
    """
    if request.method != "GET":
        raise HttpError(405, "only GET supported against this resource", Allow="GET")
    with_machines = _flag(request, "machines", default=True)

    view = backend.view
    unit = view.unit(name)
    if unit is None:
        raise HttpError(404, "unit does not exist")
    parsed = backend.parsed_file(unit.name, unit.hash, unit.raw)
    body: JSONObject = {
        "name": unit.name,
        "desiredState": unit.desired_state.value,
        "machineID": unit.machine_id,
        "reason": unit.reason,
        "global": parsed.is_global,
    }
    if with_machines:
        machines = view.machine_list()
        specs, error = _specs(view.units(), name)
        if error:
            body["reason"] = body["reason"] or error
        else:
            body["machines"] = _machine_lines(name, specs, machines)
    return Reply(200, {key: value for key, value in body.items() if value})


def _flag(request: ApiRequest, key: str, *, default: bool) -> bool:
    values = request.query.get(key, ())
    if not values:
        return default
    value = values[0].lower()
    if value not in {"true", "false"}:
        raise HttpError(400, f"invalid {key}={values[0]!r}: use true or false")
    return value == "true"


def _specs(units: Iterable[Unit], wanted: str) -> tuple[list[UnitSpec], str]:
    """Build the scheduler's input from the registry's units.

    Returns the specs and, when the file of ``wanted`` does not parse, why.
    Other units whose files do not parse are left out, as the engine leaves
    them out.
    """
    specs: list[UnitSpec] = []
    error = ""
    seen: set[tuple[str, str]] = set()
    for unit in units:
        key = (unit.name, unit.hash)
        seen.add(key)
        requirements = _requirements.get(key)
        if requirements is None:
            try:
                requirements = requirements_of(unit.name, UnitFile.parse(unit.raw))
            except UnitFileError as err:
                if unit.name == wanted:
                    error = f"the stored unit file does not parse: {err}"
                continue
            _requirements[key] = requirements
        specs.append(
            UnitSpec(unit.name, requirements, unit.desired_state, unit.machine_id)
        )
    if len(_requirements) > 2 * len(seen) + 1000:
        for stale in _requirements.keys() - seen:
            del _requirements[stale]
    return specs, error


def _machine_lines(
    name: str, specs: list[UnitSpec], machines: list[Machine]
) -> list[JSONObject]:
    ordered = sorted(machines, key=lambda machine: machine.id)
    lines = explain(name, specs, ordered)
    result: list[JSONObject] = []
    # explain returns one "<machine ID>: <text>" line per machine, in ID order.
    for machine, line in zip(ordered, lines, strict=True):
        prefix = f"{machine.id}: "
        text = line[len(prefix) :] if line.startswith(prefix) else line
        entry: JSONObject = {"id": machine.id, "explanation": text}
        if machine.public_ip:
            entry["primaryIP"] = machine.public_ip
        result.append(entry)
    return result
