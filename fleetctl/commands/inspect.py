"""cat and journal: show one unit's file or its journal."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from fleetctl.api import ApiRegistry
from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.commands.common import is_global
from fleetctl.options import FleetCommand, exit_with, get_settings
from fleetctl.selection import select_one_unit
from fleetd.errors import FleetError
from fleetd.model import DesiredState, Machine

log = logging.getLogger(__name__)

MACHINE_ID_PATH = Path("/etc/machine-id")


def _one_unit(units: tuple[str, ...]) -> str:
    if len(units) != 1:
        raise click.UsageError(
            f"One unit file must be provided; got {len(units)}, give exactly one unit"
        )
    return units[0]


@click.command(cls=FleetCommand)
@click.argument("units", nargs=-1, metavar="UNIT")
def cat(units: tuple[str, ...]) -> None:
    """Print a unit's file as stored in the registry (normalized, no comments)."""
    arg = _one_unit(units)

    async def action(registry: ClientRegistry) -> str:
        return select_one_unit(arg, await registry.units()).raw

    click.echo(run_with_registry(get_settings(), action), nl=False)


@dataclass(frozen=True)
class JournalSource:
    """The location of a unit's journal: this machine, or a peer on the network."""

    unit: str
    machine: Machine
    local: bool
    secret: bytes = b""


@click.command(cls=FleetCommand)
@click.option(
    "--lines",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Number of recent journal lines to print.",
)
@click.option(
    "-f",
    "--f",
    "--follow",
    "follow",
    is_flag=True,
    help="Keep printing new journal lines until interrupted.",
)
@click.option(
    "--output",
    default="short",
    show_default=True,
    help="journalctl output mode (short, cat, json, verbose, ...).",
)
@click.option(
    "--sudo",
    is_flag=True,
    help="Run journalctl through sudo when the unit runs on this machine.",
)
@click.option(
    "--ssh-port",
    type=int,
    default=22,
    hidden=True,
    help="Accepted for compatibility; SSH is not used.",
)
@click.argument("units", nargs=-1, metavar="UNIT")
def journal(
    units: tuple[str, ...],
    lines: int,
    follow: bool,
    output: str,
    sudo: bool,
    ssh_port: int,
) -> None:
    """Print a unit's journal from the machine it runs on.

    On the unit's own machine this runs journalctl. Elsewhere it requests the
    journal from fleetd on that machine, or with the API driver from the
    local fleetd, which fetches it. The exit status is journalctl's, or 0
    for a journal read from another machine.
    """
    arg = _one_unit(units)
    local_id = _local_machine_id()
    settings = get_settings()
    over_api = settings.resolved_driver() == "API"

    async def find_source(registry: ClientRegistry) -> JournalSource:
        unit = select_one_unit(arg, await registry.units())
        if is_global(unit):
            raise click.ClickException(
                f"Unable to retrieve journal of global unit {unit.name}: it runs on "
                "every machine; run journalctl on the machine you want"
            )
        if not unit.machine_id or unit.current_state == DesiredState.INACTIVE:
            raise click.ClickException(
                f"Unit {unit.name} does not appear to be running; start it with "
                f"`fleetctl start {unit.name}`"
            )
        machines = {machine.id: machine for machine in await registry.machines()}
        machine = machines.get(unit.machine_id)
        if machine is None:
            raise click.ClickException(
                f"machine {unit.machine_id} of unit {unit.name} has left the "
                "cluster; wait for the unit to be rescheduled and try again"
            )
        if machine.id == local_id:
            return JournalSource(unit.name, machine, local=True)
        if over_api:
            # fleetd fetches the journal from the unit's machine itself.
            return JournalSource(unit.name, machine, local=False)
        return JournalSource(
            unit.name, machine, local=False, secret=await registry.cluster_secret()
        )

    async def stream_over_api(registry: ClientRegistry) -> int:
        if not isinstance(registry, ApiRegistry):
            raise click.ClickException("the API driver is not in use")
        sys.stdout.flush()
        return registry.stream_journal(
            source.unit, lines, follow, output, sys.stdout.buffer
        )

    source = run_with_registry(settings, find_source)
    try:
        if source.local:
            code = _local_journal(source.unit, lines, follow, output, sudo)
        elif over_api:
            code = run_with_registry(settings, stream_over_api)
        else:
            code = asyncio.run(_remote_journal(source, lines, follow, output))
    except KeyboardInterrupt:
        code = 130
    exit_with(code)


def _local_machine_id() -> str:
    try:
        return MACHINE_ID_PATH.read_text().strip()
    except OSError as err:
        log.debug("cannot read %s: %s", MACHINE_ID_PATH, err)
        return ""


def _local_journal(unit: str, lines: int, follow: bool, output: str, sudo: bool) -> int:
    argv = ["journalctl", "--unit", unit, "--no-pager", "-n", str(lines)]
    argv += ["--output", output]
    if follow:
        argv.append("-f")
    if sudo:
        argv.insert(0, "sudo")
    if shutil.which(argv[0]) is None:
        raise click.ClickException(
            f"{argv[0]} is not installed on this machine; install it to read "
            "the journal of local units"
        )
    log.debug("running %s", argv)
    sys.stdout.flush()
    return subprocess.run(argv, check=False).returncode


async def _remote_journal(
    source: JournalSource, lines: int, follow: bool, output: str
) -> int:
    # Imported here so that commands other than journal do not load it.
    from fleetd.peer import stream_journal

    try:
        return await stream_journal(
            source.machine,
            source.unit,
            lines=lines,
            follow=follow,
            output=output,
            secret=source.secret,
            out=sys.stdout.buffer,
        )
    except (OSError, FleetError) as err:
        raise click.ClickException(
            f"cannot read the journal of {source.unit} from machine "
            f"{source.machine.id} at {source.machine.public_ip}: {err}; check that "
            "fleetd runs there and its peer port is reachable"
        ) from err
