"""stop and unload: move existing units back to loaded or inactive."""

from __future__ import annotations

import logging

import click

from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.commands.common import (
    EXIT_STATUS_EPILOG,
    attempts_from,
    blocking_options,
    fail_with,
    is_global,
    units_argument,
)
from fleetctl.options import FleetCommand, get_settings, warn
from fleetctl.selection import is_glob, require_units, select_units, unit_name_of
from fleetctl.waiting import StateTarget, Target, wait_for
from fleetd.model import DesiredState, Unit
from fleetd.unit import UnitNameInfo

log = logging.getLogger(__name__)


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@blocking_options
@units_argument
def stop(units: tuple[str, ...], block_attempts: int, no_block: bool) -> None:
    """Stop running units, leaving them loaded on their machines.

    Unit names may be shell-style patterns in quotes: 'web@*' stops every
    unit whose name starts with web@.
    """
    require_units(units)
    attempts = attempts_from(no_block, block_attempts)

    async def action(registry: ClientRegistry) -> list[str]:
        selected = select_units(units, await registry.units(), missing_ok=True)
        named = {unit_name_of(arg) for arg in units if not is_glob(arg)}
        chosen: list[Unit] = []
        for unit in selected:
            info = UnitNameInfo.from_name(unit.name)
            if info is not None and info.is_template:
                log.debug("unit %s is a template, skipping it", unit.name)
            elif is_global(unit) or unit.desired_state is DesiredState.LAUNCHED:
                # A unit asked to run is stopped even before it reports a
                # state, so a stop right after a start is not lost.
                chosen.append(unit)
            elif unit.current_state == DesiredState.LOADED:
                log.debug("unit %s is already loaded, skipping it", unit.name)
            elif unit.name in named:
                raise click.ClickException(
                    f"Unable to stop unit {unit.name} in state inactive; it is not "
                    "loaded on any machine, so there is nothing to stop"
                )
            else:
                warn(f"WARNING: skipping unit {unit.name} in state inactive")
        return await _set_and_wait(
            registry, chosen, DesiredState.LOADED, "stop", attempts, "stopped"
        )

    fail_with(run_with_registry(get_settings(), action))


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@blocking_options
@units_argument
def unload(units: tuple[str, ...], block_attempts: int, no_block: bool) -> None:
    """Unload units from their machines, keeping them in the registry.

    Unit names may be shell-style patterns in quotes, as for stop.
    """
    require_units(units)
    attempts = attempts_from(no_block, block_attempts)

    async def action(registry: ClientRegistry) -> list[str]:
        selected = select_units(units, await registry.units(), missing_ok=True)
        chosen: list[Unit] = []
        for unit in selected:
            already_inactive = (
                unit.desired_state is DesiredState.INACTIVE
                and unit.current_state == DesiredState.INACTIVE
            )
            if already_inactive and not is_global(unit):
                log.debug("unit %s is already inactive, skipping it", unit.name)
            else:
                chosen.append(unit)
        return await _set_and_wait(
            registry, chosen, DesiredState.INACTIVE, "unload", attempts, "unloaded"
        )

    fail_with(run_with_registry(get_settings(), action))


async def _set_and_wait(
    registry: ClientRegistry,
    units: list[Unit],
    desired: DesiredState,
    operation: str,
    attempts: int,
    done_word: str,
) -> list[str]:
    """Set the desired state of ``units`` and wait for the non-global ones."""
    targets: list[Target] = []
    for unit in units:
        await registry.set_desired_state(unit.name, desired)
        if is_global(unit):
            click.echo(f"Triggered global unit {unit.name} {operation}")
        elif attempts == -1:
            click.echo(f"Triggered unit {unit.name} {operation}")
        else:
            targets.append(StateTarget(name=unit.name, state=desired.value))
    if not targets:
        return []
    errors = await wait_for(registry, targets, attempts)
    if not errors:
        names = " ".join(target.name for target in targets)
        warn(f"Successfully {done_word} units [{names}].")
    return errors
