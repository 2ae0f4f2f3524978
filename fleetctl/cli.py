"""The fleetctl command: global options, the command list and exit statuses."""

from __future__ import annotations

import logging
from typing import Any

import click

from fleetctl.commands.version import version_line
from fleetctl.options import FleetGroup, group_params, settings_from_group_params

# Each command's module is imported only when the command runs (or help lists
# them all), so that --version and a command's start skip the others' imports.
COMMANDS = {
    "submit": "fleetctl.commands.submit:submit",
    "load": "fleetctl.commands.submit:load",
    "start": "fleetctl.commands.submit:start",
    "stop": "fleetctl.commands.stop:stop",
    "unload": "fleetctl.commands.stop:unload",
    "restart": "fleetctl.commands.restart:restart",
    "destroy": "fleetctl.commands.destroy:destroy",
    "list-units": "fleetctl.commands.listing:list_units",
    "list-unit-files": "fleetctl.commands.listing:list_unit_files",
    "list-machines": "fleetctl.commands.listing:list_machines",
    "cat": "fleetctl.commands.inspect:cat",
    "journal": "fleetctl.commands.inspect:journal",
    "status": "fleetctl.commands.status:status",
    "explain": "fleetctl.commands.explain:explain",
    "ssh": "fleetctl.commands.ssh:ssh",
    "fd-forward": "fleetctl.commands.fdforward:fd_forward",
    "completion": "fleetctl.commands.completion:completion",
    "version": "fleetctl.commands.version:version",
    "verify": "fleetctl.commands.version:verify",
    "help": "fleetctl.commands.version:help_command",
}
HIDDEN_COMMANDS = frozenset({"verify"})

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
    lazy_commands=COMMANDS,
    hidden_commands=HIDDEN_COMMANDS,
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


def main() -> None:
    """Run fleetctl (the console script)."""
    cli.main(prog_name="fleetctl")
