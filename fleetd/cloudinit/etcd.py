"""``coreos.etcd``: etcd 0.4 settings, run by the etcd 3.4 of etcd.service.

etcd 0.4 took ``host:port`` addresses; etcd 3.4 takes URLs under other flag
names, so each key is translated to the ETCD_* variable etcd 3.4 reads. One
difference is deliberate. etcd 0.4 listened on 0.0.0.0 unless ``bind-addr``
was given, but here etcd listens on the ``addr`` host itself, so several
hosts that share a network namespace can each run a member.
"""

from __future__ import annotations

import re

from fleetd.cloudinit import dropins, urls
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import Entry, read_mapping, read_str
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.report import Report, line_of

UNIT = "etcd.service"

# etcd 0.4 key -> etcd 3.4 variable, for values passed through unchanged.
_DIRECT = {
    "name": "ETCD_NAME",
    "data_dir": "ETCD_DATA_DIR",
    "cors": "ETCD_CORS",
    "ca_file": "ETCD_TRUSTED_CA_FILE",
    "cert_file": "ETCD_CERT_FILE",
    "key_file": "ETCD_KEY_FILE",
    "peer_ca_file": "ETCD_PEER_TRUSTED_CA_FILE",
    "peer_cert_file": "ETCD_PEER_CERT_FILE",
    "peer_key_file": "ETCD_PEER_KEY_FILE",
}
_NUMBERS = {
    "snapshot_count": "ETCD_SNAPSHOT_COUNT",
    "peer_heartbeat_interval": "ETCD_HEARTBEAT_INTERVAL",
    "peer_election_timeout": "ETCD_ELECTION_TIMEOUT",
}
_ADDRESSES = frozenset({"addr", "bind_addr", "peer_addr", "peer_bind_addr"})
# etcd 0.4 keys that etcd 3.4 has no equivalent for.
_IGNORED = frozenset(
    {
        "snapshot",
        "cluster_active_size",
        "cluster_remove_delay",
        "cluster_sync_interval",
        "max_result_buffer",
        "max_retry_attempts",
        "max_cluster_size",
        "http_read_timeout",
        "http_write_timeout",
        "retry_interval",
        "graphite_host",
        "cpu_profile_file",
        "verbose",
        "very_verbose",
        "force",
    }
)
_UNSUPPORTED = frozenset({"peers", "peers_file"})
_KNOWN = frozenset(_DIRECT) | frozenset(_NUMBERS) | _ADDRESSES | {"discovery"}


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Translate the settings into a drop-in for etcd.service."""
    fields = read_mapping(entry.value, entry.path, report)
    environment: dict[str, str] = {}
    addresses: dict[str, tuple[str, int | None]] = {}

    for key, field in fields.items():
        if key in _IGNORED:
            report.warning(
                field.key_node,
                f"{field.path} has no equivalent in etcd 3.4 and is ignored",
            )
        elif key in _UNSUPPORTED:
            report.error(
                field.key_node,
                f"{field.path} is not supported: etcd 3.4 needs a name for each "
                "member; use discovery, or initial-cluster under coreos.etcd2",
            )
        elif key not in _KNOWN:
            report.warning(field.key_node, f"unknown key {field.path} ignored")
            continue

        if key in _DIRECT:
            value = read_str(field.value, field.path, report)
            if value:
                environment[_DIRECT[key]] = value
        elif key in _NUMBERS:
            value = read_str(field.value, field.path, report)
            if value is not None and not re.fullmatch(r"\d+", value):
                report.error(
                    field.value, f"invalid {field.path} {value!r}: use a whole number"
                )
            elif value is not None:
                environment[_NUMBERS[key]] = value
        elif key in _ADDRESSES:
            value = read_str(field.value, field.path, report)
            if value is not None:
                split = urls.split_host_port(
                    value,
                    field.value,
                    field.path,
                    report,
                    port_required=key in ("addr", "peer_addr"),
                )
                if split is not None:
                    addresses[key] = split
        elif key == "discovery":
            value = read_str(field.value, field.path, report, required=True)
            if value is not None and urls.check_discovery(
                value, field.value, field.path, report
            ):
                environment["ETCD_DISCOVERY"] = value

    client_scheme = "https" if "ETCD_CERT_FILE" in environment else "http"
    peer_scheme = "https" if "ETCD_PEER_CERT_FILE" in environment else "http"
    if "ETCD_TRUSTED_CA_FILE" in environment:
        environment["ETCD_CLIENT_CERT_AUTH"] = "true"
    if "ETCD_PEER_TRUSTED_CA_FILE" in environment:
        environment["ETCD_PEER_CLIENT_CERT_AUTH"] = "true"

    if "addr" in addresses:
        advertise = _url(client_scheme, addresses["addr"])
        environment["ETCD_ADVERTISE_CLIENT_URLS"] = advertise
        environment["ETCD_LISTEN_CLIENT_URLS"] = _url(
            client_scheme, _bind(addresses, "bind_addr", "addr")
        )
        plan.etcd_client_urls = [advertise]
    elif "bind_addr" in addresses:
        report.error(
            fields["bind_addr"].key_node,
            f"{entry.path}.bind-addr needs addr: give the address clients use",
        )
    if "peer_addr" in addresses:
        environment["ETCD_INITIAL_ADVERTISE_PEER_URLS"] = _url(
            peer_scheme, addresses["peer_addr"]
        )
        environment["ETCD_LISTEN_PEER_URLS"] = _url(
            peer_scheme, _bind(addresses, "peer_bind_addr", "peer_addr")
        )
    elif "peer_bind_addr" in addresses:
        report.error(
            fields["peer_bind_addr"].key_node,
            f"{entry.path}.peer-bind-addr needs peer-addr: give the address "
            "other members use",
        )

    plan.shipped_units.add(UNIT)
    plan.files.append(
        dropins.environment_drop_in(UNIT, environment, line_of(entry.key_node))
    )


def _bind(
    addresses: dict[str, tuple[str, int | None]], bind_key: str, addr_key: str
) -> tuple[str, int | None]:
    """Return the bind address, taking the port of the advertised one if absent."""
    if bind_key not in addresses:
        return addresses[addr_key]
    host, port = addresses[bind_key]
    return host, port if port is not None else addresses[addr_key][1]


def _url(scheme: str, address: tuple[str, int | None]) -> str:
    host, port = address
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"
