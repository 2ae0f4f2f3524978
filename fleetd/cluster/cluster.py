"""Local clusters: one etcd plus hosts running fleetd, kept in a state directory.

The functions here do the work of the `fleet-cluster` commands; the test
fixtures call boot_fleet_hosts() directly with an etcd of their own.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from fleetd.cluster import fleet, state
from fleetd.cluster.fleet import FleetOptions
from fleetd.cluster.host import Host, HostSpec, boot_hosts
from fleetd.cluster.state import ClusterState, EtcdRecord, HostRecord
from fleetd.errors import ClusterError
from fleetd.etcdserver import EtcdServer

log = logging.getLogger(__name__)

DEFAULT_IP_BASE = "127.0.0.11"
BOOT_TIMEOUT = 30.0
FLEET_TIMEOUT = 30.0


def host_ips(ip_base: str, count: int) -> list[str]:
    """Return `count` consecutive IPv4 addresses starting at `ip_base`."""
    try:
        first = ipaddress.IPv4Address(ip_base)
    except ValueError as err:
        raise ClusterError(
            f"invalid IP base {ip_base!r}: use an IPv4 address such as 127.0.0.11"
        ) from err
    last = int(first) + count - 1
    if last > int(ipaddress.IPv4Address("255.255.255.254")) or (
        first.is_loopback and not ipaddress.IPv4Address(last).is_loopback
    ):
        raise ClusterError(
            f"IP base {ip_base} leaves no room for {count} hosts: choose a lower one"
        )
    return [str(first + offset) for offset in range(count)]


def boot_fleet_hosts(
    name: str,
    count: int,
    state_dir: Path,
    options: FleetOptions,
    ip_base: str = DEFAULT_IP_BASE,
    first_number: int = 1,
) -> list[Host]:
    """Boot hosts `<name>-<n>` in parallel and start fleetd on each.

    Each host keeps its files in `state_dir/<host name>`. On any failure every
    host booted here is killed before ClusterError is raised.
    """
    numbers = range(first_number, first_number + count)
    specs = [
        HostSpec(name=f"{name}-{n}", state_dir=state_dir / f"{name}-{n}", public_ip=ip)
        for n, ip in zip(numbers, host_ips(ip_base, count), strict=True)
    ]
    hosts = boot_hosts(specs, timeout=BOOT_TIMEOUT)
    try:
        for number, host in zip(numbers, hosts, strict=True):
            fleet.install(host, options, number)
        fleet.wait_active(hosts, timeout=FLEET_TIMEOUT)
    except BaseException:
        for host in hosts:
            host.kill()
        raise
    return hosts


@dataclass
class UpResult:
    """The cluster that `up` started and its state directory."""

    state: ClusterState
    directory: Path


def up(
    root: Path,
    name: str,
    host_count: int,
    *,
    agent_ttl: str = fleet.DEFAULT_AGENT_TTL,
    metadata: str = fleet.DEFAULT_METADATA,
    key_prefix: str = fleet.DEFAULT_KEY_PREFIX,
    etcd_port: int = 0,
    ip_base: str | None = None,
    fleetd: Path | None = None,
) -> UpResult:
    """Start etcd and `host_count` hosts running fleetd; record them.

    Raises ClusterError if a cluster of that name is running; the remains of
    a dead one are cleaned up first.
    """
    if ip_base is None:
        ip_base = free_ip_base(root, name)
    check_up_arguments(name, host_count, agent_ttl, metadata, key_prefix, ip_base)
    directory = state.cluster_dir(root, name)
    if fleetd is None:
        fleetd = fleet.default_fleetd()
    if not fleetd.is_file():
        raise ClusterError(
            f"fleetd executable {fleetd} not found: install fleet-py in this "
            "virtualenv or pass --fleetd"
        )

    if (directory / state.STATE_FILE).exists():
        previous = state.load(directory)
        if is_running(previous):
            raise ClusterError(
                f"cluster {name} is already running: stop it with "
                f"`fleet-cluster down --name {name}` or choose another --name"
            )
        log.info("removing the remains of stopped cluster %s", name)
        down(root, name)
    elif directory.exists():
        _remove_dir(directory)

    state.create_root(root)
    directory.mkdir(parents=True)
    etcd = EtcdServer(directory / "etcd" / "data", client_port=etcd_port)
    etcd.start()
    try:
        options = FleetOptions(
            etcd_url=etcd.client_url,
            key_prefix=key_prefix,
            agent_ttl=agent_ttl,
            metadata=metadata,
            fleetd=fleetd,
        )
        hosts = boot_fleet_hosts(name, host_count, directory, options, ip_base)
    except BaseException:
        etcd.stop()
        _remove_dir(directory)
        state.remove_root_if_unused(root)
        raise

    cluster_state = ClusterState(
        name=name,
        etcd=EtcdRecord(
            pid=etcd.pid,
            start_time=etcd.start_time or 0,
            client_url=etcd.client_url,
            data_dir=str(etcd.data_dir),
        ),
        key_prefix=key_prefix,
        agent_ttl=agent_ttl,
        metadata=metadata,
        fleetd=str(fleetd),
        hosts=[HostRecord.from_host(host) for host in hosts],
    )
    state.save(cluster_state, directory)
    return UpResult(state=cluster_state, directory=directory)


def check_up_arguments(
    name: str,
    host_count: int,
    agent_ttl: str,
    metadata: str,
    key_prefix: str,
    ip_base: str,
) -> None:
    """Raise ClusterError for the first invalid argument of up()."""
    state.check_cluster_name(name)
    if host_count < 1:
        raise ClusterError(f"invalid host count {host_count}: use at least 1")
    FleetOptions(
        etcd_url="",  # known only once etcd runs, and not validated here
        key_prefix=key_prefix,
        agent_ttl=agent_ttl,
        metadata=metadata,
    )
    host_ips(ip_base, host_count)


def free_ip_base(root: Path, name: str) -> str:
    """Return the first IP base, 127.0.N.11, whose /24 no running cluster uses.

    Clusters share the machine's network namespace, so two clusters on the
    same addresses would fight over the peer port of each address.
    """
    used: set[str] = set()
    for other in state.list_clusters(root):
        if other == name:
            continue
        try:
            other_state = state.load(state.cluster_dir(root, other))
        except ClusterError:
            continue
        if is_running(other_state):
            used.update(host.public_ip.rsplit(".", 1)[0] for host in other_state.hosts)
    for block in range(256):
        if f"127.0.{block}" not in used:
            return f"127.0.{block}.11"
    raise ClusterError("every 127.0.N.0/24 block is in use by a running cluster")


def is_running(cluster_state: ClusterState) -> bool:
    """Return True if the cluster's etcd or any of its hosts still runs."""
    if etcd_of(cluster_state).running():
        return True
    return any(record.to_host().alive() for record in cluster_state.hosts)


