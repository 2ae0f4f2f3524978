"""The `fleet-cluster` command: a fleet cluster of test hosts on one machine."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from fleetd.cluster import cluster, fleet, state
from fleetd.cluster.state import ClusterState
from fleetd.errors import FleetError

DEFAULT_NAME = "demo"

_name_option = click.option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    envvar="FLEET_CLUSTER_NAME",
    help="Name of the cluster; its hosts are named <name>-1, <name>-2, ...",
)


class _Group(click.Group):
    """Show fleet errors as one-line messages with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FleetError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=state.DEFAULT_ROOT,
    show_default=True,
    envvar="FLEET_CLUSTER_ROOT",
    help="Directory that contains one state directory per cluster.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each step to stderr.")
@click.version_option(package_name="fleet-py")
@click.pass_context
def main(ctx: click.Context, root: Path, verbose: bool) -> None:
    """Run a fleet cluster on this machine, for trying fleet out and for tests.

    Each host is a real systemd booted as PID 1 in its own Linux namespaces,
    with a private /run, /tmp and journal, its own machine ID and hostname,
    and a loopback address as its public IP. All hosts run fleetd against one
    etcd that the cluster starts on 127.0.0.1. Needs root, etcd and systemd.

    \b
    Typical use:
      fleet-cluster up --hosts 3
      eval "$(fleet-cluster env)"
      fleetctl list-machines
      fleet-cluster down
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="fleet-cluster: %(message)s",
    )
    ctx.obj = root.resolve()


@main.command()
@_name_option
@click.option(
    "--hosts",
    "host_count",
    type=click.IntRange(1, 200),
    default=3,
    show_default=True,
    help="Number of hosts to boot.",
)
@click.option(
    "--agent-ttl",
    default=fleet.DEFAULT_AGENT_TTL,
    show_default=True,
    help="How long a machine stays registered without a heartbeat (e.g. 10s).",
)
@click.option(
    "--metadata",
    default=fleet.DEFAULT_METADATA,
    show_default=True,
    help='Machine metadata as key=value pairs separated by commas; "{n}" '
    'becomes the host number and "{name}" the host name.',
)
@click.option(
    "--etcd-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Client port of the cluster's etcd on 127.0.0.1; 0 picks a free port.",
)
@click.option(
    "--etcd-key-prefix",
    default=fleet.DEFAULT_KEY_PREFIX,
    show_default=True,
    help="etcd key prefix under which fleetd keeps the cluster state.",
)
@click.option(
    "--ip-base",
    default=None,
    help="Public IP of host 1; the other hosts take the following addresses.  "
    "[default: 127.0.0.11, or 127.0.N.11 in the first /24 that no running "
    "cluster uses]",
)
@click.option(
    "--fleetd",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="fleetd executable to run on the hosts  [default: the one next to "
    "this Python]",
)
@click.pass_obj
def up(
    root: Path,
    name: str,
    host_count: int,
    agent_ttl: str,
    metadata: str,
    etcd_port: int,
    etcd_key_prefix: str,
    ip_base: str | None,
    fleetd: Path | None,
) -> None:
    """Start etcd and boot hosts that run fleetd.

    Returns once fleet.service is active on every host. A stopped cluster of
    the same name is cleaned up first; a running one is an error.
    """
    cluster.check_up_arguments(
        name,
        host_count,
        agent_ttl,
        metadata,
        etcd_key_prefix,
        ip_base or cluster.DEFAULT_IP_BASE,
    )
    _require_root("up")
    result = cluster.up(
        root,
        name,
        host_count,
        agent_ttl=agent_ttl,
        metadata=metadata,
        key_prefix=etcd_key_prefix,
        etcd_port=etcd_port,
        ip_base=ip_base,
        fleetd=fleetd,
    )
    cluster_state = result.state

    click.echo(f"Cluster {name} is up: etcd at {cluster_state.etcd.client_url}")
    _print_hosts(cluster_state)
    env_command = "fleet-cluster env" + _name_argument(name)
    click.echo("")
    click.echo(f'Point fleetctl at it:  eval "$({env_command})"')
    click.echo(
        f"Run inside a host:     fleet-cluster exec{_name_argument(name)} 1 -- sh"
    )
    click.echo(f"Stop it:               fleet-cluster down{_name_argument(name)}")


@main.command()
@_name_option
@click.pass_obj
def env(root: Path, name: str) -> None:
    """Print shell export lines that point fleetctl at the cluster.

    Use as: eval "$(fleet-cluster env)"
    """
    cluster_state = state.load(state.cluster_dir(root, name))
    for key, value in _fleetctl_environment(cluster_state).items():
        click.echo(f"export {key}={shlex.quote(value)}")


@main.command(
    "exec",
    context_settings={"ignore_unknown_options": True},
)
@_name_option
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_command(root: Path, name: str, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside HOST and exit with its status.

    HOST is a host name or its number (2 for <name>-2). Put -- before
    COMMAND when it has options. fleetctl inside the host is set up to talk
    to the cluster's etcd.
    """
    cluster_state = state.load(state.cluster_dir(root, name))
    target = cluster_state.find_host(host).to_host()
    _require_root("exec")
    if not target.alive():
        raise click.ClickException(
            f"host {target.name} is not running: boot it again with "
            f"`fleet-cluster start-host{_name_argument(name)} {target.name}`"
        )

    environment = _fleetctl_environment(cluster_state)
    if "TERM" in os.environ:
        environment["TERM"] = os.environ["TERM"]
    child = target.popen(list(command), env=environment)
    sys.exit(child.wait())


