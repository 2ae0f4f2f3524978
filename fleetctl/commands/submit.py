"""submit, load and start: create units from files, then set their desired state."""

from __future__ import annotations

from collections.abc import Collection

import click

from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.commands.common import (
    EXIT_STATUS_EPILOG,
    attempts_from,
    blocking_options,
    fail_with,
    is_global,
    sign_option,
    units_argument,
)
from fleetctl.creation import apply_plan, plan_units
from fleetctl.options import FleetCommand, get_settings, warn
from fleetctl.selection import require_units
from fleetctl.waiting import StateTarget, Target, wait_for
from fleetd.model import DesiredState

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
        await _create(
            registry, units, replace, SUBMIT_REPLACEABLE, allow_templates=True
        )
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
        names = await _create(
            registry, units, replace, replaceable, allow_templates=False
        )
        by_name = {unit.name: unit for unit in await registry.units()}
        targets: list[Target] = []
        for name in names:
            unit = by_name.get(name)
            if unit is None:
                return [f"unit {name} was destroyed before it could be {desired}"]
            await registry.set_desired_state(name, desired)
            if is_global(unit):
                click.echo(f"Triggered global unit {name} {operation}")
            elif attempts == -1:
                click.echo(f"Triggered unit {name} {operation}")
            else:
                targets.append(
                    StateTarget(
                        name=name,
                        state=desired.value,
                        systemd_active=desired is DesiredState.LAUNCHED,
                    )
                )
        if not targets:
            return []
        return await wait_for(registry, targets, attempts)

    fail_with(run_with_registry(get_settings(), action))


async def _create(
    registry: ClientRegistry,
    units: tuple[str, ...],
    replace: bool,
    replaceable: Collection[DesiredState],
    *,
    allow_templates: bool,
) -> list[str]:
    """Create or replace the units that need it; return the names ``units`` name."""
    registry_units = {unit.name: unit for unit in await registry.units()}
    plan = plan_units(
        units,
        registry_units,
        replace=replace,
        replaceable=replaceable,
        allow_templates=allow_templates,
    )
    for warning in plan.warnings:
        warn(warning)
    await apply_plan(registry, plan)
    return plan.names
