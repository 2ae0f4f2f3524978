"""fleetctl status on test hosts, with the etcd driver and with the API driver.

One cluster of three hosts serves every case. fleetctl runs on the machine
outside the hosts with the etcd driver, so every unit is remote and its
status comes over the peer channel. It also runs inside hosts, with the API
driver through that host's fleetd, and with the etcd driver for a unit on
the same host.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetd.cluster.host import Host
from tests.integration.conftest import FLEETCTL, LocalCluster

pytestmark = pytest.mark.integration

SERVICE = "[Unit]\nDescription=Sleeps\n\n[Service]\nExecStart=/bin/sleep 1000\n"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def over_api(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """Run fleetctl in ``host`` with its defaults: the API driver and socket."""
    return host.run([FLEETCTL, *args], check=False, timeout=90)


def headings(output: str) -> list[tuple[str, str]]:
    """Return (machine ID, IP) of each section heading, in order."""
    return re.findall(r"^Machine ([0-9a-f]{32}) \(([0-9.]+)\):$", output, re.M)


def test_status(cluster: Callable[..., LocalCluster], tmp_path: Path) -> None:
    fleet = cluster(3)
    first, second, third = fleet.hosts
    (tmp_path / "web.service").write_text(
        SERVICE + f"\n[X-Fleet]\nMachineID={first.machine_id}\n"
    )
    (tmp_path / "everywhere.service").write_text(SERVICE + "\n[X-Fleet]\nGlobal=true\n")
    (tmp_path / "idle.service").write_text(SERVICE)
    (tmp_path / "loaded.service").write_text(
        SERVICE + f"\n[X-Fleet]\nMachineID={second.machine_id}\n"
    )

    def three_machines() -> bool:
        listed = fleet.fleetctl(["list-machines", "--no-legend"], check=False)
        return listed.returncode == 0 and len(listed.stdout.splitlines()) == 3

    wait_until(three_machines, 30, "three machines listed")
    units = [str(tmp_path / name) for name in ("web.service", "everywhere.service")]
    fleet.fleetctl(["start", "--block-attempts=30", *units])
    fleet.fleetctl(["submit", str(tmp_path / "idle.service")])
    fleet.fleetctl(["load", "--block-attempts=30", str(tmp_path / "loaded.service")])

    # A unit on another machine, over the peer channel from outside the hosts.
    web = fleet.fleetctl(["status", "--ssh-port=2222", "web.service"], check=False)
    assert web.returncode == 0, web.stderr
    assert "web.service - Sleeps" in web.stdout
    assert "Active: active (running)" in web.stdout
    assert web.stderr == ""
    assert headings(web.stdout) == []

    # The same unit over the API from another host, and locally on its own host.
    web_api = over_api(second, "status", "web.service")
    assert web_api.returncode == 0, web_api.stderr
    assert "Active: active (running)" in web_api.stdout
    web_local = fleet.fleetctl(["status", "web.service"], check=False, host=first)
    assert web_local.returncode == 0, web_local.stderr
    assert "Active: active (running)" in web_local.stdout
    web_local_api = over_api(first, "status", "web.service")
    assert web_local_api.returncode == 0, web_local_api.stderr
    assert "Active: active (running)" in web_local_api.stdout

    # A global unit: one section per machine, once all three publish a state.
    expected = sorted((host.machine_id, host.public_ip) for host in fleet.hosts)

    def global_on_three() -> bool:
        result = fleet.fleetctl(["status", "everywhere.service"], check=False)
        return headings(result.stdout) == expected

    wait_until(global_on_three, 30, "everywhere.service status from three machines")
    for result in (
        fleet.fleetctl(["status", "everywhere.service"], check=False),
        over_api(third, "status", "everywhere.service"),
    ):
        assert result.returncode == 0, result.stderr
        assert headings(result.stdout) == expected
        assert result.stdout.count("Active: active (running)") == 3
        assert result.stdout.count("\n\nMachine ") == 2

    # Unknown and only-submitted units: exit 1 with the original's messages.
    def over_etcd(*args: str) -> subprocess.CompletedProcess[str]:
        return fleet.fleetctl(args, check=False)

    def over_api_of_second(*args: str) -> subprocess.CompletedProcess[str]:
        return over_api(second, *args)

    for run in (over_etcd, over_api_of_second):
        unknown = run("status", "nope.service")
        assert unknown.returncode == 1
        assert unknown.stdout == ""
        assert unknown.stderr.strip() == "Unit nope.service does not exist."
        idle = run("status", "idle")
        assert idle.returncode == 1
        assert idle.stderr.strip() == (
            "Unit idle.service does not appear to be loaded."
        )

    # A loaded unit is inactive in systemd, so systemctl status exits 3. With
    # two units the sections are separated by a blank line, and the exit
    # status is the first non-zero one.
    for both in (
        fleet.fleetctl(["status", "web.service", "loaded.service"], check=False),
        over_api(third, "status", "web.service", "loaded.service"),
    ):
        assert both.returncode == 3, both.stderr
        # systemctl's own output has blank lines, so split at the second unit.
        title = both.stdout.index("loaded.service - Sleeps")
        start = both.stdout.rindex("\n", 0, title) + 1
        assert both.stdout[start - 2 : start] == "\n\n"
        web_part, loaded_part = both.stdout[:start], both.stdout[start:]
        assert "Active: active (running)" in web_part
        assert "loaded.service - Sleeps" in loaded_part
        assert "Active: inactive (dead)" in loaded_part


def test_global_status_with_dead_machine(
    cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    """A killed host stays listed until its TTL ends; the live ones still print."""
    fleet = cluster(3, agent_ttl="120s")
    (tmp_path / "everywhere.service").write_text(SERVICE + "\n[X-Fleet]\nGlobal=true\n")
    expected = sorted((host.machine_id, host.public_ip) for host in fleet.hosts)

    def global_on_three() -> bool:
        result = fleet.fleetctl(["status", "everywhere.service"], check=False)
        return headings(result.stdout) == expected

    fleet.fleetctl(["start", str(tmp_path / "everywhere.service")])
    wait_until(global_on_three, 60, "everywhere.service status from three machines")

    # Kill the host whose section would come in the middle.
    dead = sorted(fleet.hosts, key=lambda host: host.machine_id)[1]
    dead.kill()
    live = [pair for pair in expected if pair[0] != dead.machine_id]
    api_host = next(host for host in fleet.hosts if host is not dead)

    for result in (
        fleet.fleetctl(["status", "everywhere.service"], check=False),
        over_api(api_host, "status", "everywhere.service"),
    ):
        assert result.returncode == 1, result.stderr
        assert headings(result.stdout) == live
        assert result.stdout.count("Active: active (running)") == 2
        errors = result.stderr.splitlines()
        assert len(errors) == 1
        assert errors[0].startswith(
            "Error: cannot run systemctl status everywhere.service on machine "
            f"{dead.machine_id} at {dead.public_ip}"
        )

    for result in (
        fleet.fleetctl(["journal", "everywhere.service"], check=False),
        over_api(api_host, "journal", "everywhere.service"),
    ):
        assert result.returncode == 1, result.stderr
        # The dead machine's heading prints before its journal fails.
        assert headings(result.stdout) == expected
        errors = result.stderr.splitlines()
        assert len(errors) == 1
        assert dead.machine_id in errors[0]
        assert errors[0].startswith("Error: ")
