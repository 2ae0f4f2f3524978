"""restart: stop running units and start them again."""

from __future__ import annotations

import asyncio

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
from fleetctl.options import FleetCommand, get_settings
from fleetctl.selection import require_units, select_units
from fleetctl.waiting import StateTarget, wait_for
from fleetd.model import DesiredState, Unit

# How long a global unit's restart waits for every machine to stop it.
GLOBAL_STOP_SECONDS = 10.0


@click.command(cls=FleetCommand, epilog=EXIT_STATUS_EPILOG)
@blocking_options
@units_argument
def restart(units: tuple[str, ...], block_attempts: int, no_block: bool) -> None:
    """Restart units: stop them where they run, then start them again.

    A unit that is only loaded is started. Global units restart on every
    machine that runs them.
    """
    require_units(units)
    attempts = attempts_from(no_block, block_attempts)

    async def action(registry: ClientRegistry) -> list[str]:
        selected = select_units(units, await registry.units())
        errors: list[str] = []
        for unit in selected:
            errors.extend(await _restart(registry, unit, attempts))
        return errors

    fail_with(run_with_registry(get_settings(), action))


async def _restart(registry: ClientRegistry, unit: Unit, attempts: int) -> list[str]:
    name = unit.name
    if is_global(unit):
        await _restart_global(registry, unit)
        click.echo(f"Triggered global unit {name} restart")
        return []
    if unit.desired_state is DesiredState.INACTIVE:
        return [
            f"Unable to restart unit {name} in state inactive; start it with "
            f"fleetctl start {name}"
        ]
    if unit.current_state == DesiredState.LAUNCHED.value:
        await registry.set_desired_state(name, DesiredState.LOADED)
        if attempts != -1:
            errors = await wait_for(registry, [StateTarget(name, "loaded")], attempts)
            if errors:
                # A restart must not leave the unit stopped: whatever kept it
                # from stopping, it is meant to run, so it is launched again.
                await registry.set_desired_state(name, DesiredState.LAUNCHED)
                return [
                    *errors,
                    f"desired state of {name} set back to launched; the engine "
                    "starts it again once a machine fits",
                ]
    await registry.set_desired_state(name, DesiredState.LAUNCHED)
    if attempts == -1:
        click.echo(f"Triggered unit {name} restart")
        return []
    return await wait_for(
        registry, [StateTarget(name, "launched", systemd_active=True)], attempts
    )


async def _restart_global(registry: ClientRegistry, unit: Unit) -> None:
    """Stop a global unit on every machine, wait until none runs it, start it."""
    if unit.desired_state is DesiredState.LAUNCHED:
        await registry.set_desired_state(unit.name, DesiredState.LOADED)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GLOBAL_STOP_SECONDS
        while loop.time() < deadline:
            states = [s for s in await registry.unit_states() if s.name == unit.name]
            if not any(state.active_state == "active" for state in states):
                break
            await asyncio.sleep(0.2)
    await registry.set_desired_state(unit.name, DesiredState.LAUNCHED)
