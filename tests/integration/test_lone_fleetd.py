"""A lone fleetd with no etcd configured starts an etcd of its own.

The host boots in a network namespace of the test's own, so the etcd that
fleetd starts on 127.0.0.1:2379 is private to it and cannot meet any other
etcd of the machine.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetd.cluster import fleet
from fleetd.cluster.host import Host

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "units"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"fleet-lone-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def lone_host(state_root: Path, netns: str) -> Iterator[Host]:
    host = Host.boot("lone", state_root / "lone", "127.0.0.1", netns=netns)
    try:
        yield host
    finally:
        print(fleet.journal_tail(host, lines=40))
        host.kill()


def test_lone_fleetd_runs_its_own_etcd(lone_host: Host, state_root: Path) -> None:
    etcd_dir = state_root / "etcd"
    environment = {"FLEET_LOCAL_ETCD_DIR": str(etcd_dir)}
    text = fleet.unit_text(fleet.default_fleetd(), environment)
    lone_host.run(["sh", "-c", 'cat > "$1"', "sh", fleet.UNIT_PATH], input=text)
    lone_host.run(["systemctl", "daemon-reload"])
    lone_host.run(["systemctl", "start", fleet.FLEET_UNIT])

    fleetctl = str(fleet.default_fleetd().parent / "fleetctl")
    deadline = time.monotonic() + 30
    machines = ""
    while time.monotonic() < deadline:
        listing = lone_host.run(
            [fleetctl, "--driver", "etcd", "list-machines", "--no-legend", "--full"],
            check=False,
        )
        machines = listing.stdout
        if lone_host.machine_id in machines:
            break
        time.sleep(0.3)
    assert lone_host.machine_id in machines
    assert (etcd_dir / "member").is_dir()

    started = lone_host.run(
        [
            fleetctl,
            "--driver",
            "etcd",
            "start",
            "--block-attempts",
            "10",
            str(UNITS / "hello-world.service"),
        ]
    )
    assert "launched" in started.stdout
    state = lone_host.run(["systemctl", "is-active", "hello-world.service"])
    assert state.stdout.strip() == "active"
