"""Why a unit is on its machine or not placed, over either driver.

With the etcd driver fleetctl reads the units and machines and runs
``scheduler.explain`` itself. With the API driver fleetd does it, at
``GET /fleet/v1/units/<name>/placement``, because the API's Unit entity
carries neither the engine's reason nor the parsed requirements.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fleetctl.api import ApiRegistry
from fleetctl.client import ClientRegistry
from fleetd.engine.scheduler import UnitSpec, explain
from fleetd.errors import ApiError, UnitFileError
from fleetd.model import Machine, Unit
from fleetd.rules import requirements_of
from fleetd.unit import UnitFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MachineCheck:
    """One machine's verdict on a unit, such as "can run web.service (load 2)"."""

    machine_id: str
    public_ip: str
    explanation: str


@dataclass(frozen=True)
class UnitPlacement:
    """Where a unit is placed, why the engine could not place it, and each machine.

    ``machine_id`` is empty while the unit is not placed, and always for a
    global unit. ``reason`` is what the engine leader recorded on its last
    pass, empty when it placed the unit or has not yet tried.
    """

    name: str
    desired_state: str
    machine_id: str = ""
    reason: str = ""
    is_global: bool = False
    machines: tuple[MachineCheck, ...] = ()


async def unit_placement(
    registry: ClientRegistry, name: str, *, with_machines: bool = True
) -> UnitPlacement | None:
    """Return the placement of ``name`` and, if asked, each machine's check.

    Returns None when there is no such unit. Raises ``FleetError`` when
    etcd or the API fails.
    """
    if isinstance(registry, ApiRegistry):
        return _placement_over_api(registry, name, with_machines)

    units = await registry.units()
    unit = next((unit for unit in units if unit.name == name), None)
    if unit is None:
        return None
    specs, error = unit_specs(units, name)
    is_global = any(spec.name == name and spec.requirements.is_global for spec in specs)
    placement = UnitPlacement(
        name=name,
        desired_state=unit.desired_state.value,
        machine_id="" if is_global else unit.machine_id,
        reason=unit.reason or error,
        is_global=is_global,
    )
    if not with_machines or error:
        return placement
    machines = sorted(await registry.machines(), key=lambda machine: machine.id)
    return dataclasses.replace(placement, machines=_checks(name, specs, machines))


async def engine_reason(registry: ClientRegistry, unit: Unit) -> str:
    """Return why the engine could not place ``unit``, "" if it is placed.

    The etcd driver's units carry the reason already. The API's Unit entity
    does not, so the API driver fetches it.
    """
    if unit.machine_id or unit.reason or not isinstance(registry, ApiRegistry):
        return "" if unit.machine_id else unit.reason
    try:
        placement = await unit_placement(registry, unit.name, with_machines=False)
    except ApiError as err:
        # A fleetd older than the placement resource returns 404; the wait
        # goes on without the reason.
        log.debug("cannot read why %s is not placed: %s", unit.name, err)
        return ""
    return placement.reason if placement is not None else ""


def unit_specs(units: Sequence[Unit], wanted: str) -> tuple[list[UnitSpec], str]:
    """Build the scheduler's input from registry units, as the engine does.

    Units whose files do not parse are left out, as the engine leaves them
    out. The second value is why the file of ``wanted`` does not parse,
    "" when it does.
    """
    specs: list[UnitSpec] = []
    error = ""
    for unit in units:
        try:
            requirements = requirements_of(unit.name, UnitFile.parse(unit.raw))
        except UnitFileError as err:
            log.warning("unit %s in the registry does not parse: %s", unit.name, err)
            if unit.name == wanted:
                error = f"the stored unit file does not parse: {err}"
            continue
        specs.append(
            UnitSpec(unit.name, requirements, unit.desired_state, unit.machine_id)
        )
    return specs, error


def _checks(
    name: str, specs: list[UnitSpec], machines: list[Machine]
) -> tuple[MachineCheck, ...]:
    lines = explain(name, specs, machines)
    checks = []
    # explain returns one "<machine ID>: <text>" line per machine, in ID order.
    for machine, line in zip(machines, lines, strict=True):
        prefix = f"{machine.id}: "
        text = line[len(prefix) :] if line.startswith(prefix) else line
        checks.append(MachineCheck(machine.id, machine.public_ip, text))
    return tuple(checks)


def _placement_over_api(
    api: ApiRegistry, name: str, with_machines: bool
) -> UnitPlacement | None:
    path = f"/units/{quote(name, safe='@:')}/placement"
    if not with_machines:
        path += "?machines=false"
    try:
        # NOTE: _request is ApiRegistry's private request helper. A public
        # method on ApiRegistry would be the better home for this call.
        _, data = api._request("GET", path)
    except ApiError as err:
        if err.status == 404 and "unit does not exist" in str(err):
            return None
        raise
    return placement_from_json(data or {})


def placement_from_json(data: dict[str, Any]) -> UnitPlacement:
    """Decode the body of ``GET /fleet/v1/units/<name>/placement``."""
    machines = tuple(
        MachineCheck(
            str(item.get("id", "")),
            str(item.get("primaryIP", "")),
            str(item.get("explanation", "")),
        )
        for item in data.get("machines") or ()
    )
    return UnitPlacement(
        name=str(data.get("name", "")),
        desired_state=str(data.get("desiredState", "")),
        machine_id=str(data.get("machineID", "")),
        reason=str(data.get("reason", "")),
        is_global=bool(data.get("global", False)),
        machines=machines,
    )
