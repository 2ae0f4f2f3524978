"""fleetd's API in test hosts: fleetctl's default driver on /var/run/fleet.sock.

Each host's fleetd serves the API on the socket in its private /run, so
fleetctl inside a host reaches that host's fleetd with no options at all.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetd.cluster.host import Host
from tests.integration.conftest import FLEETCTL, LocalCluster

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "units"


def fleetctl_in(host: Host, *args: str, check: bool = True) -> str:
    """Run fleetctl in ``host`` with its defaults: the API driver and socket."""
    return host.run([FLEETCTL, *args], check=check, timeout=60).stdout


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def test_default_driver_in_hosts(cluster: Callable[..., LocalCluster]) -> None:
    fleet = cluster(2)
    first, second = fleet.hosts

    def both_listed() -> bool:
        result = first.run([FLEETCTL, "list-machines", "--no-legend"], check=False)
        return result.returncode == 0 and len(result.stdout.splitlines()) == 2

    wait_until(both_listed, 30, "two machines listed over the API")
    mode = first.run(["stat", "-c", "%a %F", "/var/run/fleet.sock"]).stdout
    assert mode.strip() == "600 socket"

    unit = str(UNITS / "hello-world.service")
    started = fleetctl_in(first, "start", "--block-attempts=15", unit)
    assert "Unit hello-world.service launched on" in started

    rows = fleetctl_in(second, "list-units", "--no-legend", "--full")
    assert rows.startswith("hello-world.service\t")
    assert "\tactive\trunning" in rows

    # From either host, the journal arrives through that host's fleetd.
    def journal_has_hello(host: Host) -> bool:
        text = fleetctl_in(host, "journal", "--lines", "5", "hello-world.service")
        return "Hello World" in text

    for host in fleet.hosts:
        has_hello = functools.partial(journal_has_hello, host)
        wait_until(has_hello, 20, f"journal on {host.name}")

    destroyed = fleetctl_in(second, "destroy", "hello-world.service")
    assert destroyed.startswith("Destroyed hello-world.service\n")
    listed = fleetctl_in(first, "list-unit-files", "--no-legend")
    assert listed == ""
