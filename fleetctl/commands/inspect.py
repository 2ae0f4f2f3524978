"""cat and journal: show one unit's file or its journal."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass

import click

from fleetctl.api import ApiRegistry
from fleetctl.client import ClientRegistry, Settings, run_with_registry
from fleetctl.commands.common import is_global, local_machine_id, machine_heading
from fleetctl.options import FleetCommand, exit_with, get_settings
from fleetctl.selection import select_one_unit
from fleetd.errors import FleetError
from fleetd.model import DesiredState, Machine, Unit

log = logging.getLogger(__name__)


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
    # The line printed before this machine's journal; empty except for global units.
    heading: str = ""


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
    "--machine",
    "machine_prefix",
    default="",
    metavar="ID",
    help=(
        "Read the journal only on the machine whose ID starts with ID. "
        "Required with -f for a global unit."
    ),
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
    machine_prefix: str,
    sudo: bool,
    ssh_port: int,
) -> None:
    """Print a unit's journal from the machine it runs on.

    On the unit's own machine this runs journalctl. Elsewhere it requests the
    journal from fleetd on that machine, or with the API driver from the
    local fleetd, which fetches it. A global unit gets one section per
    machine that publishes a state for it, each headed by a line naming the
    machine, or an error line for a machine whose journal cannot be read.
    The exit status is 1 if any journal cannot be read, else the first
    non-zero status of journalctl, or 0 for a journal read from another
    machine.
    """
    arg = _one_unit(units)
    local_id = local_machine_id()
    settings = get_settings()
    over_api = settings.resolved_driver() == "API"

    async def find_sources(registry: ClientRegistry) -> list[JournalSource]:
        unit = select_one_unit(arg, await registry.units())
        live = {machine.id: machine for machine in await registry.machines()}
        if is_global(unit):
            machines = await _global_machines(registry, unit, live)
            if machine_prefix:
                machines = [_pick_machine(unit.name, machine_prefix, machines)]
            elif follow:
                raise click.UsageError(
                    f"Unit {unit.name} is global, so -f needs one machine: add "
                    "--machine ID with a machine ID (or prefix) from "
                    "`fleetctl list-units`"
                )
        else:
            if not unit.machine_id and unit.desired_state != DesiredState.INACTIVE:
                raise click.ClickException(await _not_placed_message(registry, unit))
            machines = [_placed_machine(unit, live, machine_prefix)]

        secret = b""
        if not over_api and any(machine.id != local_id for machine in machines):
            secret = await registry.cluster_secret()
        return [
            JournalSource(
                unit.name,
                machine,
                local=machine.id == local_id,
                secret=secret,
                heading=machine_heading(machine) if is_global(unit) else "",
            )
            for machine in machines
        ]

    sources = run_with_registry(settings, find_sources)
    code = 0
    failed = False
    printed = False
    try:
        for source in sources:
            if printed:
                click.echo()
            if source.heading:
                click.echo(source.heading)
            printed = True
            try:
                section_code = _print_journal(
                    settings, source, lines, follow, output, sudo, over_api
                )
            except click.ClickException as err:
                if len(sources) == 1:
                    raise
                # One unreachable machine of a global unit: report it and
                # go on with the others.
                sys.stdout.flush()
                click.echo(f"Error: {err.format_message()}", err=True)
                failed = True
                continue
            if code == 0:
                code = section_code
    except KeyboardInterrupt:
        code = 130
    exit_with(1 if failed and code != 130 else code)


def _print_journal(
    settings: Settings,
    source: JournalSource,
    lines: int,
    follow: bool,
    output: str,
    sudo: bool,
    over_api: bool,
) -> int:
    """Print one machine's journal of the unit; return journalctl's exit status."""
    if source.local:
        return _local_journal(source.unit, lines, follow, output, sudo)
    if not over_api:
        return asyncio.run(_remote_journal(source, lines, follow, output))

    async def stream_over_api(registry: ClientRegistry) -> int:
        if not isinstance(registry, ApiRegistry):
            raise click.ClickException("the API driver is not in use")
        sys.stdout.flush()
        # fleetd fetches the journal from the unit's machine itself.
        return registry.stream_journal(
            source.unit,
            lines,
            follow,
            output,
            sys.stdout.buffer,
            machine_id=source.machine.id,
        )

    return run_with_registry(settings, stream_over_api)


def _placed_machine(
    unit: Unit, live: dict[str, Machine], machine_prefix: str
) -> Machine:
    """Return the live machine a non-global unit runs on, checked against --machine."""
    if not unit.machine_id or unit.current_state == DesiredState.INACTIVE:
        raise click.ClickException(
            f"Unit {unit.name} does not appear to be running; start it with "
            f"`fleetctl start {unit.name}`"
        )
    if not unit.machine_id.startswith(machine_prefix):
        raise click.ClickException(
            f"Unit {unit.name} runs on machine {unit.machine_id}, whose ID does "
            f"not start with {machine_prefix!r}; drop --machine or give that ID"
        )
    machine = live.get(unit.machine_id)
    if machine is None:
        raise click.ClickException(
            f"machine {unit.machine_id} of unit {unit.name} has left the "
            "cluster; wait for the unit to be rescheduled and try again"
        )
    return machine


async def _not_placed_message(registry: ClientRegistry, unit: Unit) -> str:
    """Build the error for a unit that should run but is not placed."""
    # Imported here so that cat and a journal of a placed unit skip it.
    from fleetctl.placement import engine_reason

    message = (
        f"Unit {unit.name} has desired state {unit.desired_state.value} but is "
        "not placed on any machine"
    )
    reason = await engine_reason(registry, unit)
    if reason:
        message += f": {reason}"
    return f"{message}; `fleetctl explain {unit.name}` shows each machine's check"


async def _global_machines(
    registry: ClientRegistry, unit: Unit, live: dict[str, Machine]
) -> list[Machine]:
    """Return the live machines that publish a state for the global ``unit``."""
    name = unit.name
    ids = {
        state.machine_id
        for state in await registry.unit_states()
        if state.name == name and state.machine_id in live
    }
    if ids:
        return [live[machine_id] for machine_id in sorted(ids)]
    if unit.desired_state != DesiredState.INACTIVE:
        raise click.ClickException(
            f"Global unit {name} has desired state {unit.desired_state.value} "
            "but no live machine reports a state for it; `fleetctl explain "
            f"{name}` shows each machine's check"
        )
    raise click.ClickException(
        f"Unit {name} does not appear to be running; start it with "
        f"`fleetctl start {name}`"
    )


def _pick_machine(name: str, prefix: str, machines: list[Machine]) -> Machine:
    """Return the one machine of ``machines`` whose ID starts with ``prefix``."""
    matches = [machine for machine in machines if machine.id.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    ids = ", ".join(machine.id for machine in machines)
    if not matches:
        raise click.ClickException(
            f"Unit {name} is not running on a machine whose ID starts with "
            f"{prefix!r}; give --machine one of {ids}"
        )
    raise click.ClickException(
        f"more than one machine running {name} has an ID that starts with "
        f"{prefix!r}; give --machine a longer prefix of one of {ids}"
    )


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
