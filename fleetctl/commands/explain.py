"""explain: why a unit is on its machine, or why it is not placed."""

from __future__ import annotations

import click

from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.options import FleetCommand, get_settings
from fleetctl.output import machine_legend
from fleetctl.placement import UnitPlacement, unit_placement
from fleetctl.selection import unit_name_of

EPILOG = (
    "Exit status: 0 when the unit exists, placed or not; 1 when it is not found "
    "or etcd or the API fails. Not in the original fleetctl."
)


@click.command(cls=FleetCommand, epilog=EPILOG)
@click.option(
    "--full",
    "-l",
    "full",
    is_flag=True,
    help="Print full machine IDs instead of their first 8 characters.",
)
@click.argument("unit", metavar="UNIT")
def explain(unit: str, full: bool) -> None:
    """Show why UNIT is on its machine, or why no machine can run it.

    The first line gives the placement, or the reason the engine recorded
    for not placing the unit. Then each live machine gets one line: whether
    it can run the unit, or the first [X-Fleet] check it fails (MachineID,
    MachineMetadata, MachineOf, Conflicts, Replaces), and its load (the
    number of units on it).
    """
    name = unit_name_of(unit)

    async def action(registry: ClientRegistry) -> UnitPlacement | None:
        return await unit_placement(registry, name)

    placement = run_with_registry(get_settings(), action)
    if placement is None:
        raise click.ClickException(
            f"unit {name} not found; check the name with fleetctl list-unit-files"
        )
    click.echo(summary_line(placement, full))
    for check in placement.machines:
        legend = machine_legend(check.machine_id, check.public_ip, full)
        click.echo(f"{legend}: {check.explanation}")


def summary_line(placement: UnitPlacement, full: bool) -> str:
    """Describe the unit's placement, or why it has none, in one line."""
    name = placement.name
    desired = placement.desired_state
    if placement.is_global:
        return (
            f"Unit {name} (desired state {desired}) is global: it runs on every "
            "machine that fits"
        )
    if placement.machine_id:
        legend = machine_legend(placement.machine_id, _ip_of(placement), full)
        return f"Unit {name} (desired state {desired}) is placed on {legend}"
    if placement.reason:
        return (
            f"Unit {name} (desired state {desired}) is not placed: {placement.reason}"
        )
    if desired == "inactive":
        return f"Unit {name} (desired state inactive) is not placed, as desired"
    return (
        f"Unit {name} (desired state {desired}) is not placed, and the engine has "
        "recorded no reason yet"
    )


def _ip_of(placement: UnitPlacement) -> str:
    for check in placement.machines:
        if check.machine_id == placement.machine_id:
            return check.public_ip
    return ""
