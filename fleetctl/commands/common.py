"""Options, checks and messages shared by several commands."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetctl.commands.version import SIGNING_DEPRECATED
from fleetctl.options import exit_with
from fleetd.errors import UnitFileError
from fleetd.model import Machine, Unit
from fleetd.rules import GLOBAL, requirements_of
from fleetd.unit import UnitFile

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

units_argument = click.argument("units", nargs=-1, metavar="UNIT...")

EXIT_STATUS_EPILOG = (
    "Exit status: 0 on success; 1 when a unit file or name is invalid, a unit "
    "is not found, etcd fails or a wait times out; 2 when no unit is given."
)


def blocking_options(function: F) -> F:
    """Add --block-attempts and --no-block to a command that waits for states."""
    function = click.option(
        "--no-block",
        is_flag=True,
        help="Do not wait for the units to reach the state.",
    )(function)
    function = click.option(
        "--block-attempts",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Wait at most this many 2-second attempts; 0 waits without limit.",
    )(function)
    return function


def attempts_from(no_block: bool, attempts: int) -> int:
    """Return -1 for --no-block, else the attempts (0 = no limit), as the original."""
    if no_block:
        return -1
    return attempts


def sign_option(function: F) -> F:
    """Add the deprecated --sign flag, which exits 2 like the original."""

    def reject(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            click.echo(SIGNING_DEPRECATED, err=True)
            ctx.exit(2)

    return click.option(
        "--sign",
        is_flag=True,
        hidden=True,
        expose_value=False,
        callback=reject,
        help="Deprecated; exits with status 2.",
    )(function)


def is_global(unit: Unit) -> bool:
    """Tell whether a registry unit is global ([X-Fleet] Global=true)."""
    if GLOBAL not in unit.raw:
        # The registry stores files serialized, one whole "Name=Value" line
        # per option, so without this text there is no Global option. This
        # skips parsing most files in list-unit-files.
        return False
    try:
        return requirements_of(unit.name, UnitFile.parse(unit.raw)).is_global
    except UnitFileError as err:
        # The registry only contains files that parsed when they were
        # submitted, so this happens only after a parser change.
        log.warning("unit %s in the registry does not parse: %s", unit.name, err)
        return False


def fail_with(errors: Sequence[str]) -> None:
    """Print each error as ``Error: <line>`` on stderr and exit 1, if there are any."""
    if not errors:
        return
    for error in errors:
        click.echo(f"Error: {error}", err=True)
    exit_with(1)


MACHINE_ID_PATH = Path("/etc/machine-id")


def local_machine_id() -> str:
    """Return this machine's ID, or "" when /etc/machine-id cannot be read."""
    try:
        return MACHINE_ID_PATH.read_text().strip()
    except OSError as err:
        log.debug("cannot read %s: %s", MACHINE_ID_PATH, err)
        return ""


def machine_heading(machine: Machine) -> str:
    """Return the line that heads one machine's section of global output."""
    where = f" ({machine.public_ip})" if machine.public_ip else ""
    return f"Machine {machine.id}{where}:"
