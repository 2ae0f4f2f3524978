"""The fleetctl command: global options, the command list and exit statuses."""

from __future__ import annotations

import logging
from typing import Any

import click

from fleetctl.commands.destroy import destroy
from fleetctl.commands.inspect import cat, journal
from fleetctl.commands.listing import list_machines, list_unit_files, list_units
from fleetctl.commands.stop import stop, unload
from fleetctl.commands.submit import load, start, submit
from fleetctl.commands.version import help_command, verify, version, version_line
from fleetctl.options import FleetGroup, group_params, settings_from_group_params

EPILOG = """\
Global options may also be given after the command name, and each can be set
by a FLEETCTL_<NAME> environment variable (FLEETCTL_ENDPOINT for --endpoint);
the command line wins. Any unambiguous prefix of a command name works.

Exit status: 0 on success; 1 when a command fails (an invalid unit file, a
unit not found, etcd unreachable, a wait that timed out); 2 for a usage error
(no units given, a wrong number of arguments, an unknown option) and for the
removed unit-signing feature (--sign, verify). journal exits with journalctl's
status.
"""


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_line())
        ctx.exit(0)


@click.group(
    cls=FleetGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.option(
    "-v",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, /, **values: Any) -> None:
    """fleetctl is a command-line interface to fleet, the cluster-wide init system.

    It submits systemd units to the cluster, starts and stops them, and
    lists units and machines.
    """
    settings = settings_from_group_params(values)
    ctx.obj = settings
    if settings.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


cli.params.extend(group_params())

for command in (
    submit,
    load,
    start,
    stop,
    unload,
    destroy,
    list_units,
    list_unit_files,
    list_machines,
    cat,
    journal,
    version,
    verify,
    help_command,
):
    cli.add_command(command)


def main() -> None:
    """Run fleetctl (the console script)."""
    cli.main(prog_name="fleetctl")
