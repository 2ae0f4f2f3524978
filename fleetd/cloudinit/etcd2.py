"""``coreos.etcd2``: etcd 2 settings, run by the etcd 3.4 of etcd2.service.

etcd 3.4 kept etcd 2's flag names, so each key becomes the ETCD_* variable
of the same name. The known names are the flags of etcd 3.4.23
(``etcd --help``), plus the etcd 2 names that etcd 3 renamed.
"""

from __future__ import annotations

import re

from fleetd.cloudinit import dropins, urls
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import Entry, read_bool, read_mapping, read_str
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.report import Report, line_of

UNIT = "etcd2.service"

_URL_LISTS = frozenset(
    {
        "listen_peer_urls",
        "listen_client_urls",
        "initial_advertise_peer_urls",
        "advertise_client_urls",
        "listen_metrics_urls",
    }
)
_BOOLEANS = frozenset(
    {
        "strict_reconfig_check",
        "pre_vote",
        "enable_v2",
        "client_cert_auth",
        "auto_tls",
        "peer_client_cert_auth",
        "peer_auto_tls",
        "enable_pprof",
        "force_new_cluster",
        "debug",
        "experimental_initial_corrupt_check",
        "experimental_enable_lease_checkpoint",
        "experimental_peer_skip_client_san_verification",
    }
)
_NUMBERS = frozenset(
    {
        "snapshot_count",
        "heartbeat_interval",
        "election_timeout",
        "max_snapshots",
        "max_wals",
        "quota_backend_bytes",
        "max_txn_ops",
        "max_request_bytes",
        "max_concurrent_streams",
        "bcrypt_cost",
        "auth_token_ttl",
        "proxy_failure_wait",
        "proxy_refresh_interval",
        "proxy_dial_timeout",
        "proxy_write_timeout",
        "proxy_read_timeout",
        "backend_batch_limit",
    }
)
_CHOICES = {
    "initial_cluster_state": ("new", "existing"),
    "discovery_fallback": ("exit", "proxy"),
    "proxy": ("off", "readonly", "on"),
    "auto_compaction_mode": ("periodic", "revision"),
}
_STRINGS = frozenset(
    {
        "name",
        "data_dir",
        "wal_dir",
        "initial_cluster",
        "initial_cluster_token",
        "discovery_proxy",
        "discovery_srv",
        "discovery_srv_name",
        "cert_file",
        "key_file",
        "client_crl_file",
        "client_cert_allowed_hostname",
        "trusted_ca_file",
        "peer_cert_file",
        "peer_key_file",
        "peer_trusted_ca_file",
        "peer_cert_allowed_cn",
        "peer_cert_allowed_hostname",
        "peer_crl_file",
        "cipher_suites",
        "cors",
        "host_whitelist",
        "auth_token",
        "metrics",
        "log_level",
        "log_package_levels",
        "auto_compaction_retention",
        "backend_batch_interval",
        "grpc_keepalive_min_time",
        "grpc_keepalive_interval",
        "grpc_keepalive_timeout",
    }
)
# etcd 2 names that etcd 3 renamed.
_RENAMED = {"ca_file": "trusted_ca_file", "peer_ca_file": "peer_trusted_ca_file"}
# Flags the unit sets itself, which a cloud-config must not change.
_RESERVED = frozenset({"logger", "log_outputs"})


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Translate the settings into a drop-in for etcd2.service."""
    fields = read_mapping(entry.value, entry.path, report)
    environment: dict[str, str] = {}
    for key, field in fields.items():
        flag = _RENAMED.get(key, key)
        value = _read_value(flag, field, report)
        if value is not None:
            environment["ETCD_" + flag.upper()] = value

    if "ETCD_DISCOVERY" in environment and "ETCD_INITIAL_CLUSTER" in environment:
        report.error(
            fields["initial_cluster"].key_node,
            f"{entry.path} has both discovery and initial-cluster: etcd accepts "
            "only one way to find its members; remove one",
        )
    for key in ("ETCD_ADVERTISE_CLIENT_URLS", "ETCD_LISTEN_CLIENT_URLS"):
        found = [url for url in environment.get(key, "").split(",") if url]
        usable = [
            url for url in found if "//0.0.0.0" not in url and "//[::]" not in url
        ]
        if usable:
            plan.etcd_client_urls = usable
            break

    plan.shipped_units.add(UNIT)
    plan.files.append(
        dropins.environment_drop_in(UNIT, environment, line_of(entry.key_node))
    )


def _read_value(flag: str, field: Entry, report: Report) -> str | None:
    """Check one setting by the type of its flag; None when it is not used."""
    if flag in _RESERVED:
        report.warning(field.key_node, f"{field.path} is set by the unit; ignored")
        return None
    if flag in _BOOLEANS:
        value = read_bool(field.value, field.path, report)
        return None if value is None else str(value).lower()

    text = read_str(field.value, field.path, report)
    if text is None:
        if flag in _URL_LISTS or flag == "discovery" or flag in _STRINGS:
            report.error(
                field.value, f"{field.path} is empty: give a value or remove it"
            )
        return None
    if flag in _URL_LISTS:
        return ",".join(urls.check_url_list(text, field.value, field.path, report))
    if flag == "discovery":
        ok = urls.check_discovery(text, field.value, field.path, report)
        return text if ok else None
    if flag in _NUMBERS:
        if not re.fullmatch(r"\d+", text):
            report.error(
                field.value, f"invalid {field.path} {text!r}: use a whole number"
            )
            return None
        return text
    if flag in _CHOICES:
        if text not in _CHOICES[flag]:
            choices = ", ".join(_CHOICES[flag])
            report.error(
                field.value, f"invalid {field.path} {text!r}: use one of {choices}"
            )
            return None
        return text
    if flag == "initial_cluster":
        return _check_initial_cluster(text, field, report)
    if flag in _STRINGS:
        return text
    report.warning(
        field.key_node, f"unknown key {field.path} ignored (not an etcd 3.4 flag)"
    )
    return None


def _check_initial_cluster(text: str, field: Entry, report: Report) -> str | None:
    """Check ``name=URL[,name=URL...]``."""
    for member in text.split(","):
        name, sep, url = member.strip().partition("=")
        if not sep or not name:
            report.error(
                field.value,
                f"invalid {field.path} member {member.strip()!r}: write name=URL",
            )
            return None
        if not urls.check_url(url, field.value, field.path, report):
            return None
    return text
