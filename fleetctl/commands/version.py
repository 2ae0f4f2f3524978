"""version, help and the deprecated verify."""

from __future__ import annotations

import click

from fleetctl.options import FleetCommand, exit_with
from fleetd import __version__

SIGNING_DEPRECATED = (
    "WARNING: The signed/verified units feature is DEPRECATED and cannot be used."
)


def version_line() -> str:
    """Return the line that ``fleetctl version`` and ``--version`` print."""
    return f"fleetctl version {__version__}"


@click.command(cls=FleetCommand)
def version() -> None:
    """Print the version and exit."""
    click.echo(version_line())


@click.command(cls=FleetCommand, hidden=True)
@click.argument("units", nargs=-1, metavar="UNIT")
def verify(units: tuple[str, ...]) -> None:
    """Deprecated: unit signing was removed; exits with status 2."""
    click.echo(SIGNING_DEPRECATED, err=True)
    exit_with(2)


@click.command("help", cls=FleetCommand)
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """Print the help of fleetctl or of one command."""
    group = ctx.parent.command if ctx.parent else None
    if not isinstance(group, click.Group) or ctx.parent is None:
        click.echo(ctx.get_help())
        return
    if command is None:
        click.echo(group.get_help(ctx.parent))
        return
    target = group.get_command(ctx.parent, command)
    if target is None:
        raise click.UsageError(
            f"unknown command {command!r}; run `fleetctl help` to list the commands"
        )
    with click.Context(target, info_name=target.name, parent=ctx.parent) as sub_ctx:
        click.echo(target.get_help(sub_ctx))
