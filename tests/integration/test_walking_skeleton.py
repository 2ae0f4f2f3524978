"""The main job end to end: three hosts with real systemd, real etcd, fleetctl.

hello-world runs on one machine and its journal reaches fleetctl; three
mutually conflicting nginx units land on three machines and serve pages;
destroy removes them from systemd and etcd; a killed host's unit moves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetd.cluster.host import Host
from tests.integration.conftest import FLEETCTL, LocalCluster

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "units"
AGENT_TTL = 5.0


def fleetctl_environment(cluster: LocalCluster) -> dict[str, str]:
    return {
        **os.environ,
        "FLEETCTL_DRIVER": "etcd",
        "FLEETCTL_ENDPOINT": cluster.etcd_url,
        "FLEETCTL_ETCD_KEY_PREFIX": cluster.key_prefix,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def unit_rows(cluster: LocalCluster) -> dict[str, tuple[str, str, str]]:
    """Return unit name -> (machine ID, ACTIVE, SUB) from fleetctl list-units."""
    listing = cluster.fleetctl(
        ["list-units", "--no-legend", "--full", "--fields", "unit,machine,active,sub"]
    )
    rows: dict[str, tuple[str, str, str]] = {}
    for line in listing.stdout.splitlines():
        unit, machine, active, sub = line.split()
        rows[unit] = (machine.split("/")[0], active, sub)
    return rows


def host_of(cluster: LocalCluster, machine_id: str) -> Host:
    return next(host for host in cluster.hosts if host.machine_id == machine_id)


def systemd_state(host: Host, unit: str) -> str:
    return host.run(["systemctl", "is-active", unit], check=False).stdout.strip()


def nginx_unit(tmp_path: Path, number: int, port: int) -> Path:
    """Copy units/nginx.N.service, listening on a free port of this test's."""
    text = (UNITS / f"nginx.{number}.service").read_text()
    path = tmp_path / f"nginx.{number}.service"
    path.write_text(text.replace(f"127.0.0.1:1808{number}", f"127.0.0.1:{port}"))
    return path


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return str(response.read().decode())


def test_walking_skeleton(cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    fleet = cluster(3, agent_ttl=f"{AGENT_TTL:g}s")
    wait_until(
        lambda: (
            len(fleet.fleetctl(["list-machines", "--no-legend"]).stdout.split("\n")) > 3
        ),
        30,
        "three machines",
    )

    # hello-world: submitted, started, active on exactly one machine.
    fleet.fleetctl(["submit", str(UNITS / "hello-world.service")])
    fleet.fleetctl(["start", "hello-world.service"])
    machine, active, sub = unit_rows(fleet)["hello-world.service"]
    assert (active, sub) == ("active", "running")
    running_host = host_of(fleet, machine)
    assert systemd_state(running_host, "hello-world.service") == "active"
    for other in fleet.hosts:
        if other is not running_host:
            assert systemd_state(other, "hello-world.service") == "inactive"

    # Its journal comes from that host, read from this machine.
    def journal_has_hello() -> bool:
        lines = fleet.fleetctl(["journal", "--lines", "5", "hello-world.service"])
        return lines.stdout.count("Hello World") >= 3

    wait_until(journal_has_hello, 20, "three Hello World lines in the journal")
    journal = fleet.fleetctl(["journal", "--lines", "3", "hello-world.service"])
    assert running_host.name in journal.stdout
    assert len(journal.stdout.strip().splitlines()) == 3

    # journal -f keeps streaming new lines until fleetctl is stopped.
    follow = subprocess.Popen(
        [FLEETCTL, "journal", "-f", "--lines", "0", "hello-world.service"],
        stdout=subprocess.PIPE,
        text=True,
        env=fleetctl_environment(fleet),
    )
    with follow:
        assert follow.stdout is not None
        streamed = [follow.stdout.readline() for _ in range(3)]
        follow.terminate()
    assert all("Hello World" in line for line in streamed)

    # restart stops and starts it again in place.
    def main_pid() -> str:
        show = ["systemctl", "show", "--property=MainPID", "--value"]
        return running_host.run([*show, "hello-world.service"]).stdout.strip()

    pid_before = main_pid()
    fleet.fleetctl(["restart", "hello-world.service"])
    assert unit_rows(fleet)["hello-world.service"] == (machine, "active", "running")
    assert main_pid() != pid_before

    # A unit that fails to start makes start exit 1 instead of waiting. The
    # failure is in ExecStartPre, so the start job itself fails: a service
    # whose ExecStart exits at once is active for a moment, and systemd's own
    # start reports success for it.
    failing = tmp_path / "fails.service"
    failing.write_text(
        "[Service]\nExecStartPre=/bin/false\nExecStart=/bin/sleep infinity\n"
    )
    started_failing = fleet.fleetctl(["start", str(failing)], check=False)
    assert started_failing.returncode == 1
    assert "fails.service failed on" in started_failing.stderr
    assert "fleetctl journal fails.service" in started_failing.stderr
    fleet.fleetctl(["destroy", "fails.service"])

    # Three mutually conflicting nginx units, one command, three machines.
    ports = [free_port() for _ in range(3)]
    files = [
        nginx_unit(tmp_path, n, port) for n, port in zip((1, 2, 3), ports, strict=True)
    ]
    fleet.fleetctl(["start", *map(str, files)])
    rows = unit_rows(fleet)
    nginx_machines = {rows[f"nginx.{n}.service"][0] for n in (1, 2, 3)}
    assert len(nginx_machines) == 3
    for n, port in zip((1, 2, 3), ports, strict=True):
        placed_on = host_of(fleet, rows[f"nginx.{n}.service"][0])
        assert rows[f"nginx.{n}.service"][1:] == ("active", "running")
        assert fetch(port) == f"nginx.{n}@{placed_on.name}"

    # destroy removes them from systemd, the hosts' unit directories and etcd.
    destroyed = fleet.fleetctl(["destroy", "nginx*"])
    assert destroyed.stdout.count("Destroyed nginx.") == 3
    assert set(unit_rows(fleet)) == {"hello-world.service"}
    files_left = fleet.fleetctl(["list-unit-files", "--no-legend"]).stdout
    assert "nginx" not in files_left
    for host in fleet.hosts:
        listed = host.run(["ls", "/run/fleet/units"]).stdout.split()
        assert not [name for name in listed if name.startswith("nginx")]
        for n in (1, 2, 3):
            assert systemd_state(host, f"nginx.{n}.service") == "inactive"

    # Killing the host that runs hello-world moves it to another host.
    running_host.kill()
    started = time.monotonic()

    def moved() -> bool:
        row = unit_rows(fleet).get("hello-world.service")
        return (
            row is not None and row[0] != machine and row[1:] == ("active", "running")
        )

    wait_until(moved, AGENT_TTL + 20, "hello-world to run on another host")
    elapsed = time.monotonic() - started
    print(f"hello-world active elsewhere {elapsed:.1f}s after the kill")
    new_host = host_of(fleet, unit_rows(fleet)["hello-world.service"][0])
    assert new_host is not running_host
    assert systemd_state(new_host, "hello-world.service") == "active"
    machines = fleet.fleetctl(["list-machines", "--no-legend", "--full"]).stdout
    assert machine not in machines
