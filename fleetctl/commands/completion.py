"""completion: print the shell completion script for fleetctl."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from fleetctl.options import FleetCommand

SHELLS = ("bash", "zsh", "fish")
# The variable click's completion scripts set when they call fleetctl back.
COMPLETE_VARIABLE = "_FLEETCTL_COMPLETE"


@click.command(cls=FleetCommand)
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Load it in bash with: eval "$(fleetctl completion bash)"
    """
    # Imported here to avoid an import cycle: fleetctl.cli lists this command.
    from fleetctl.cli import cli

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # click supports every shell in SHELLS.
    script = completion_class(cli, {}, "fleetctl", COMPLETE_VARIABLE).source()
    click.echo(script)
