"""Every [X-Fleet] option on test hosts, through fleetctl as a subprocess.

Each test boots one cluster and runs several checks on it, because a boot
costs seconds. Host n gets the metadata ``n=<n>`` (and ``region=r<n>`` in
the first test), so a unit can aim at one host by metadata. fleetctl runs
on the machine with the etcd driver, or inside a host with its default API
driver. Unit files live under the test's state directory, because a host's
own /tmp hides the machine's.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence

import pytest

from fleetd.cluster.host import Host
from tests.integration.conftest import FLEETCTL, LocalCluster

pytestmark = pytest.mark.integration

SERVICE = "[Service]\nExecStart=/bin/sleep infinity\n"
# A start of a unit that runs gets this many 2-second attempts.
START_ATTEMPTS = "--block-attempts=15"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def write_unit(fleet: LocalCluster, name: str, fleet_section: str = "") -> str:
    """Write a unit file that sleeps, with ``fleet_section`` as [X-Fleet]."""
    directory = fleet.state_dir / "units"
    directory.mkdir(exist_ok=True)
    text = SERVICE
    if fleet_section:
        text += f"\n[X-Fleet]\n{fleet_section}\n"
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def etcdctl(fleet: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """Run fleetctl on the machine with the etcd driver; never raises on exit 1."""
    return fleet.fleetctl(list(args), check=False)


def apictl(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    """Run fleetctl inside ``host`` with its defaults: the API on its socket."""
    return host.run([FLEETCTL, *args], check=False, timeout=90)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}: {result.stderr}"
    )
    return result.stdout


def active_units(fleet: LocalCluster) -> dict[str, list[str]]:
    """Return the machine IDs on which each unit is active, from list-units."""
    rows = ok(
        etcdctl(
            fleet, "list-units", "--no-legend", "--full", "--fields=unit,machine,active"
        )
    )
    found: dict[str, list[str]] = {}
    for row in rows.splitlines():
        unit, machine, active = row.split()
        if active == "active":
            found.setdefault(unit, []).append(machine.split("/")[0])
    return found


def placements(fleet: LocalCluster) -> dict[str, str]:
    """Return each placed unit's machine ID, from list-unit-files."""
    rows = ok(
        etcdctl(
            fleet, "list-unit-files", "--no-legend", "--full", "--fields=unit,target"
        )
    )
    result = {}
    for row in rows.splitlines():
        unit, target = row.split()
        if target not in {"-", "global"}:
            result[unit] = target.split("/")[0]
    return result


def wait_machines(fleet: LocalCluster, count: int) -> None:
    def listed() -> bool:
        result = etcdctl(fleet, "list-machines", "--no-legend")
        return result.returncode == 0 and len(result.stdout.splitlines()) == count

    wait_until(listed, 30, f"{count} machines in list-machines")


def wait_api(host: Host) -> None:
    def answers() -> bool:
        return apictl(host, "list-machines", "--no-legend").returncode == 0

    wait_until(answers, 30, f"the API of {host.name}")


def start_all(fleet: LocalCluster, *paths: str) -> str:
    return ok(etcdctl(fleet, "start", START_ATTEMPTS, *paths))


