"""fleetctl journal of a global unit on test hosts, over both drivers.

One cluster of two hosts serves every case. With the etcd driver fleetctl
runs on the machine outside the hosts, so both journals come over the peer
channel. With the API driver it runs inside the first host, whose fleetd
reads its own journal and fetches the second host's over the peer channel.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import FLEETCTL, LocalCluster

pytestmark = pytest.mark.integration

MARKER = "journal-marker-of-everywhere"
SERVICE = (
    "[Unit]\nDescription=Prints a line and sleeps\n\n"
    f'[Service]\nExecStart=/bin/sh -c "echo {MARKER}; exec /bin/sleep 1000"\n\n'
    "[X-Fleet]\nGlobal=true\n"
)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def sections(output: str) -> dict[str, str]:
    """Split journal output at its headings: machine ID to that section's text."""
    parts = re.split(r"^Machine ([0-9a-f]{32}) \([0-9.]+\):$", output, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def read_until(process: subprocess.Popen[Any], text: str, timeout: float) -> str:
    """Return the stdout of ``process`` up to and including the first ``text``."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"timed out after {timeout:g}s waiting for {text!r}: {seen!r}")
        readable, _, _ = select.select([descriptor], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(descriptor, 65536)
        if not chunk:
            pytest.fail(f"output ended before {text!r}: {seen!r}")
        seen += chunk
    return seen.decode()


def test_journal_of_global_unit(
    cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    fleet = cluster(2)
    first, second = fleet.hosts
    expected = {host.machine_id for host in fleet.hosts}
    (tmp_path / "everywhere.service").write_text(SERVICE)

    def two_machines() -> bool:
        listed = fleet.fleetctl(["list-machines", "--no-legend"], check=False)
        return listed.returncode == 0 and len(listed.stdout.splitlines()) == 2

    wait_until(two_machines, 30, "two machines listed")
    fleet.fleetctl(["start", str(tmp_path / "everywhere.service")])

    # Over the etcd driver from outside: one section per machine, each with
    # the line the unit printed on that machine.
    def marker_in_both() -> bool:
        result = fleet.fleetctl(["journal", "everywhere.service"], check=False)
        found = sections(result.stdout)
        return set(found) == expected and all(MARKER in text for text in found.values())

    wait_until(marker_in_both, 60, "the marker in the journal of both machines")
    result = fleet.fleetctl(["journal", "--output=cat", "everywhere.service"])
    assert result.stderr == ""
    assert sorted(sections(result.stdout)) == sorted(expected)

    # Over the API driver inside the first host: the same sections.
    over_api = first.run(
        [FLEETCTL, "journal", "--lines=20", "everywhere.service"],
        check=False,
        timeout=90,
    )
    assert over_api.returncode == 0, over_api.stderr
    found = sections(over_api.stdout)
    assert set(found) == expected
    for machine_id, text in found.items():
        assert MARKER in text, machine_id

    # -f needs --machine, over both drivers.
    refused = fleet.fleetctl(["journal", "-f", "everywhere.service"], check=False)
    assert refused.returncode == 2
    assert "--machine ID" in refused.stderr
    refused_api = first.run(
        [FLEETCTL, "journal", "-f", "everywhere.service"], check=False, timeout=90
    )
    assert refused_api.returncode == 2
    assert "--machine ID" in refused_api.stderr

    # -f --machine with a prefix of the second host's ID streams that journal.
    process = first.popen(
        [
            FLEETCTL,
            "journal",
            "-f",
            f"--machine={second.machine_id[:8]}",
            "everywhere.service",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=False,
    )
    try:
        streamed = read_until(process, MARKER, 60)
        assert streamed.startswith(f"Machine {second.machine_id} (")
        assert process.poll() is None
    finally:
        # The host's teardown ends fleetctl inside it if nsenter leaves it behind.
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