def down(root: Path, name: str) -> None:
    """Kill the hosts, stop etcd and remove the cluster's state directory.

    Every host and etcd get stopped even if one of them fails to; the first
    error is raised afterwards and the directory is then kept. The state root
    goes too when `up` created it and this was its last cluster.
    """
    directory = state.cluster_dir(root, name)
    cluster_state = state.load(directory)
    errors: list[ClusterError] = []
    for record in cluster_state.hosts:
        try:
            record.to_host().kill()
        except ClusterError as err:
            log.error("failed to stop host %s: %s", record.name, err)
            errors.append(err)
    etcd_of(cluster_state).stop()
    if errors:
        raise errors[0]
    _remove_dir(directory)
    state.remove_root_if_unused(root)


def kill_host(root: Path, name: str, selector: str) -> HostRecord:
    """Kill one host with SIGKILL to its PID 1; return its record."""
    cluster_state = state.load(state.cluster_dir(root, name))
    record = cluster_state.find_host(selector)
    record.to_host().kill()
    return record


def start_host(root: Path, name: str, selector: str) -> Host:
    """Boot a stopped host again, with a fresh machine ID, and start fleetd."""
    directory = state.cluster_dir(root, name)
    cluster_state = state.load(directory)
    record = cluster_state.find_host(selector)
    old = record.to_host()
    if old.alive():
        raise ClusterError(
            f"host {record.name} is running: kill it first with "
            f"`fleet-cluster kill --name {name} {record.name}`"
        )
    old.kill()  # removes the cgroups left by the dead host

    if not etcd_of(cluster_state).running():
        raise ClusterError(
            f"etcd of cluster {name} is not running: recreate the cluster with "
            f"`fleet-cluster down --name {name}` and `fleet-cluster up`"
        )
    number = cluster_state.hosts.index(record) + 1
    options = FleetOptions(
        etcd_url=cluster_state.etcd.client_url,
        key_prefix=cluster_state.key_prefix,
        agent_ttl=cluster_state.agent_ttl,
        metadata=cluster_state.metadata,
        fleetd=Path(cluster_state.fleetd),
    )
    host = Host.boot(record.name, Path(record.state_dir), record.public_ip)
    try:
        fleet.install(host, options, number)
        fleet.wait_active([host], timeout=FLEET_TIMEOUT)
    except BaseException:
        host.kill()
        raise

    cluster_state.hosts[number - 1] = HostRecord.from_host(host)
    state.save(cluster_state, directory)
    return host


def etcd_of(cluster_state: ClusterState) -> EtcdServer:
    """Return a handle on the cluster's etcd that can check and stop it."""
    record = cluster_state.etcd
    return EtcdServer.adopt(
        Path(record.data_dir), record.client_url, record.pid, record.start_time
    )


def _remove_dir(directory: Path) -> None:
    """Remove a cluster directory unless something is still mounted inside."""
    mounted = mounts_under(directory)
    if mounted:
        raise ClusterError(
            f"cannot remove {directory}: still mounted there: {', '.join(mounted)}; "
            "unmount them first"
        )
    shutil.rmtree(directory)


def mounts_under(directory: Path) -> list[str]:
    """Return the mount points at or below `directory` in our mount namespace."""
    prefix = str(directory.resolve())
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            mount_point = line.split()[4]
            if mount_point == prefix or mount_point.startswith(prefix + "/"):
                found.append(mount_point)
    return found
