"""destroy: remove units from the cluster."""

from __future__ import annotations

import click

from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.commands.common import (
    EXIT_STATUS_EPILOG,
    attempts_from,
    blocking_options,
    fail_with,
    units_argument,
)
from fleetctl.options import FleetCommand, get_settings
from fleetctl.selection import require_units, select_units
from fleetctl.waiting import GoneTarget, Target, wait_for


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@blocking_options
@units_argument
def destroy(units: tuple[str, ...], block_attempts: int, no_block: bool) -> None:
    """Stop units, unload them and remove them from the registry.

    Waits until no machine reports the units any more, unless --no-block.
    Unit names may be shell-style patterns in quotes: 'web@*' destroys every
    unit whose name starts with web@.
    """
    require_units(units)
    # The original waited only when --no-block was given, the inverse of the
    # flag's meaning. Here the wait follows the flag.
    attempts = attempts_from(no_block, block_attempts)

    async def action(registry: ClientRegistry) -> list[str]:
        selected = select_units(units, await registry.units(), missing_ok=True)
        targets: list[Target] = []
        for unit in selected:
            # A unit destroyed by someone else since the read is gone already,
            # which is what was asked, so a False result is not an error.
            await registry.destroy_unit(unit.name)
            click.echo(f"Destroyed {unit.name}")
            targets.append(GoneTarget(unit.name))
        if attempts == -1:
            return []
        return await wait_for(registry, targets, attempts)

    fail_with(run_with_registry(get_settings(), action))
