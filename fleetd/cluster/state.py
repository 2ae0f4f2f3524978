"""The state file of a local cluster: what runs, so later commands can find it.

`fleet-cluster up` writes `<root>/<name>/state.json`; every other command
reads it. The file records PIDs together with their start times, so a command
never signals a process that merely reused a recorded PID.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleetd.cluster.host import Host
from fleetd.errors import ClusterError

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/var/lib/fleet-cluster")
STATE_FILE = "state.json"
# An empty file in a state root that `fleet-cluster up` created, so that the
# root is removed with the last cluster and a root made by the user is kept.
ROOT_MARKER = ".created-by-fleet-cluster"
FORMAT_VERSION = 1

# Host names are "<cluster>-<number>" and must be valid hostnames, so the
# cluster name leaves room for a hyphen and up to three digits.
_CLUSTER_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,57}[a-z0-9])?$")


@dataclass
class HostRecord:
    """One host of the cluster, as recorded at boot."""

    name: str
    pid: int
    start_time: int
    public_ip: str
    machine_id: str
    state_dir: str
    # Recorded because they hang below the cgroup of the process that booted
    # the host, which a later command may not share.
    cgroup_dirs: list[str] = field(default_factory=list)

    @classmethod
    def from_host(cls, host: Host) -> HostRecord:
        return cls(
            name=host.name,
            pid=host.pid,
            start_time=host.start_time,
            public_ip=host.public_ip,
            machine_id=host.machine_id,
            state_dir=str(host.state_dir),
            cgroup_dirs=[str(path) for path in host.cgroup_dirs],
        )

    def to_host(self) -> Host:
        """Return a handle on the recorded host, alive or not."""
        return Host(
            name=self.name,
            machine_id=self.machine_id,
            public_ip=self.public_ip,
            pid=self.pid,
            state_dir=Path(self.state_dir),
            start_time=self.start_time,
            cgroup_dirs=tuple(Path(path) for path in self.cgroup_dirs),
        )


@dataclass
class EtcdRecord:
    """The cluster's etcd server."""

    pid: int
    start_time: int
    client_url: str
    data_dir: str


@dataclass
class ClusterState:
    """Everything `fleet-cluster up` started for one cluster."""

    name: str
    etcd: EtcdRecord
    key_prefix: str
    agent_ttl: str
    metadata: str
    fleetd: str
    hosts: list[HostRecord] = field(default_factory=list)
    version: int = FORMAT_VERSION

    def find_host(self, selector: str) -> HostRecord:
        """Return the host named `selector`, or numbered so ("2" is <name>-2)."""
        requested = f"{self.name}-{selector}" if selector.isdigit() else selector
        for host in self.hosts:
            if host.name == requested:
                return host
        names = ", ".join(host.name for host in self.hosts) or "none"
        raise ClusterError(
            f"host {selector!r} not found in cluster {self.name}: "
            f"use a name or number of: {names}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "state file") -> ClusterState:
        """Parse a state file; raise ClusterError naming `source` if invalid."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("top level is not an object")
            version = data.get("version")
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version!r} is not supported")
            return cls(
                name=_string(data, "name"),
                etcd=EtcdRecord(**_object(data, "etcd")),
                key_prefix=_string(data, "key_prefix"),
                agent_ttl=_string(data, "agent_ttl"),
                metadata=_string(data, "metadata"),
                fleetd=_string(data, "fleetd"),
                hosts=[HostRecord(**_checked(host)) for host in _list(data, "hosts")],
            )
        except (ValueError, TypeError, KeyError) as err:
            raise ClusterError(
                f"invalid {source}: {err}; remove the cluster directory by hand "
                "after making sure nothing of it still runs"
            ) from err


def _string(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} is not a string")
    return value


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key!r} is not an object")
    return _checked(value)


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data[key]
    if not isinstance(value, list):
        raise TypeError(f"{key!r} is not a list")
    return value


def _checked(record: Any) -> dict[str, Any]:
    """Check that a record's fields have JSON types matching the dataclasses."""
    if not isinstance(record, dict):
        raise TypeError("a host or etcd record is not an object")
    for key, value in record.items():
        if key == "cgroup_dirs":
            if not isinstance(value, list) or not all(
                isinstance(item, str) for item in value
            ):
                raise TypeError(f"{key!r} is not a list of strings")
            continue
        expected = int if key in {"pid", "start_time"} else str
        if not isinstance(value, expected) or isinstance(value, bool):
            raise TypeError(f"{key!r} is not of type {expected.__name__}")
    return record


def check_cluster_name(name: str) -> None:
    """Raise ClusterError unless `name` can prefix the host names."""
    if not _CLUSTER_NAME.match(name):
        raise ClusterError(
            f"invalid cluster name {name!r}: use 1 to 59 lowercase letters, "
            "digits and inner hyphens"
        )


def cluster_dir(root: Path, name: str) -> Path:
    check_cluster_name(name)
    return root / name


def create_root(root: Path) -> None:
    """Create the state root and mark it as ours, unless it exists already."""
    if root.exists():
        return
    root.mkdir(parents=True)
    (root / ROOT_MARKER).touch()


def remove_root_if_unused(root: Path) -> None:
    """Remove the state root if `create_root` made it and no cluster is left."""
    marker = root / ROOT_MARKER
    try:
        if list(root.iterdir()) != [marker]:
            return
        marker.unlink()
        root.rmdir()
    except OSError as err:
        # Another `fleet-cluster up` may have added a cluster meanwhile.
        log.warning("cannot remove the state root %s: %s", root, err)
        return
    log.info("removed the empty state root %s", root)


def save(state: ClusterState, directory: Path) -> None:
    """Write the state file atomically, so readers never see half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / (STATE_FILE + ".partial")
    partial.write_text(state.to_json(), encoding="utf-8")
    os.replace(partial, directory / STATE_FILE)


def load(directory: Path) -> ClusterState:
    """Read a cluster's state file; ClusterError if missing or invalid."""
    path = directory / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ClusterError(
            f"no cluster named {directory.name!r} under {directory.parent}: "
            "start one with `fleet-cluster up` or list them with "
            "`fleet-cluster list`"
        ) from err
    return ClusterState.from_json(text, source=str(path))


def list_clusters(root: Path) -> list[str]:
    """Return the names of the clusters that have a state file under `root`."""
    if not root.is_dir():
        return []
    return sorted(
        entry.name for entry in root.iterdir() if (entry / STATE_FILE).is_file()
    )
