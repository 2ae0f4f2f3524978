"""status: systemctl status of units on the machines that run them, without SSH.

A unit on this machine gets systemctl run here. With the etcd driver, a unit
on another machine gets it from that machine's fleetd over the signed peer
channel. With the API driver, the local fleetd fetches it. A global unit gets
one section per live machine that publishes a state for it, each headed by
a line naming the machine. A machine of a global unit that cannot be reached
gets an error line in place of its section, and the other sections still
print.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field

import click

from fleetctl.api import ApiRegistry
from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.commands.common import is_global, local_machine_id, machine_heading
from fleetctl.options import FleetCommand, exit_with, get_settings
from fleetctl.selection import require_units, unit_name_of
from fleetd.model import DesiredState, Machine, Unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Section:
    """systemctl status output of one unit on one machine."""

    exit_code: int
    output: bytes
    # The line printed before the output; empty except for global units.
    heading: str = ""
    # Why systemctl status could not run there; the section then has no output.
    error: str = ""


@dataclass
class UnitReport:
    """The sections printed for one argument, or the problem that ends the command."""

    sections: list[Section] = field(default_factory=list)
    problem: str = ""


@click.command(cls=FleetCommand)
@click.option(
    "--ssh-port",
    type=int,
    default=22,
    hidden=True,
    help="Accepted for compatibility; SSH is not used.",
)
@click.argument("units", nargs=-1, metavar="UNIT")
def status(units: tuple[str, ...], ssh_port: int) -> None:
    """Print systemctl status of each unit, from the machine it runs on.

    Units are separated by a blank line. A global unit gets one section per
    machine that runs it, or an error line for a machine that cannot be
    reached. The exit status is 1 for a unit that does not exist or is not
    loaded, or for any machine that cannot be reached. Otherwise it is the
    first non-zero status of systemctl (3 for an inactive unit), else 0.
    """
    require_units(units)
    names = [unit_name_of(arg) for arg in units]
    settings = get_settings()
    over_api = settings.resolved_driver() == "API"
    local_id = local_machine_id()

    async def collect(registry: ClientRegistry) -> list[UnitReport]:
        collector = _Collector(registry, local_id, over_api)
        reports: list[UnitReport] = []
        for name in names:
            report = await collector.report(name)
            reports.append(report)
            if report.problem:
                break
        return reports

    code = 0
    failed = False
    printed = False
    for report in run_with_registry(settings, collect):
        if report.problem:
            click.echo(report.problem, err=True)
            exit_with(1)
        for section in report.sections:
            sys.stdout.flush()
            if section.error:
                click.echo(f"Error: {section.error}", err=True)
                failed = True
                continue
            if printed:
                click.echo()
            printed = True
            if section.heading:
                click.echo(section.heading)
            sys.stdout.flush()
            sys.stdout.buffer.write(section.output)
            if code == 0:
                code = section.exit_code
    exit_with(1 if failed else code)


class _Collector:
    """Runs systemctl status of units, here or through fleetd, and collects it."""

    def __init__(self, registry: ClientRegistry, local_id: str, over_api: bool):
        self.registry = registry
        self.local_id = local_id
        self.over_api = over_api
        self._units: dict[str, Unit] | None = None
        self._machines: dict[str, Machine] | None = None
        self._secret: bytes | None = None

    async def report(self, name: str) -> UnitReport:
        if self._units is None:
            self._units = {unit.name: unit for unit in await self.registry.units()}
        unit = self._units.get(name)
        if unit is None:
            return UnitReport(problem=f"Unit {name} does not exist.")
        not_loaded = UnitReport(problem=f"Unit {name} does not appear to be loaded.")
        if is_global(unit):
            machines = await self._global_machines(name)
            if not machines:
                return not_loaded
            if self.over_api:
                return UnitReport(await self._global_over_api(name, machines))
            sections = []
            for machine in machines:
                section = await self._section(name, machine)
                sections.append(_with_heading(section, machine))
            return UnitReport(sections)
        if not unit.machine_id or unit.current_state == DesiredState.INACTIVE:
            return not_loaded
        placed = (await self._live_machines()).get(unit.machine_id)
        if placed is None:
            raise click.ClickException(
                f"machine {unit.machine_id} of unit {name} has left the cluster; "
                "wait for the unit to be rescheduled and try again"
            )
        section = await self._section(name, placed)
        if section.error:
            raise click.ClickException(section.error)
        return UnitReport([section])

    async def _live_machines(self) -> dict[str, Machine]:
        if self._machines is None:
            machines = await self.registry.machines()
            self._machines = {machine.id: machine for machine in machines}
        return self._machines

    async def _global_machines(self, name: str) -> list[Machine]:
        live = await self._live_machines()
        ids = {
            state.machine_id
            for state in await self.registry.unit_states()
            if state.name == name and state.machine_id in live
        }
        return [live[machine_id] for machine_id in sorted(ids)]

    async def _global_over_api(
        self, name: str, machines: list[Machine]
    ) -> list[Section]:
        assert isinstance(self.registry, ApiRegistry)
        by_id = {machine.id: machine for machine in machines}
        sections = []
        for reply in self.registry.unit_status(name):
            machine = by_id.get(reply.machine_id) or Machine(reply.machine_id)
            section = Section(reply.exit_code, reply.output.encode(), error=reply.error)
            sections.append(_with_heading(section, machine))
        return sections

    async def _section(self, name: str, machine: Machine) -> Section:
        """Run systemctl status on ``machine``; return a failure in ``error``."""
        # Imported here so that commands other than status and journal skip it.
        from fleetd.peer import fetch_status, run_systemctl_status

        try:
            if machine.id == self.local_id:
                return Section(*await run_systemctl_status(name))
            if isinstance(self.registry, ApiRegistry):
                reply = self.registry.unit_status(name, machine.id)[0]
                return Section(reply.exit_code, reply.output.encode())
            if self._secret is None:
                self._secret = await self.registry.cluster_secret()
            return Section(*await fetch_status(machine, name, secret=self._secret))
        except (OSError, TimeoutError) as err:
            where = (
                "this machine"
                if machine.id == self.local_id
                else (f"machine {machine.id} at {machine.public_ip}")
            )
            return Section(
                1,
                b"",
                error=(
                    f"cannot run systemctl status {name} on {where}: "
                    f"{err or type(err).__name__}; check that systemd and fleetd "
                    "run there and its peer port is reachable"
                ),
            )


def _with_heading(section: Section, machine: Machine) -> Section:
    return dataclasses.replace(section, heading=machine_heading(machine))