def test_machine_rules_and_explain(cluster: Callable[..., LocalCluster]) -> None:
    """MachineID, MachineMetadata, templates, unplaceable units and explain."""
    fleet = cluster(3, metadata="region=r{n},n={n}")
    hosts = fleet.hosts
    ids = [host.machine_id for host in hosts]
    wait_machines(fleet, 3)

    # MachineID, full and 8 characters.
    full = write_unit(fleet, "pin-full.service", f"MachineID={ids[1]}")
    short = write_unit(fleet, "pin-short.service", f"MachineID={ids[2][:8]}")
    # MachineMetadata: OR within a key, AND across keys, and the operators.
    metadata_units = {
        "meta-or-and.service": ('"region=r1" "region=r3" "n!=1"', ids[2]),
        "meta-lt.service": ("n<2", ids[0]),
        "meta-range.service": ('"n>=2" "n<=2"', ids[1]),
        "meta-gt.service": ("n>2", ids[2]),
        "meta-and.service": ('"region=r2" "n=2"', ids[1]),
    }
    metadata_paths = [
        write_unit(fleet, name, f"MachineMetadata={condition}")
        for name, (condition, _) in metadata_units.items()
    ]
    # A template whose instances pick their host by %i.
    template = write_unit(fleet, "pick@.service", "MachineMetadata=n=%i")
    start_all(fleet, full, short, *metadata_paths)
    ok(etcdctl(fleet, "submit", template))
    start_all(fleet, "pick@1.service", "pick@3")

    active = active_units(fleet)
    assert active["pin-full.service"] == [ids[1]]
    assert active["pin-short.service"] == [ids[2]]
    for name, (_, machine_id) in metadata_units.items():
        assert active[name] == [machine_id], name
    assert active["pick@1.service"] == [ids[0]]
    assert active["pick@3.service"] == [ids[2]]
    assert "pick@.service" not in active

    # An unplaceable unit: start exits 1 with the engine's reason, over the
    # etcd driver after its block attempts and over the API driver after
    # the default bound, both running at once.
    eu = write_unit(fleet, "eu.service", "MachineMetadata=region=eu")
    eu_api = write_unit(fleet, "eu-api.service", "MachineMetadata=region=eu")
    wait_api(hosts[0])
    api_start = hosts[0].popen(
        [FLEETCTL, "start", eu_api], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    etcd_start = etcdctl(fleet, "start", "--block-attempts=3", eu)
    _, api_err = api_start.communicate(timeout=90)

    reason = "no machine has region=eu (3 machines checked)"
    assert etcd_start.returncode == 1
    assert f"the engine could not place it: {reason}" in etcd_start.stderr
    assert api_start.returncode == 1
    assert f"unit eu-api.service cannot be placed: {reason}" in api_err
    assert "fleetctl explain eu-api.service" in api_err

    # explain over both drivers, for the unplaceable unit and a placed one.
    for output in (
        ok(etcdctl(fleet, "explain", "--full", "eu.service")),
        ok(apictl(hosts[1], "explain", "--full", "eu")),
    ):
        lines = output.splitlines()
        assert lines[0] == (
            f"Unit eu.service (desired state launched) is not placed: {reason}"
        )
        assert len(lines) == 4
        by_id = sorted(hosts, key=lambda host: host.machine_id)
        for line, host in zip(lines[1:], by_id, strict=True):
            assert line.startswith(f"{host.machine_id}/{host.public_ip}: ")
            assert "cannot run eu.service: metadata does not match region=eu" in line

    for output in (
        ok(etcdctl(fleet, "explain", "meta-lt.service")),
        ok(apictl(hosts[2], "explain", "meta-lt.service")),
    ):
        lines = output.splitlines()
        legend = f"{ids[0][:8]}.../{hosts[0].public_ip}"
        assert lines[0] == (
            f"Unit meta-lt.service (desired state launched) is placed on {legend}"
        )
        mine = [line for line in lines[1:] if line.startswith(legend)]
        assert len(mine) == 1
        assert "can run meta-lt.service" in mine[0]
        assert "placed here" in mine[0]
        others = [line for line in lines[1:] if not line.startswith(legend)]
        assert len(others) == 2
        for line in others:
            assert "cannot run meta-lt.service: metadata does not match n<2" in line

    # journal of the unplaceable unit points to explain, not to start.
    for journal in (
        etcdctl(fleet, "journal", "eu.service"),
        apictl(hosts[1], "journal", "eu.service"),
    ):
        assert journal.returncode == 1
        assert journal.stderr == (
            "Error: Unit eu.service has desired state launched but is not placed "
            f"on any machine: {reason}; `fleetctl explain eu.service` shows each "
            "machine's check\n"
        )

    missing = etcdctl(fleet, "explain", "nothing.service")
    assert missing.returncode == 1
    assert "unit nothing.service not found" in missing.stderr
    missing_api = apictl(hosts[0], "explain", "nothing.service")
    assert missing_api.returncode == 1
    assert "unit nothing.service not found" in missing_api.stderr

    # The API resource behind explain, as JSON.
    raw = hosts[0].run(
        [
            "curl", "--silent", "--unix-socket", "/var/run/fleet.sock",
            "http://localhost/fleet/v1/units/eu.service/placement?machines=false",
        ]
    )  # fmt: skip
    assert json.loads(raw.stdout) == {
        "name": "eu.service",
        "desiredState": "launched",
        "reason": reason,
    }


BAD_UNITS: Sequence[tuple[str, str, str]] = (
    ("no-equals.service", "[Service]\nExecStart=/bin/true\nfoo\n", "has no '='"),
    (
        "id-conflicts.service",
        SERVICE + "[X-Fleet]\nMachineID=0123456789abcdef\nConflicts=x.service\n",
        "MachineID cannot be used with Conflicts",
    ),
    (
        "global-peer.service",
        SERVICE + "[X-Fleet]\nGlobal=true\nMachineOf=x.service\n",
        "Global=true cannot be used with MachineOf",
    ),
    (
        "conflicts-replaces.service",
        SERVICE + "[X-Fleet]\nConflicts=x.service\nReplaces=y.service\n",
        "Conflicts cannot be used with Replaces",
    ),
    (
        "peer-conflict.service",
        SERVICE + "[X-Fleet]\nMachineOf=db.service\nConflicts=db*.service\n",
        "MachineOf peer 'db.service' matches Conflicts pattern",
    ),
    ("bad name.service", SERVICE, "bad name.service"),
)


def test_conflicts_global_and_bad_units(
    cluster: Callable[..., LocalCluster],
) -> None:
    """Conflicts, Global units with conflicts, and rejected unit files."""
    fleet = cluster(3, metadata="n={n}")
    hosts = fleet.hosts
    ids = [host.machine_id for host in hosts]
    wait_machines(fleet, 3)

    # Five mutually conflicting units on three machines: three run, on three
    # machines, and start fails for the other two with the reason.
    paths = [
        write_unit(fleet, f"clash@{n}.service", "Conflicts=clash@*.service")
        for n in range(1, 6)
    ]
    started = etcdctl(fleet, "start", *paths)
    assert started.returncode == 1
    failed = [
        line
        for line in started.stderr.splitlines()
        if "cannot be placed: conflicts with clash@" in line
    ]
    assert len(failed) == 2, started.stderr
    active = active_units(fleet)
    clashing = {name: machines for name, machines in active.items() if "clash@" in name}
    assert len(clashing) == 3
    machines = [machine for hosts_of in clashing.values() for machine in hosts_of]
    assert sorted(machines) == sorted(ids)
    ok(etcdctl(fleet, "destroy", "clash@*"))

    # Global units: one per matching machine, and none next to a conflict.
    solo = write_unit(fleet, "a-solo.service", "MachineMetadata=n=2")
    near = write_unit(fleet, "g-near.service", "Global=true\nMachineMetadata=n<3")
    avoid = write_unit(
        fleet, "g-avoid.service", "Global=true\nConflicts=a-solo.service"
    )
    start_all(fleet, solo)
    ok(etcdctl(fleet, "start", near, avoid))

    def globals_running() -> bool:
        active = active_units(fleet)
        return sorted(active.get("g-near.service", [])) == sorted(ids[:2]) and sorted(
            active.get("g-avoid.service", [])
        ) == sorted([ids[0], ids[2]])

    wait_until(globals_running, 30, "g-near on hosts 1-2 and g-avoid on 1 and 3")
    explained = ok(etcdctl(fleet, "explain", "--full", "g-avoid.service"))
    assert "is global" in explained.splitlines()[0]
    assert f"{ids[1]}/{hosts[1].public_ip}: does not run g-avoid.service" in explained

    # Bad files and bad option combinations: exit 1, a clear error, and
    # nothing stored, over both drivers.
    before = ok(etcdctl(fleet, "list-unit-files", "--no-legend"))
    directory = fleet.state_dir / "bad"
    directory.mkdir()
    wait_api(hosts[0])
    for name, text, message in BAD_UNITS:
        path = directory / name
        path.write_text(text, encoding="utf-8")
        for result in (
            etcdctl(fleet, "submit", str(path)),
            apictl(hosts[0], "start", str(path)),
        ):
            assert result.returncode == 1, (name, result.stdout, result.stderr)
            assert result.stderr.startswith("Error: "), (name, result.stderr)
            assert message in result.stderr, (name, result.stderr)
    assert ok(etcdctl(fleet, "list-unit-files", "--no-legend")) == before


def host_of(hosts: Sequence[Host], machine_id: str) -> Host:
    return next(host for host in hosts if host.machine_id == machine_id)


def test_machine_of_and_replaces(cluster: Callable[..., LocalCluster]) -> None:
    """Replaces moves units; a MachineOf pair lands and moves together."""
    fleet = cluster(3, metadata="n={n}", agent_ttl="5s")
    hosts = fleet.hosts
    ids = [host.machine_id for host in hosts]
    wait_machines(fleet, 3)

    # Replaces: the new unit can only run where the old one is, so the old
    # one moves to the other machine that fits it.
    old = write_unit(fleet, "old.service", "MachineMetadata=n<=2")
    start_all(fleet, old)
    old_machine = active_units(fleet)["old.service"][0]
    number = ids.index(old_machine) + 1
    other_machine = ids[2 - number]  # the other of hosts 1 and 2
    new = write_unit(
        fleet, "new.service", f"MachineMetadata=n={number}\nReplaces=old.service"
    )
    start_all(fleet, new)

    def old_moved() -> bool:
        active = active_units(fleet)
        return active.get("old.service") == [other_machine] and active.get(
            "new.service"
        ) == [old_machine]

    wait_until(old_moved, 30, "old.service to move for new.service")

    # Mutual Replaces on one machine leave exactly one of them running.
    mutual_a = write_unit(
        fleet, "mutual-a.service", "MachineMetadata=n=3\nReplaces=mutual-b.service"
    )
    mutual_b = write_unit(
        fleet, "mutual-b.service", "MachineMetadata=n=3\nReplaces=mutual-a.service"
    )
    ok(etcdctl(fleet, "start", "--no-block", mutual_a, mutual_b))

    def one_mutual_runs() -> bool:
        active = active_units(fleet)
        running = [
            name for name in ("mutual-a.service", "mutual-b.service") if name in active
        ]
        return len(running) == 1 and active[running[0]] == [ids[2]]

    wait_until(one_mutual_runs, 30, "one of mutual-a and mutual-b on host 3")
    active = active_units(fleet)
    winner, loser = (
        ("mutual-a.service", "mutual-b.service")
        if "mutual-a.service" in active
        else ("mutual-b.service", "mutual-a.service")
    )
    # The engine keeps the other one out, and says why.
    explained = ok(etcdctl(fleet, "explain", loser)).splitlines()[0]
    assert explained.startswith(f"Unit {loser} (desired state launched) is not placed")
    assert f"1 machine with {winner} replacing it" in explained
    assert loser not in placements(fleet)

    # MachineOf: the follower lands with its peer, and both move together
    # when the peer's host dies.
    leader = write_unit(fleet, "pair-leader.service", "MachineMetadata=n!=3")
    follower = write_unit(
        fleet, "pair-follower.service", "MachineOf=pair-leader.service"
    )
    start_all(fleet, leader, follower)
    active = active_units(fleet)
    pair_machine = active["pair-leader.service"][0]
    assert active["pair-follower.service"] == [pair_machine]

    host_of(hosts, pair_machine).kill()
    survivor = next(machine_id for machine_id in ids[:2] if machine_id != pair_machine)

    def pair_moved() -> bool:
        active = active_units(fleet)
        return active.get("pair-leader.service") == [survivor] and active.get(
            "pair-follower.service"
        ) == [survivor]

    wait_until(pair_moved, 60, "the MachineOf pair to move together")
