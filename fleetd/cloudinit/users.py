"""``users``: accounts to create, with their groups and SSH keys."""

from __future__ import annotations

import re

import yaml

from fleetd.cloudinit import ssh_authorized_keys
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import (
    Entry,
    read_bool,
    read_list,
    read_mapping,
    read_str,
    read_str_list,
)
from fleetd.cloudinit.plan import Plan, User
from fleetd.cloudinit.report import Report, line_of

# The names Debian's useradd accepts by default (NAME_REGEX of adduser.conf).
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}\$?$")

_KNOWN = frozenset(
    {
        "name",
        "passwd",
        "homedir",
        "no_create_home",
        "primary_group",
        "groups",
        "system",
        "shell",
        "ssh_authorized_keys",
        "gecos",
    }
)
# Keys CoreOS had that need the network or are not carried over.
_UNSUPPORTED = {
    "coreos_ssh_import_github": "it fetches keys over the network",
    "coreos_ssh_import_github_users": "it fetches keys over the network",
    "coreos_ssh_import_url": "it fetches keys over the network",
    "no_user_group": "useradd's default is kept",
    "no_log_init": "useradd's default is kept",
    "lock_passwd": "set passwd to '*' to lock the password",
    "inactive": "expire accounts with usermod",
}


def _check_name(name: str, node: yaml.Node, path: str, report: Report) -> bool:
    if USER_NAME.match(name):
        return True
    report.error(
        node,
        f"invalid {path} {name!r}: use lowercase letters, digits, '_' and '-', "
        "starting with a letter or '_', at most 32 characters",
    )
    return False


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Plan each user of the list; a user without a valid name is skipped."""
    seen: set[str] = set()
    for index, item in enumerate(read_list(entry.value, entry.path, report)):
        user = _read_user(item, f"{entry.path}[{index}]", report)
        if user is None:
            continue
        if user.name in seen:
            report.error(item, f"user {user.name!r} is listed twice in {entry.path}")
            continue
        seen.add(user.name)
        plan.users.append(user)


def _read_user(item: yaml.Node, path: str, report: Report) -> User | None:
    fields = read_mapping(item, path, report)
    for key, field in fields.items():
        if key in _UNSUPPORTED:
            report.warning(
                field.key_node,
                f"{field.path} is not supported and ignored: {_UNSUPPORTED[key]}",
            )
        elif key not in _KNOWN:
            report.warning(field.key_node, f"unknown key {field.path} ignored")

    name_entry = fields.get("name")
    if name_entry is None:
        report.error(item, f"{path}.name is missing: give each user a name")
        return None
    name = read_str(name_entry.value, name_entry.path, report, required=True)
    if name is None or not _check_name(name, name_entry.value, name_entry.path, report):
        return None

    groups: list[str] = []
    if "groups" in fields:
        found = fields["groups"]
        for group, group_node in read_str_list(found.value, found.path, report):
            # CoreOS also accepted one comma-separated string.
            for part in group.split(","):
                part = part.strip()
                if part and _check_name(part, group_node, "group", report):
                    groups.append(part)
    keys: tuple[str, ...] = ()
    if "ssh_authorized_keys" in fields:
        found = fields["ssh_authorized_keys"]
        keys = ssh_authorized_keys.read_keys(found.value, found.path, report)
    primary = _value(fields, "primary_group", report)
    if primary is not None:
        _check_name(primary, fields["primary_group"].value, "primary_group", report)

    return User(
        name=name,
        line=line_of(item),
        groups=tuple(groups),
        ssh_authorized_keys=keys,
        homedir=_value(fields, "homedir", report),
        shell=_value(fields, "shell", report),
        gecos=_value(fields, "gecos", report),
        primary_group=primary,
        passwd=_value(fields, "passwd", report),
        system=_flag(fields, "system", report),
        no_create_home=_flag(fields, "no_create_home", report),
    )


def _value(fields: dict[str, Entry], key: str, report: Report) -> str | None:
    found = fields.get(key)
    return read_str(found.value, found.path, report) if found else None


def _flag(fields: dict[str, Entry], key: str, report: Report) -> bool:
    found = fields.get(key)
    return bool(found and read_bool(found.value, found.path, report))
