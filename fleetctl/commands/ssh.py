"""ssh: open a shell or run a command on a machine of the cluster over SSH."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace

import click

from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.commands.common import is_global, local_machine_id
from fleetctl.options import FleetCommand, exit_with, get_settings
from fleetctl.tunnel import DEFAULT_SSH_PORT, SSHOptions, local_shell, ssh_argv
from fleetd.errors import UnitNameError
from fleetd.model import DesiredState, Machine, Unit
from fleetd.unit import mangle_unit_name

log = logging.getLogger(__name__)


# What the SSH argument is looked up as: "" tries both.
LOOKUP_MACHINE = "machine"
LOOKUP_UNIT = "unit"


def find_machine(prefix: str, machines: Sequence[Machine]) -> Machine | None:
    """Return the machine whose ID starts with ``prefix``, or None if none does.

    Raises ``click.ClickException`` when several machines match.
    """
    matches = [machine for machine in machines if machine.id.startswith(prefix)]
    if len(matches) > 1:
        ids = ", ".join(machine.id for machine in matches)
        raise click.ClickException(
            f"found more than one machine whose ID starts with {prefix!r} ({ids}); "
            "give more of the ID"
        )
    return matches[0] if matches else None


def find_unit_machine(
    arg: str, units: Sequence[Unit], machines: Sequence[Machine]
) -> Machine | None:
    """Return the machine that runs the unit ``arg`` names, or None if no unit.

    Raises ``click.ClickException`` for a global unit, a unit that is not
    running, or one whose machine has left the cluster.
    """
    try:
        name = mangle_unit_name(arg)
    except UnitNameError:
        return None
    unit = next((unit for unit in units if unit.name == name), None)
    if unit is None:
        return None
    if is_global(unit):
        raise click.ClickException(
            f"unit {name} is global, so it runs on every machine; give a machine "
            "ID with --machine instead"
        )
    if not unit.machine_id or unit.current_state == DesiredState.INACTIVE:
        raise click.ClickException(
            f"unit {name} does not appear to be running; start it with "
            f"`fleetctl start {name}`"
        )
    machine = next((m for m in machines if m.id == unit.machine_id), None)
    if machine is None:
        raise click.ClickException(
            f"machine {unit.machine_id} of unit {name} has left the cluster; wait "
            "for the unit to be rescheduled and try again"
        )
    return machine


def resolve_target(
    arg: str, lookup: str, units: Sequence[Unit], machines: Sequence[Machine]
) -> Machine:
    """Return the machine ``arg`` names as a machine ID prefix or a unit.

    ``lookup`` is LOOKUP_MACHINE, LOOKUP_UNIT or "" for both; an argument
    that matches both a machine and a unit is ambiguous. Raises
    ``click.ClickException`` when nothing or more than one thing matches.
    """
    by_machine = find_machine(arg, machines) if lookup != LOOKUP_UNIT else None
    by_unit = None
    if lookup != LOOKUP_MACHINE:
        try:
            by_unit = find_unit_machine(arg, units, machines)
        except click.ClickException:
            # A unit that is not running does not compete with a machine.
            if by_machine is None:
                raise
    if by_machine is not None and by_unit is not None:
        raise click.ClickException(
            f"ambiguous argument {arg!r}: it is both a machine ID prefix and a "
            "unit; add --machine or --unit"
        )
    found = by_machine or by_unit
    if found is None:
        what = {LOOKUP_MACHINE: "machine", LOOKUP_UNIT: "unit"}.get(
            lookup, "machine or unit"
        )
        raise click.ClickException(
            f"no {what} matches {arg!r}; list them with `fleetctl list-machines` "
            "and `fleetctl list-units`"
        )
    return found


@click.command(
    cls=FleetCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "-A",
    "--A",
    "--forward-agent",
    "forward_agent",
    is_flag=True,
    help="Forward the local ssh-agent to the machine.",
)
@click.option(
    "--ssh-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_SSH_PORT,
    show_default=True,
    help="Port sshd listens on at the machine.",
)
@click.option(
    "--machine",
    "lookup",
    flag_value=LOOKUP_MACHINE,
    help="Look the argument up as a machine ID prefix only.",
)
@click.option(
    "--unit",
    "lookup",
    flag_value=LOOKUP_UNIT,
    help="Look the argument up as a unit only.",
)
@click.argument("target", metavar="{MACHINE|UNIT}")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND...]")
def ssh(
    target: str,
    command: tuple[str, ...],
    forward_agent: bool,
    ssh_port: int,
    lookup: str | None,
) -> None:
    """Open a shell on a machine, or run COMMAND there, over SSH.

    The first argument is a machine ID prefix or a unit, whose machine is
    used. With neither --machine nor --unit, an argument that is both is
    rejected as ambiguous. The exit status is COMMAND's. On this machine itself the
    shell or command runs here without SSH.
    """
    if not target:
        raise click.UsageError("give a machine ID prefix or a unit name")
    words = list(command)
    if words and words[0] == "--":
        words = words[1:]
    settings = get_settings()

    async def find(registry: ClientRegistry) -> Machine:
        machines = await registry.machines()
        units = await registry.units() if lookup != LOOKUP_MACHINE else []
        return resolve_target(target, lookup or "", units, machines)

    machine = run_with_registry(settings, find)
    if machine.id == local_machine_id():
        argv = local_shell(words)
    else:
        if not machine.public_ip:
            raise click.ClickException(
                f"machine {machine.id} has no public IP to connect to; set "
                "public_ip in its fleet.conf"
            )
        options = replace(
            SSHOptions.from_settings(settings), forward_agent=forward_agent
        )
        argv = ssh_argv(options, machine.public_ip, ssh_port, command=words)
    log.debug("running %s", argv)
    sys.stdout.flush()
    try:
        code = subprocess.run(argv, check=False).returncode
    except OSError as err:
        raise click.ClickException(
            f"cannot run {argv[0]}: {err}; install the OpenSSH client"
        ) from err
    exit_with(code)
