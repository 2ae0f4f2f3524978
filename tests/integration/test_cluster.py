"""Test hosts, EtcdServer and the fleet-cluster command against the real thing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetd.cluster import process
from fleetd.cluster.host import Host, HostSpec, boot_hosts
from fleetd.errors import ClusterError
from fleetd.etcdserver import EtcdServer

pytestmark = pytest.mark.integration


@pytest.fixture
def tmp_marker() -> Iterator[Path]:
    """A file in the machine's /tmp that booting a host must leave alone."""
    marker = Path("/tmp") / f"fleet-host-marker-{uuid.uuid4().hex}"
    marker.write_text("still here\n", encoding="utf-8")
    yield marker
    marker.unlink(missing_ok=True)


@pytest.fixture
def two_hosts(state_root: Path, tmp_marker: Path) -> Iterator[list[Host]]:
    name = f"h{uuid.uuid4().hex[:6]}"
    specs = [
        HostSpec(f"{name}-{n}", state_root / f"{name}-{n}", f"127.0.0.{20 + n}")
        for n in (1, 2)
    ]
    hosts = boot_hosts(specs)
    yield hosts
    for host in hosts:
        host.kill()


def pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def pids_in_namespace(namespace: str) -> list[int]:
    """Return the PIDs (as seen outside) of every process in a PID namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "pid") == namespace:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited meanwhile, or a process of the sandbox we may not see
    return found


def test_host_identity(two_hosts: list[Host]) -> None:
    machine_id = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    for host in two_hosts:
        inside_id = host.run(["cat", "/etc/machine-id"]).stdout.strip()
        assert inside_id == host.machine_id
        assert inside_id != machine_id
        assert host.run(["hostname"]).stdout.strip() == host.name
        assert host.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    assert two_hosts[0].machine_id != two_hosts[1].machine_id


def test_host_leaves_machine_tmp_alone(two_hosts: list[Host], tmp_marker: Path) -> None:
    assert tmp_marker.read_text(encoding="utf-8") == "still here\n"
    host = two_hosts[0]
    inside = host.run(["test", "-e", str(tmp_marker)], check=False)
    assert inside.returncode == 1, "the host's /tmp should be a private tmpfs"
    host.run(["sh", "-c", "echo private > /tmp/inside-only"])
    assert not Path("/tmp/inside-only").exists()


def test_host_runs_units_and_journal(two_hosts: list[Host]) -> None:
    host = two_hosts[0]
    unit = f"probe-{uuid.uuid4().hex[:6]}"
    message = f"hello from {unit}"
    host.run(["systemd-run", "--wait", f"--unit={unit}", "echo", message])

    journal = host.run(["journalctl", "--unit", unit, "--no-pager", "--output=cat"])
    assert message in journal.stdout.splitlines()
    other = two_hosts[1].run(["journalctl", "--unit", unit, "--no-pager"])
    assert message not in other.stdout


def test_host_kill_ends_every_process(two_hosts: list[Host]) -> None:
    host, other = two_hosts
    host.run(["systemd-run", "--unit=sleeper", "sleep", "infinity"])
    namespace = pid_namespace(host.pid)
    inside = pids_in_namespace(namespace)
    assert len(inside) >= 3, f"expected systemd, journald and sleep, found {inside}"

    host.kill()

    assert not host.alive()
    assert pids_in_namespace(namespace) == []
    for cgroup in host.cgroup_dirs:
        assert not cgroup.exists()
    assert other.alive()


def test_host_poweroff(two_hosts: list[Host]) -> None:
    host = two_hosts[0]
    host.poweroff()
    assert not host.alive()
    for cgroup in host.cgroup_dirs:
        assert not cgroup.exists()


def test_host_state_dir_in_tmp_rejected(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="mounts privately"):
        Host.boot("rejected", tmp_path / "host", "127.0.0.30")


def test_etcd_server_port_in_use(etcd_server: EtcdServer, tmp_path: Path) -> None:
    second = EtcdServer(tmp_path / "data", client_port=etcd_server.client_port)
    with pytest.raises(ClusterError, match=f"port {etcd_server.client_port} .* in use"):
        second.start()
    assert etcd_server.healthy()


def test_etcd_server_start_stop(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "data")
    server.start()
    pid = server.pid
    assert server.healthy()
    assert (tmp_path / "data.log").exists()

    server.stop()

    assert not server.running()
    assert not Path(f"/proc/{pid}").exists()
    assert not server.healthy()


def test_cluster_fixture_runs_fleetd(cluster: Callable[..., Any]) -> None:
    local = cluster(2)
    for host in local.hosts:
        state = host.run(["systemctl", "is-active", "fleet.service"], check=False)
        assert state.stdout.strip() == "active"


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetd.cluster", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "FLEET_CLUSTER_ROOT": str(root)},
        timeout=120,
    )


def findmnt_targets() -> set[str]:
    result = subprocess.run(
        ["findmnt", "--list", "--noheadings", "--output", "TARGET"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_cli_round_trip_leaves_nothing(state_root: Path) -> None:
    name = f"c{uuid.uuid4().hex[:6]}"
    mounts_before = findmnt_targets()

    up = run_cli(
        state_root, "up", "--name", name, "--hosts", "2", "--ip-base", "127.0.2.11"
    )
    assert up.returncode == 0, up.stderr
    cluster_state = json.loads((state_root / name / "state.json").read_text())
    namespaces = [pid_namespace(host["pid"]) for host in cluster_state["hosts"]]
    etcd = cluster_state["etcd"]
    try:
        executed = run_cli(
            state_root, "exec", "--name", name, "2", "--",
            "sh", "-c", 'hostname; echo "$FLEETCTL_ENDPOINT"; exit 3',
        )  # fmt: skip
        assert executed.returncode == 3
        assert executed.stdout.split() == [
            f"{name}-2",
            cluster_state["etcd"]["client_url"],
        ]

        status = run_cli(state_root, "status", "--name", name)
        assert status.returncode == 0, status.stderr
        rows = [line.split() for line in status.stdout.splitlines()[2:]]
        assert [row[0] for row in rows] == [f"{name}-1", f"{name}-2"]
        assert [row[-2:] for row in rows] == [["alive", "active"], ["alive", "active"]]

        killed = run_cli(state_root, "kill", "--name", name, "1")
        assert killed.returncode == 0, killed.stderr
        status = run_cli(state_root, "status", "--name", name)
        assert status.stdout.splitlines()[2].split()[-2:] == ["dead", "-"]
    finally:
        down = run_cli(state_root, "down", "--name", name)

    assert down.returncode == 0, down.stderr
    for namespace in namespaces:
        assert pids_in_namespace(namespace) == []
    assert not process.is_running(etcd["pid"], etcd["start_time"])
    assert not (state_root / name).exists()
    assert findmnt_targets() == mounts_before
