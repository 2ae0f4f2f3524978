"""Fixtures for integration tests: local fleet clusters of test hosts.

Each test's hosts run fleetd against the session's etcd under the test's own
key prefix, get random names and a random block of loopback addresses, and
are killed at the end whatever happens.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetd.cluster import fleet
from fleetd.cluster.cluster import boot_fleet_hosts
from fleetd.cluster.fleet import FleetOptions
from fleetd.cluster.host import Host
from fleetd.etcdserver import EtcdServer

# Host state lives here because a host's own /tmp, /var/tmp and /run are
# private mounts that would hide files the boot script reads.
STATE_ROOT = Path(
    os.environ.get("FLEET_TEST_STATE_ROOT", "/var/lib/fleet-cluster-tests")
)

FLEETCTL = str(Path(sys.executable).parent / "fleetctl")


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A fresh directory for this test's host state, removed afterwards."""
    path = STATE_ROOT / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class LocalCluster:
    """Hosts running fleetd against the test's etcd and key prefix."""

    options: FleetOptions
    state_dir: Path
    hosts: list[Host] = field(default_factory=list)

    @property
    def etcd_url(self) -> str:
        return self.options.etcd_url

    @property
    def key_prefix(self) -> str:
        return self.options.key_prefix

    def fleetctl(
        self, args: Sequence[str], *, check: bool = True, host: Host | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run fleetctl against the cluster, on the machine or inside `host`."""
        environment = {
            "FLEETCTL_DRIVER": "etcd",
            "FLEETCTL_ENDPOINT": self.etcd_url,
            "FLEETCTL_ETCD_KEY_PREFIX": self.key_prefix,
        }
        if host is not None:
            return host.run([FLEETCTL, *args], check=check, env=environment)
        return subprocess.run(
            [FLEETCTL, *args],
            check=check,
            capture_output=True,
            text=True,
            env={**os.environ, **environment},
        )


@pytest.fixture
def cluster(
    etcd_server: EtcdServer,
    etcd_prefix: str,
    state_root: Path,
    has_failed: Callable[[], bool],
) -> Iterator[Callable[..., LocalCluster]]:
    """A factory: cluster(3) boots three hosts running fleetd; call it once.

    Keyword arguments agent_ttl and metadata set the FleetOptions fields of
    those names. On failure the teardown prints each host's fleet.service
    journal before killing the hosts.
    """
    started: list[LocalCluster] = []

    def start(
        count: int = 3,
        *,
        agent_ttl: str = fleet.DEFAULT_AGENT_TTL,
        metadata: str = fleet.DEFAULT_METADATA,
    ) -> LocalCluster:
        options = FleetOptions(
            etcd_url=etcd_server.client_url,
            key_prefix=etcd_prefix,
            agent_ttl=agent_ttl,
            metadata=metadata,
        )
        local = LocalCluster(options=options, state_dir=state_root)
        started.append(local)
        # Random names and addresses keep concurrent test runs apart.
        name = f"t{uuid.uuid4().hex[:6]}"
        ip_base = f"127.{random.randint(100, 199)}.{random.randint(0, 255)}.11"
        local.hosts = boot_fleet_hosts(name, count, state_root, options, ip_base)
        return local

    yield start

    for local in started:
        if has_failed():
            for host in local.hosts:
                print(f"--- journal of fleet.service on {host.name} ---")
                print(fleet.journal_tail(host, lines=50))
        for host in local.hosts:
            host.kill()
