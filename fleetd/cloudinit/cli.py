"""``fleet-cloudinit``: validate or apply a cloud-config on this host."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import click

from fleetd.cloudinit import discovery, document
from fleetd.cloudinit.apply import Target, apply_plan, check
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.metadata import resolve
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.shipped import find_units_dir
from fleetd.cloudinit.systemctl import SystemdControl
from fleetd.errors import FleetError

log = logging.getLogger("fleetd.cloudinit")


def _default_fleetd() -> str | None:
    candidate = Path(sys.executable).parent / "fleetd"
    return str(candidate) if candidate.is_file() else None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--from-file",
    "source",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="Read the cloud-config from this file ('-' for standard input).",
)
@click.option(
    "--validate",
    is_flag=True,
    help="Only check the file: print every problem with its line number; exit "
    "1 if any is an error. Changes nothing.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Apply under this directory instead of /; systemd is not called then.",
)
@click.option(
    "--metadata-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File of COREOS_PRIVATE_IPV4=... and COREOS_PUBLIC_IPV4=... lines for "
    "$private_ipv4 and $public_ipv4. Without it, the environment variables of "
    "those names, then this host's interface addresses, are used.",
)
@click.option(
    "--ssh-user",
    default="core",
    show_default=True,
    help="User that receives the top-level ssh_authorized_keys.",
)
@click.option(
    "--fleetd",
    default=_default_fleetd,
    help="fleetd executable for fleet.service [default: the fleetd next to "
    "this Python, if any].",
)
@click.option(
    "--units-source",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=find_units_dir,
    help="Directory of the shipped etcd.service, etcd2.service, fleet.service "
    "and fleet.socket [default: the project's units/].",
)
@click.option(
    "--no-systemd",
    is_flag=True,
    help="Skip daemon-reload, enables and unit commands.",
)
@click.option(
    "--bus-address",
    help="D-Bus address of systemd, e.g. unix:path=/run/systemd/private "
    "[default: the system bus].",
)
@click.option(
    "--new-discovery-url",
    "discovery_endpoint",
    metavar="ENDPOINT",
    help="Instead of a cloud-config, create a discovery token on the etcd at "
    "ENDPOINT (started with --enable-v2) and print its URL.",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Cluster size for --new-discovery-url.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each change made.")
def main(
    source: Path | None,
    validate: bool,
    root: Path,
    metadata_file: Path | None,
    ssh_user: str,
    fleetd: str | None,
    units_source: Path | None,
    no_systemd: bool,
    bus_address: str | None,
    discovery_endpoint: str | None,
    size: int,
    verbose: bool,
) -> None:
    """Validate a cloud-config, or apply it to turn this host into a member.

    Applying checks the whole file first and changes nothing if any check
    fails. Exit status: 0 when done (warnings are printed), 1 for errors in
    the file or a failed step, 2 for wrong usage.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(message)s",
    )
    if discovery_endpoint is not None:
        try:
            click.echo(discovery.new_discovery_url(discovery_endpoint, size))
        except FleetError as err:
            raise click.ClickException(str(err)) from err
        return
    if source is None:
        raise click.UsageError("name the cloud-config with --from-file PATH")

    name = "<stdin>" if str(source) == "-" else str(source)
    text = _read_source(source)
    metadata = resolve(metadata_file, os.environ)
    context = Context(ssh_user=ssh_user, fleetd=fleetd)
    plan, report = document.read(text, metadata, context, stand_in=validate)

    target = Target(root=root, units_source=units_source)
    if not validate and not report.errors:
        check(plan, target, report)
    for problem in report.sorted():
        click.echo(problem.format(name), err=True)
    if report.errors:
        raise click.ClickException(
            f"{len(report.errors)} error(s) in {name}; "
            + ("nothing was changed" if not validate else "fix them and run again")
        )
    if validate:
        click.echo(f"{name}: valid, {len(report.warnings)} warning(s)")
        return

    systemd = not no_systemd and target.is_live
    try:
        asyncio.run(_apply(plan, target, systemd, bus_address))
    except subprocess.CalledProcessError as err:
        output = (err.stderr or "").strip()
        raise click.ClickException(
            f"applying {name} failed: {' '.join(err.cmd)} exited with status "
            f"{err.returncode}: {output}"
        ) from err
    except (FleetError, OSError) as err:
        raise click.ClickException(f"applying {name} failed: {err}") from err
    click.echo(f"{name}: applied, {len(target.changes)} change(s)")


def _read_source(source: Path) -> str:
    try:
        if str(source) == "-":
            return sys.stdin.read()
        return source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise click.ClickException(f"failed to read {source}: {err}") from err


async def _apply(
    plan: Plan, target: Target, systemd: bool, bus_address: str | None
) -> None:
    if not systemd or not plan.touches_systemd:
        await apply_plan(plan, target, None)
        return
    control = SystemdControl(bus_address=bus_address)
    await control.connect()
    try:
        await apply_plan(plan, target, control)
    finally:
        await control.close()
