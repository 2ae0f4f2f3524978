"""list-units, list-unit-files and list-machines, in the original's columns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import click

from fleetctl.client import ClientRegistry, run_with_registry
from fleetctl.options import FleetCommand, get_settings, warn
from fleetctl.output import (
    Column,
    format_metadata,
    machine_legend,
    parse_fields,
    render_json,
    render_table,
    short_hash,
    short_machine_id,
)
from fleetctl.states import unit_states
from fleetd.model import Machine, Unit, UnitState

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


def _table_options(
    default_fields: str, valid: str, *, short_full: bool
) -> Callable[[F], F]:
    """Add --fields, --full (and -l), --no-legend and --output."""

    def decorate(function: F) -> F:
        full_flags = ["-l", "--l", "--full"] if short_full else ["--full"]
        json_fields = "every field"
        if "tmachine" in valid:
            json_fields += " except the deprecated tmachine"
        function = click.option(
            "--fields",
            default=None,
            help=(
                f"Columns to print, comma-separated; valid: {valid}. "
                f"Default: {default_fields} for a table, {json_fields} for JSON."
            ),
        )(function)
        function = click.option(
            "--no-legend", is_flag=True, help="Do not print the header line."
        )(function)
        function = click.option(
            *full_flags,
            "full",
            is_flag=True,
            help="Print full machine IDs and hashes instead of their prefixes.",
        )(function)
        function = click.option(
            "--output",
            type=click.Choice(["table", "json"]),
            default="table",
            show_default=True,
            help=(
                "Print a tab-aligned table, or one JSON array with an object per "
                "row keyed by field name. JSON values are the --full cells, null "
                "for '-', a boolean for global and an object for metadata. "
                "--no-legend does not apply to JSON."
            ),
        )(function)
        return function

    return decorate


def _choose_columns(
    fields: str | None, output: str, default_fields: str, columns: Sequence[Column[R]]
) -> list[Column[R]]:
    """Resolve --fields, whose default depends on --output."""
    if fields is None:
        if output == "json":
            return [column for column in columns if column.name != "tmachine"]
        fields = default_fields
    return parse_fields(fields, columns)


def _render(
    rows: Sequence[R],
    columns: Sequence[Column[R]],
    output: str,
    *,
    full: bool,
    legend: bool,
) -> str:
    if output == "json":
        return render_json(rows, columns)
    return render_table(rows, columns, full=full, legend=legend)


# -- list-units ---------------------------------------------------------------


# Rows are named tuples because a table has one per unit, and tuples are
# quicker to build than dataclass instances.
class StateRow(NamedTuple):
    state: UnitState
    public_ip: str


UNIT_STATE_COLUMNS: tuple[Column[StateRow], ...] = (
    Column("unit", lambda row, full: row.state.name),
    Column(
        "machine",
        lambda row, full: machine_legend(row.state.machine_id, row.public_ip, full),
    ),
    Column("active", lambda row, full: row.state.active_state or "-"),
    Column("sub", lambda row, full: row.state.sub_state or "-"),
    Column("load", lambda row, full: row.state.load_state or "-"),
    Column("hash", lambda row, full: short_hash(row.state.hash, full)),
)
UNIT_STATE_FIELDS = "unit,machine,active,sub"


@click.command("list-units", cls=FleetCommand)
@_table_options(UNIT_STATE_FIELDS, "active,hash,load,machine,sub,unit", short_full=True)
def list_units(fields: str | None, no_legend: bool, full: bool, output: str) -> None:
    """List the units running on machines: one line per unit per machine."""
    columns = _choose_columns(fields, output, UNIT_STATE_FIELDS, UNIT_STATE_COLUMNS)

    async def action(registry: ClientRegistry) -> list[StateRow]:
        ips = _machine_ips(await registry.machines())
        states = await unit_states(registry)
        return [StateRow(state, ips.get(state.machine_id, "")) for state in states]

    rows = run_with_registry(get_settings(), action)
    click.echo(
        _render(rows, columns, output, full=full, legend=not no_legend), nl=False
    )


# -- list-unit-files ----------------------------------------------------------


class UnitRow(NamedTuple):
    unit: Unit
    is_global: bool
    public_ip: str


def _unit_target(row: UnitRow, full: bool) -> str:
    if row.is_global:
        return "global"
    return machine_legend(row.unit.machine_id, row.public_ip, full)


def _unit_description(row: UnitRow, full: bool) -> str:
    from fleetd.unit import UnitFile

    description = UnitFile.parse(row.unit.raw).description
    return description or "-"


UNIT_FILE_COLUMNS: tuple[Column[UnitRow], ...] = (
    Column("unit", lambda row, full: row.unit.name),
    Column("hash", lambda row, full: short_hash(row.unit.hash, full)),
    Column("dstate", lambda row, full: row.unit.desired_state.value or "-"),
    Column(
        "state",
        lambda row, full: "-" if row.is_global else (row.unit.current_state or "-"),
    ),
    Column("target", _unit_target),
    Column("tmachine", _unit_target),
    Column(
        "global",
        lambda row, full: "true" if row.is_global else "false",
        lambda row: row.is_global,
    ),
    Column("desc", _unit_description),
)
UNIT_FILE_FIELDS = "unit,hash,dstate,state,target"


@click.command("list-unit-files", cls=FleetCommand)
@_table_options(
    UNIT_FILE_FIELDS,
    "desc,dstate,global,hash,state,target,tmachine,unit",
    short_full=False,
)
def list_unit_files(
    fields: str | None, no_legend: bool, full: bool, output: str
) -> None:
    """List the units in the registry with their desired and current states."""
    columns = _choose_columns(fields, output, UNIT_FILE_FIELDS, UNIT_FILE_COLUMNS)
    if any(column.name == "tmachine" for column in columns):
        warn('WARNING: The "tmachine" field is deprecated. Use "target" instead')

    # Imported here because it loads the unit file parser and the [X-Fleet]
    # rules, which list-units does not need.
    from fleetctl.commands.common import is_global

    async def action(registry: ClientRegistry) -> list[UnitRow]:
        units = await registry.units()
        ips = _machine_ips(await registry.machines()) if _needs_ips(columns) else {}
        return [
            UnitRow(unit, is_global(unit), ips.get(unit.machine_id, ""))
            for unit in units
        ]

    rows = run_with_registry(get_settings(), action)
    click.echo(
        _render(rows, columns, output, full=full, legend=not no_legend), nl=False
    )


def _needs_ips(columns: Sequence[Column[UnitRow]]) -> bool:
    return any(column.name in {"target", "tmachine"} for column in columns)


# -- list-machines ------------------------------------------------------------


MACHINE_COLUMNS: tuple[Column[Machine], ...] = (
    Column("machine", lambda machine, full: short_machine_id(machine.id, full)),
    Column("ip", lambda machine, full: machine.public_ip or "-"),
    Column(
        "metadata",
        lambda machine, full: format_metadata(machine.metadata),
        lambda machine: dict(sorted(machine.metadata.items())),
    ),
)
MACHINE_FIELDS = "machine,ip,metadata"


@click.command("list-machines", cls=FleetCommand)
@_table_options(MACHINE_FIELDS, "ip,machine,metadata", short_full=True)
def list_machines(fields: str | None, no_legend: bool, full: bool, output: str) -> None:
    """List the live machines in the cluster."""
    columns = _choose_columns(fields, output, MACHINE_FIELDS, MACHINE_COLUMNS)

    async def action(registry: ClientRegistry) -> list[Machine]:
        return await registry.machines()

    machines = run_with_registry(get_settings(), action)
    click.echo(
        _render(machines, columns, output, full=full, legend=not no_legend), nl=False
    )


def _machine_ips(machines: Sequence[Machine]) -> Mapping[str, str]:
    return {machine.id: machine.public_ip for machine in machines}
