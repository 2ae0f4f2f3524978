"""Read a whole cloud-config into a plan, reporting every problem found.

Top-level keys and the keys under ``coreos`` are dispatched to their modules.
The ``coreos`` keys are read in a fixed order (etcd, etcd2, fleet, units)
whatever their order in the file, because fleet's default etcd servers come
from the etcd settings.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetd.cloudinit import (
    etcd,
    etcd2,
    fleet,
    hostname,
    ssh_authorized_keys,
    units,
    users,
    write_files,
)
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.metadata import Metadata, check_values, substitute
from fleetd.cloudinit.nodes import Entry, is_null, load, read_mapping
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.report import Report

HEADER = "#cloud-config"

KeyReader = Callable[[Entry, Plan, Context, Report], None]

TOP_LEVEL: dict[str, KeyReader] = {
    "hostname": hostname.read,
    "users": users.read,
    "ssh_authorized_keys": ssh_authorized_keys.read,
    "write_files": write_files.read,
}
COREOS: dict[str, KeyReader] = {
    "etcd": etcd.read,
    "etcd2": etcd2.read,
    "fleet": fleet.read,
    "units": units.read,
}
# Keys CoreOS had for services this processor does not manage.
COREOS_UNSUPPORTED = frozenset({"update", "locksmith", "flannel", "oem"})
TOP_LEVEL_UNSUPPORTED = frozenset({"manage_etc_hosts"})


def read(
    text: str, metadata: Metadata, context: Context, *, stand_in: bool = False
) -> tuple[Plan, Report]:
    """Check ``text`` and return its plan with every problem found.

    The plan is only safe to apply when the report contains no error.
    ``stand_in`` lets variables without a value pass, for --validate.
    """
    report = Report()
    plan = Plan()
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if text.split("\n", 1)[0].rstrip() != HEADER:
        report.error(
            1,
            f"the first line must be {HEADER!r}: without it CoreOS did not read "
            "the file as a cloud-config",
        )

    check_values(metadata, report)
    text = substitute(text, metadata, report, stand_in=stand_in)
    root = load(text, report)
    if root is None or is_null(root):
        return plan, report

    entries = read_mapping(root, "", report)
    for key, entry in entries.items():
        if key in TOP_LEVEL:
            continue
        if key == "coreos":
            continue
        if key in TOP_LEVEL_UNSUPPORTED:
            report.warning(entry.key_node, f"{entry.path} is not supported; ignored")
        else:
            report.warning(entry.key_node, f"unknown key {entry.path} ignored")

    for key, reader in TOP_LEVEL.items():
        if key in entries:
            reader(entries[key], plan, context, report)
    if "coreos" in entries:
        _read_coreos(entries["coreos"], plan, context, report)
    fleet.finish(plan, context)
    _check_conflicts(plan, report)
    return plan, report


def _read_coreos(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    fields = read_mapping(entry.value, entry.path, report)
    for key, field in fields.items():
        if key in COREOS_UNSUPPORTED:
            report.warning(
                field.key_node,
                f"{field.path} is not supported by fleet-cloudinit; ignored",
            )
        elif key not in COREOS:
            report.warning(field.key_node, f"unknown key {field.path} ignored")
    for key, reader in COREOS.items():
        if key in fields:
            reader(fields[key], plan, context, report)


def _check_conflicts(plan: Plan, report: Report) -> None:
    """Report two steps that write the same path, except appends."""
    first_line: dict[str, int] = {}
    targets = [(str(w.path), w.line, w.append) for w in plan.files]
    targets += [(str(link.path), link.line, False) for link in plan.links]
    for path, line, append in targets:
        if path in first_line and not append:
            report.error(
                line,
                f"{path} is also written by line {first_line[path]}: keep one",
            )
        first_line.setdefault(path, line)
