"""Three bare test hosts become a fleet cluster through fleet-cloudinit.

Each host runs the processor on a cloud-config like CoreOS's documented
one: etcd finds its peers through a discovery service on loopback, fleetd
starts, fleetctl lists three machines with their metadata and runs a unit.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fleetd.cloudinit.discovery import DiscoveryServer, new_discovery_url
from fleetd.cluster.host import Host, HostSpec, boot_hosts
from fleetd.errors import CloudConfigError
from fleetd.etcdserver import EtcdServer, free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
CLOUDINIT = str(BIN / "fleet-cloudinit")
FLEETCTL = str(BIN / "fleetctl")

CLOUD_CONFIG = """\
#cloud-config
coreos:
  etcd:
    discovery: {discovery}
    addr: $private_ipv4:{client_port}
    peer-addr: $private_ipv4:{peer_port}
  fleet:
    public-ip: $public_ipv4
    metadata: role=web,region=test
  units:
    - name: etcd.service
      command: start
    - name: fleet.service
      command: start
"""

HELLO_UNIT = """\
[Unit]
Description=hello from a provisioned cluster

[Service]
ExecStart=/bin/sh -c 'while true; do echo hello; sleep 1; done'
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.fixture
def discovery(state_root: Path) -> Iterator[DiscoveryServer]:
    server = DiscoveryServer(state_root / "discovery-etcd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bare_hosts(
    state_root: Path, has_failed: Callable[[], bool]
) -> Iterator[list[Host]]:
    """Three booted hosts with nothing of fleet or etcd running on them."""
    base = f"127.{random.randint(100, 199)}.{random.randint(0, 255)}"
    tag = os.urandom(3).hex()
    specs = [
        HostSpec(f"c{tag}-{n}", state_root / f"host{n}", f"{base}.{10 + n}")
        for n in (1, 2, 3)
    ]
    hosts = boot_hosts(specs)
    yield hosts
    for host in hosts:
        if has_failed():
            for unit in ("etcd.service", "fleet.service"):
                journal = host.run(
                    ["journalctl", "-u", unit, "--no-pager", "-n", "40"], check=False
                )
                print(f"--- {unit} on {host.name} ---\n{journal.stdout}")
        host.kill()
    for host in hosts:
        # The shipped etcd.service keeps its data under the machine ID.
        shutil.rmtree(Path("/var/lib/etcd") / host.machine_id, ignore_errors=True)


def fleetctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETCTL, "--driver=etcd", f"--endpoint={endpoint}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL")},
    )


def provision(host: Host, config: Path) -> subprocess.CompletedProcess[str]:
    """Run the processor inside ``host`` with its address as metadata."""
    return host.run(
        [CLOUDINIT, "--from-file", str(config), "--verbose"],
        check=False,
        timeout=120,
        env={
            "COREOS_PRIVATE_IPV4": host.public_ip,
            "COREOS_PUBLIC_IPV4": host.public_ip,
        },
    )


def test_bare_hosts_become_cluster(
    bare_hosts: list[Host], discovery: DiscoveryServer, state_root: Path
) -> None:
    url = new_discovery_url(discovery.url, size=3)
    client_port = free_port()
    peer_port = free_port(exclude={client_port})
    config = state_root / "cloud-config.yaml"
    config.write_text(
        CLOUD_CONFIG.format(discovery=url, client_port=client_port, peer_port=peer_port)
    )

    check = subprocess.run(
        [CLOUDINIT, "--from-file", str(config), "--validate"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda host: provision(host, config), bare_hosts))
    for host, result in zip(bare_hosts, results, strict=True):
        assert result.returncode == 0, f"{host.name}: {result.stderr}"
        assert "start etcd.service" in result.stderr
        assert "start fleet.service" in result.stderr

    endpoint = f"http://{bare_hosts[0].public_ip}:{client_port}"

    def members_registered() -> bool:
        with urllib.request.urlopen(url, timeout=5) as reply:
            nodes = json.loads(reply.read())["node"].get("nodes", [])
        return len([node for node in nodes if "_config" not in node["key"]]) == 3

    wait_until(members_registered, 60, "three etcd members in the discovery token")

    def machines() -> list[str]:
        listing = fleetctl(
            endpoint, "list-machines", "--no-legend", "--full", "--fields=ip,metadata"
        )
        return sorted(listing.stdout.splitlines()) if listing.returncode == 0 else []

    wait_until(lambda: len(machines()) == 3, 90, "three machines in list-machines")
    expected = sorted(f"{host.public_ip}\tregion=test,role=web" for host in bare_hosts)
    assert [" ".join(row.split()) for row in machines()] == [
        " ".join(row.split()) for row in expected
    ]

    unit = state_root / "hello-cloudinit.service"
    unit.write_text(HELLO_UNIT)
    started = fleetctl(endpoint, "start", str(unit))
    assert started.returncode == 0, started.stderr

    def running_on() -> list[Host]:
        return [
            host
            for host in bare_hosts
            if host.run(
                ["systemctl", "is-active", "hello-cloudinit.service"], check=False
            ).stdout.strip()
            == "active"
        ]

    wait_until(lambda: len(running_on()) == 1, 60, "hello-cloudinit.service to run")
    units = fleetctl(endpoint, "list-units", "--no-legend", "--fields=unit,active,sub")
    assert units.stdout.split() == ["hello-cloudinit.service", "active", "running"]


def test_second_run_changes_no_file(
    bare_hosts: list[Host], discovery: DiscoveryServer, state_root: Path
) -> None:
    url = new_discovery_url(discovery.url, size=1)
    config = state_root / "cloud-config.yaml"
    config.write_text(
        CLOUD_CONFIG.format(
            discovery=url, client_port=free_port(), peer_port=free_port()
        )
    )
    host = bare_hosts[0]
    broken = state_root / "broken.yaml"
    broken.write_text(config.read_text() + "    - name: web\n")
    rejected = provision(host, broken)
    assert rejected.returncode == 1
    assert "nothing was changed" in rejected.stderr
    listing = host.run(["ls", "/run/systemd/system"], check=True).stdout.split()
    assert "etcd.service.d" not in listing

    first = provision(host, config)
    assert first.returncode == 0, first.stderr
    assert "wrote /run/systemd/system/etcd.service.d/20-cloudinit.conf" in first.stderr

    second = provision(host, config)
    assert second.returncode == 0, second.stderr
    assert "wrote" not in second.stderr
    assert "reloaded systemd" in second.stderr

    def active(unit: str) -> bool:
        state = host.run(["systemctl", "is-active", unit], check=False)
        return state.stdout.strip() == "active"

    wait_until(lambda: active("etcd.service"), 60, "etcd.service to be active")
    wait_until(lambda: active("fleet.service"), 60, "fleet.service to be active")


def test_discovery_token_sets_size(discovery: DiscoveryServer) -> None:
    url = new_discovery_url(discovery.url, size=5, token="f" * 32)
    assert url == f"{discovery.url}/v2/keys/discovery/{'f' * 32}"
    with urllib.request.urlopen(url + "/_config/size", timeout=5) as reply:
        assert json.loads(reply.read())["node"]["value"] == "5"


def test_discovery_needs_v2_api(etcd_server: EtcdServer) -> None:
    with pytest.raises(CloudConfigError, match="start that etcd with --enable-v2"):
        new_discovery_url(etcd_server.client_url, size=3)
