"""submit, load and start: create units from files, then set their desired state."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import click

from fleetctl.bulk import plan_writes, store_units
from fleetctl.client import ClientRegistry, etcd_registry_of, run_with_registry
from fleetctl.commands.common import (
    EXIT_STATUS_EPILOG,
    attempts_from,
    blocking_options,
    fail_with,
    is_global,
    sign_option,
    units_argument,
)
from fleetctl.creation import Plan, plan_units
from fleetctl.options import FleetCommand, get_settings, warn
from fleetctl.selection import require_units
from fleetd.model import DesiredState, Unit
from fleetd.registry.view import UNITS

if TYPE_CHECKING:
    from fleetctl.waiting import Target

# The desired states in which --replace may overwrite a unit, per command: a
# command only replaces units that it would itself move to its own state.
SUBMIT_REPLACEABLE = frozenset({DesiredState.INACTIVE})
LOAD_REPLACEABLE = frozenset({DesiredState.INACTIVE, DesiredState.LOADED})
START_REPLACEABLE = frozenset(DesiredState)

replace_option = click.option(
    "--replace",
    is_flag=True,
    help="Replace units in the registry whose local file differs.",
)


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@sign_option
@replace_option
@units_argument
def submit(units: tuple[str, ...], replace: bool) -> None:
    """Upload unit files to the cluster without starting them.

    This operation is idempotent: units already in the registry are left as
    they are, with a warning if the local file differs (see --replace).
    """
    require_units(units)

    async def action(registry: ClientRegistry) -> list[str]:
        registry_units = await _registry_units(registry)
        plan = _plan(
            units, registry_units, replace, SUBMIT_REPLACEABLE, allow_templates=True
        )
        writes = plan_writes(plan.writes, plan.names, None)
        await store_units(registry, writes, activate=False, report=_report_stored)
        return []

    fail_with(run_with_registry(get_settings(), action))


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@sign_option
@replace_option
@blocking_options
@units_argument
def load(
    units: tuple[str, ...], replace: bool, block_attempts: int, no_block: bool
) -> None:
    """Schedule units to machines and load them into systemd without starting them.

    Units not yet in the registry are created from their files first.
    """
    _activate(units, replace, no_block, block_attempts, DesiredState.LOADED)


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@sign_option
@replace_option
@blocking_options
@units_argument
def start(
    units: tuple[str, ...], replace: bool, block_attempts: int, no_block: bool
) -> None:
    """Schedule units to machines and start them, waiting until systemd runs them.

    Units not yet in the registry are created from their files first.
    """
    _activate(units, replace, no_block, block_attempts, DesiredState.LAUNCHED)


def _activate(
    units: tuple[str, ...],
    replace: bool,
    no_block: bool,
    attempts: int,
    desired: DesiredState,
) -> None:
    require_units(units)
    operation = "start" if desired is DesiredState.LAUNCHED else "load"
    replaceable = START_REPLACEABLE if operation == "start" else LOAD_REPLACEABLE
    attempts = attempts_from(no_block, attempts)

    async def action(registry: ClientRegistry) -> list[str]:
        registry_units = await _registry_units(registry)
        plan = _plan(units, registry_units, replace, replaceable, allow_templates=False)
        written = {new.name: new for new in plan.writes}
        stored: set[str] = set()

        def report(name: str) -> None:
            stored.add(name)
            _report_stored(name)

        writes = plan_writes(plan.writes, plan.names, desired)
        missing = set(await store_units(registry, writes, activate=True, report=report))
        errors = [
            f"unit {name} was destroyed before it could be {desired}"
            for name in plan.names
            if name in missing
        ]
        targets: list[Target] = []
        for name in plan.names:
            if name in missing:
                continue
            if name in stored:
                global_unit: bool | None = written[name].is_global
            else:
                global_unit = await _is_global(registry, name, registry_units)
            if global_unit is None:
                errors.append(f"unit {name} was destroyed before it could be {desired}")
            elif global_unit:
                click.echo(f"Triggered global unit {name} {operation}")
            elif attempts == -1:
                click.echo(f"Triggered unit {name} {operation}")
            else:
                targets.append(_state_target(name, desired))
        if targets:
            errors += await _wait(registry, targets, attempts)
        return errors

    fail_with(run_with_registry(get_settings(), action))


def _plan(
    units: tuple[str, ...],
    registry_units: Mapping[str, Unit],
    replace: bool,
    replaceable: Collection[DesiredState],
    *,
    allow_templates: bool,
) -> Plan:
    """Plan the writes and print the plan's warnings; nothing is written yet."""
    plan = plan_units(
        units,
        registry_units,
        replace=replace,
        replaceable=replaceable,
        allow_templates=allow_templates,
    )
    for warning in plan.warnings:
        warn(warning)
    return plan


async def _registry_units(registry: ClientRegistry) -> dict[str, Unit]:
    """Return the registry's units by name, as far as planning needs them.

    Over etcd only the unit keys are read: their placement and current
    state play no part in the plan, and at 10,000 units the published
    states and machines are most of the rest of the registry.
    """
    etcd = etcd_registry_of(registry)
    if etcd is None:
        units = await registry.units()
    else:
        units = (await etcd.read_view(UNITS)).units()
    return {unit.name: unit for unit in units}


def _report_stored(name: str) -> None:
    # The original printed "inactive" here even when start or load went on
    # to set another desired state; scripts match this line.
    click.echo(f"Unit {name} inactive")


async def _is_global(
    registry: ClientRegistry, name: str, registry_units: Mapping[str, Unit]
) -> bool | None:
    """Tell whether the registry's unit ``name`` is global; None if it has none."""
    unit = registry_units.get(name)
    if unit is None:
        # Another client created the unit after the registry was read.
        unit = await registry.unit(name)
    return None if unit is None else is_global(unit)


def _state_target(name: str, desired: DesiredState) -> Target:
    from fleetctl.waiting import StateTarget

    return StateTarget(
        name=name,
        state=desired.value,
        systemd_active=desired is DesiredState.LAUNCHED,
    )


async def _wait(
    registry: ClientRegistry, targets: Sequence[Target], attempts: int
) -> list[str]:
    # Imported here: the wait's modules are not needed with --no-block.
    from fleetctl.waiting import wait_for

    return await wait_for(registry, targets, attempts)
