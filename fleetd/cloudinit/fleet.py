"""``coreos.fleet``: fleetd options, passed as FLEET_* variables.

Each value is checked by fleetd's own configuration reader, so a value the
processor accepts is one fleetd accepts. The variables go into a runtime
drop-in for fleet.service. Without ``etcd_servers``, the drop-in also names
the etcd that the same cloud-config configures, because fleetd's default
endpoints on 127.0.0.1 would miss an etcd that listens on the host's own
address.
"""

from __future__ import annotations

import dataclasses

import yaml

from fleetd.cloudinit import dropins
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import (
    Entry,
    is_null,
    kind_of,
    read_bool,
    read_mapping,
    read_str,
    read_str_list,
)
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.report import Report, line_of
from fleetd.config import Config, ConfigError, load_config

UNIT = "fleet.service"
SOCKET = "fleet.socket"

OPTIONS = frozenset(
    field.name
    for field in dataclasses.fields(Config)
    if field.name != "etcd_servers_set"
)
_BOOLEANS = frozenset(
    field.name for field in dataclasses.fields(Config) if field.type == "bool"
)
_DEPRECATED = frozenset({"verify_units", "authorized_keys_file", "enable_grpc"})


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Check each option with fleetd's reader and keep it for the drop-in."""
    fields = read_mapping(entry.value, entry.path, report)
    environment: dict[str, str] = {}
    for key, field in fields.items():
        if key in _DEPRECATED:
            report.warning(field.key_node, f"{field.path} is deprecated and ignored")
            continue
        if key not in OPTIONS:
            report.warning(field.key_node, f"unknown fleet option {field.path} ignored")
            continue
        value = _read_value(key, field, report)
        if value is None:
            continue
        try:
            load_config(None, {f"FLEET_{key.upper()}": value})
        except ConfigError as err:
            report.error(field.value, f"{field.path}: {err}")
            continue
        environment[f"FLEET_{key.upper()}"] = value

    plan.fleet_environment = environment
    plan.fleet_line = line_of(entry.key_node)
    plan.shipped_units.add(UNIT)


def _read_value(key: str, field: Entry, report: Report) -> str | None:
    if key in _BOOLEANS:
        flag = read_bool(field.value, field.path, report)
        return None if flag is None else str(flag).lower()
    if key == "metadata":
        return _read_metadata(field.value, field.path, report)
    if key == "etcd_servers":
        servers = read_str_list(field.value, field.path, report)
        return ",".join(server.strip() for server, _ in servers) or None
    return read_str(field.value, field.path, report)


def _read_metadata(node: yaml.Node, path: str, report: Report) -> str | None:
    """Read metadata as ``k=v,k=v``, a list of ``k=v`` or a mapping."""
    if isinstance(node, yaml.MappingNode):
        pairs = []
        for entry in read_mapping(node, path, report).values():
            value = read_str(entry.value, entry.path, report)
            if value is None:
                report.error(entry.value, f"{entry.path} is empty: give it a value")
                continue
            pairs.append(f"{entry.key}={value}")
        return ",".join(pairs)
    if is_null(node):
        return None
    if not isinstance(node, (yaml.ScalarNode, yaml.SequenceNode)):
        report.error(node, f"{path} must be a string or a list, not {kind_of(node)}")
        return None
    return ",".join(text for text, _ in read_str_list(node, path, report))


def finish(plan: Plan, context: Context) -> None:
    """Write fleet.service's drop-in if the cloud-config configures or runs it.

    Called after every key is read, because the etcd servers may come from
    coreos.etcd or coreos.etcd2 anywhere in the file.
    """
    if UNIT not in plan.shipped_units or UNIT in plan.provided_units:
        return
    environment = dict(plan.fleet_environment or {})
    if "FLEET_ETCD_SERVERS" not in environment and plan.etcd_client_urls:
        environment["FLEET_ETCD_SERVERS"] = ",".join(plan.etcd_client_urls)
    plan.files.append(
        dropins.environment_drop_in(
            UNIT, environment, plan.fleet_line, exec_start=context.fleetd
        )
    )
