"""``coreos.units``: unit files, drop-ins, masks, enables and unit commands.

Files go to /etc/systemd/system, or to /run/systemd/system with ``runtime``.
systemd-networkd's ``.network``, ``.netdev`` and ``.link`` files go to the
matching systemd/network directory. The commands run after one daemon-reload,
in the order the units are listed.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import yaml

from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import (
    Entry,
    content_line,
    read_bool,
    read_list,
    read_mapping,
    read_str,
    warn_unknown,
)
from fleetd.cloudinit.plan import (
    COMMANDS,
    NETWORK_DIR,
    RUNTIME_DIR,
    RUNTIME_NETWORK_DIR,
    SYSTEM_DIR,
    Enable,
    FileWrite,
    Link,
    Plan,
    UnitCommand,
)
from fleetd.cloudinit.report import Report, line_of
from fleetd.errors import UnitFileError
from fleetd.unit import UnitFile

SYSTEMD_TYPES = frozenset(
    {
        "service",
        "socket",
        "device",
        "mount",
        "automount",
        "swap",
        "target",
        "path",
        "timer",
        "slice",
        "scope",
    }
)
NETWORKD_TYPES = frozenset({"network", "netdev", "link"})
# The units the project ships (units/); a cloud-config may configure or run
# them without giving their content.
SHIPPED = frozenset({"etcd.service", "etcd2.service", "fleet.service", "fleet.socket"})

_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")
_KNOWN = frozenset(
    {"name", "content", "command", "enable", "runtime", "mask", "drop_ins"}
)
_DROP_IN_KNOWN = frozenset({"name", "content"})


def unit_kind(name: str) -> str:
    """Return the type suffix of a unit name ("" without a dot)."""
    return name.rpartition(".")[2] if "." in name else ""


def check_unit_name(name: str, node: yaml.Node, path: str, report: Report) -> bool:
    """Report a name systemd would not load."""
    kind = unit_kind(name)
    if kind not in SYSTEMD_TYPES | NETWORKD_TYPES:
        types = ", ".join(sorted(SYSTEMD_TYPES | NETWORKD_TYPES))
        report.error(
            node,
            f"invalid {path} {name!r}: the name must end in a unit type: {types}",
        )
        return False
    if not _NAME.match(name) or len(name) > 255 or name.startswith("."):
        report.error(
            node,
            f"invalid {path} {name!r}: use letters, digits and ':_.@-' only, at "
            "most 255 characters",
        )
        return False
    return True


def check_unit_text(text: str, node: yaml.Node, path: str, report: Report) -> None:
    """Report a syntax error in unit file text at its line in the cloud-config."""
    try:
        UnitFile.parse(text)
    except UnitFileError as err:
        message = str(err)
        match = re.match(r"line (\d+): (.*)", message, re.DOTALL)
        if match is None:
            report.error(node, f"invalid unit file in {path}: {message}")
            return
        line = content_line(node, int(match.group(1)) - 1)
        report.error(line, f"invalid unit file in {path}: {match.group(2)}")


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Plan each unit of the list."""
    for index, item in enumerate(read_list(entry.value, entry.path, report)):
        _read_unit(item, f"{entry.path}[{index}]", plan, report)


def _read_unit(item: yaml.Node, path: str, plan: Plan, report: Report) -> None:
    fields = read_mapping(item, path, report)
    warn_unknown(fields, _KNOWN, report)
    name_entry = fields.get("name")
    if name_entry is None:
        report.error(item, f"{path}.name is missing: name the unit")
        return
    name = read_str(name_entry.value, name_entry.path, report, required=True)
    if name is None or not check_unit_name(
        name, name_entry.value, name_entry.path, report
    ):
        return
    where = f"{path} ({name})"

    def flag(key: str) -> bool:
        found = fields.get(key)
        return bool(found and read_bool(found.value, found.path, report))

    runtime, mask, enable = flag("runtime"), flag("mask"), flag("enable")
    networkd = unit_kind(name) in NETWORKD_TYPES
    if networkd:
        directory = RUNTIME_NETWORK_DIR if runtime else NETWORK_DIR
    else:
        directory = RUNTIME_DIR if runtime else SYSTEM_DIR

    content: str | None = None
    if "content" in fields:
        found = fields["content"]
        content = read_str(found.value, found.path, report)
        if content is not None:
            check_unit_text(content, found.value, where, report)

    command: str | None = None
    if "command" in fields:
        found = fields["command"]
        command = read_str(found.value, found.path, report, required=True)
        if command is not None and command not in COMMANDS:
            report.error(
                found.value,
                f"invalid {found.path} {command!r} for {name}: use one of "
                + ", ".join(COMMANDS),
            )
            command = None
        elif command is not None and (networkd or "@." in name):
            kind = "a networkd file" if networkd else "a template"
            report.error(
                found.value,
                f"{found.path}: {name} is {kind} and cannot be started or stopped; "
                "remove the command",
            )
            command = None

    if mask and content is not None:
        report.error(
            fields["mask"].key_node,
            f"{where} has both mask and content: a masked unit's file is "
            "replaced by a link to /dev/null; remove one",
        )
        return
    if mask and command in ("start", "restart", "reload-or-restart", "try-restart"):
        report.error(
            fields["mask"].key_node,
            f"{where} is masked, so command {command} would fail; remove one",
        )
        return
    if networkd and enable:
        report.warning(
            fields["enable"].key_node,
            f"{where}: networkd files are not enabled; enable is ignored",
        )
        enable = False

    line = line_of(item)
    if content is not None:
        plan.files.append(
            FileWrite(PurePosixPath(directory / name), content.encode(), line)
        )
        plan.provided_units.add(name)
    _read_drop_ins(fields.get("drop_ins"), name, directory, where, plan, report)
    if mask:
        plan.links.append(Link(PurePosixPath(directory / name), "/dev/null", line))
    if enable:
        plan.enables.append(Enable(name, runtime, line))
    if command is not None:
        plan.commands.append(UnitCommand(name, command, line))
    if name in SHIPPED and content is None and not mask and (command or enable):
        plan.shipped_units.add(name)


def _read_drop_ins(
    found: Entry | None,
    unit: str,
    directory: PurePosixPath,
    where: str,
    plan: Plan,
    report: Report,
) -> None:
    if found is None:
        return
    for index, item in enumerate(read_list(found.value, found.path, report)):
        path = f"{found.path}[{index}]"
        fields = read_mapping(item, path, report)
        warn_unknown(fields, _DROP_IN_KNOWN, report)
        name_entry = fields.get("name")
        if name_entry is None:
            report.error(item, f"{path}.name is missing: name the drop-in file")
            continue
        name = read_str(name_entry.value, name_entry.path, report, required=True)
        if name is None:
            continue
        if not name.endswith(".conf") or "/" in name or name.startswith("."):
            report.error(
                name_entry.value,
                f"invalid {path}.name {name!r}: a drop-in is a file name ending "
                "in .conf",
            )
            continue
        content_entry = fields.get("content")
        content = (
            read_str(content_entry.value, content_entry.path, report)
            if content_entry
            else None
        )
        if content is None or content_entry is None:
            report.error(
                item, f"{path}.content is missing for {where}: give the drop-in text"
            )
            continue
        check_unit_text(content, content_entry.value, f"{where} drop-in {name}", report)
        plan.files.append(
            FileWrite(
                PurePosixPath(directory / f"{unit}.d" / name),
                content.encode(),
                line_of(item),
            )
        )