@main.command()
@_name_option
@click.pass_obj
def status(root: Path, name: str) -> None:
    """Show the cluster's etcd and, per host, its PID, IP, machine ID and state."""
    cluster_state = state.load(state.cluster_dir(root, name))
    etcd_state = "running" if cluster.etcd_of(cluster_state).running() else "dead"
    click.echo(f"etcd {cluster_state.etcd.client_url} ({etcd_state})")
    _print_hosts(cluster_state)


@main.command()
@_name_option
@click.argument("host")
@click.pass_obj
def kill(root: Path, name: str, host: str) -> None:
    """Kill HOST at once (SIGKILL to its PID 1), like a machine losing power.

    HOST is a host name or its number.
    """
    _require_root("kill")
    record = cluster.kill_host(root, name, host)
    click.echo(f"Killed host {record.name} (machine {record.machine_id})")


@main.command("start-host")
@_name_option
@click.argument("host")
@click.pass_obj
def start_host(root: Path, name: str, host: str) -> None:
    """Boot a killed HOST again, with a fresh machine ID, and start fleetd.

    HOST is a host name or its number.
    """
    _require_root("start-host")
    booted = cluster.start_host(root, name, host)
    click.echo(
        f"Started host {booted.name}, PID {booted.pid}, machine {booted.machine_id}"
    )


@main.command()
@_name_option
@click.pass_obj
def down(root: Path, name: str) -> None:
    """Kill all hosts, stop etcd and delete the cluster's state directory."""
    _require_root("down")
    cluster.down(root, name)
    click.echo(f"Cluster {name} is down")


@main.command("list")
@click.pass_obj
def list_command(root: Path) -> None:
    """List the clusters under the state root, running or not."""
    for name in state.list_clusters(root):
        try:
            cluster_state = state.load(root / name)
        except FleetError as err:
            click.echo(f"{name}\tinvalid state: {err}")
            continue
        running = "running" if cluster.is_running(cluster_state) else "stopped"
        count = len(cluster_state.hosts)
        hosts = "host" if count == 1 else "hosts"
        click.echo(f"{name}\t{running}\t{count} {hosts}")


def _print_hosts(cluster_state: ClusterState) -> None:
    rows = [("HOST", "PID", "IP", "MACHINE", "HOST STATE", "FLEET")]
    for record in cluster_state.hosts:
        host = record.to_host()
        if host.alive():
            host_state = "alive"
            fleet_state = fleet.service_state(host).get("ActiveState", "unknown")
        else:
            host_state = "dead"
            fleet_state = "-"
        rows.append(
            (
                record.name,
                str(record.pid),
                record.public_ip,
                record.machine_id,
                host_state,
                fleet_state,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


def _fleetctl_environment(cluster_state: ClusterState) -> dict[str, str]:
    return {
        "FLEETCTL_DRIVER": "etcd",
        "FLEETCTL_ENDPOINT": cluster_state.etcd.client_url,
        "FLEETCTL_ETCD_KEY_PREFIX": cluster_state.key_prefix,
    }


def _name_argument(name: str) -> str:
    """Return " --name NAME" for commands printed as hints, or "" for the default."""
    return "" if name == DEFAULT_NAME else f" --name {shlex.quote(name)}"


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise click.ClickException(
            f"fleet-cluster {command} needs root to create namespaces and "
            "cgroups: run it with sudo"
        )
