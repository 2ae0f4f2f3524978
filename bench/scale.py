"""Scenarios at 1,000 machines and 10,000 units, on a real etcd.

list-units and placement need no running agent: their machines are machine
keys written straight to etcd. The scale scenario adds simulated agents (see
bench/simulated.py) to three real test hosts.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence

from bench.bench_placement import build_machines, build_units
from bench.cluster import (
    BenchCluster,
    Follower,
    api_socket,
    registry_at,
    time_fleetctl,
)
from bench.etcdload import LoadMeter
from bench.report import Figure, Section, median, milliseconds, seconds
from bench.simulated import SimulatedMachines
from bench.units import sleep_unit, submit_bulk
from fleetd.engine.engine import Engine
from fleetd.engine.scheduler import UnitSpec
from fleetd.model import Machine, UnitState
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import MAX_TXN_OPS, EtcdRegistry
from fleetd.registry.mirror import RegistryMirror
from fleetd.registry.view import RegistryView


async def write_in_batches(
    registry: EtcdRegistry, puts: Sequence[tuple[str, str, int]]
) -> None:
    """Write ``(key, value, lease)`` triples, MAX_TXN_OPS - 1 per transaction."""
    batch = MAX_TXN_OPS - 1
    limit = asyncio.Semaphore(8)

    async def write(chunk: Sequence[tuple[str, str, int]]) -> None:
        async with limit:
            ops = [registry.op_put(key, value, lease) for key, value, lease in chunk]
            await registry.txn([], ops, "write benchmark keys")

    await asyncio.gather(
        *(write(puts[start : start + batch]) for start in range(0, len(puts), batch))
    )


async def fill_placed_units(
    registry: EtcdRegistry, units: int, machines: int, lease: int
) -> str:
    """Write ``units`` units, each placed and reported active on a machine.

    Returns the ID of the first machine.
    """
    machine_ids = [f"{random.getrandbits(128):032x}" for _ in range(machines)]
    puts: list[tuple[str, str, int]] = []
    for machine_id in machine_ids:
        record = keys.encode_machine(Machine(id=machine_id, public_ip="127.0.0.1"))
        puts.append((keys.machine_key(machine_id), record, lease))
    await write_in_batches(registry, puts)
    names = [f"list-{index}.service" for index in range(units)]
    await submit_bulk(registry, [(name, sleep_unit(name)) for name in names])
    view = await registry.read_view()
    puts = []
    for index, name in enumerate(names):
        machine_id = machine_ids[index % machines]
        state = UnitState(
            name,
            machine_id,
            view.files[name].hash,
            "loaded",
            "active",
            "running",
            "launched",
        )
        puts.append((keys.placement_key(name), machine_id, 0))
        puts.append((keys.state_key(name, machine_id), keys.encode_state(state), lease))
    await write_in_batches(registry, puts)
    return machine_ids[0]


async def list_units(sizes: Sequence[int] = (300, 10_000), runs: int = 5) -> Section:
    """Time ``fleetctl list-units`` over registries of each size, both drivers."""
    section = Section(
        "list-units",
        "For each size N, an etcd of its own holds N units, each placed on one "
        "of max(30, N/10) machines and with a published state, written straight "
        "to etcd. fleetd's API is served from a registry mirror in the "
        "benchmark's process, as fleetd serves it, on a unix socket. The time "
        "is the wall time of the whole `fleetctl list-units` command, median of "
        f"{runs} runs after one unmeasured run, so Python's start-up and imports "
        "are included: over the API (fleetctl's default driver, as in the "
        "original) and over etcd (`--driver etcd`). The last figure is the "
        "start-up alone: `fleetctl version`.",
    )
    startup: list[float] = []
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
    for size in sizes:
        with BenchCluster(hosts=0) as cluster:
            async with registry_at(cluster.etcd_url) as registry:
                lease = await registry.grant_lease(3600)
                machines = max(30, size // 10)
                machine_id = await fill_placed_units(registry, size, machines, lease)
                async with api_socket(registry, machine_id) as socket_path:
                    api = {**base, "FLEETCTL_ENDPOINT": f"unix://{socket_path}"}
                    over_api, output = await time_fleetctl(["list-units"], api, runs)
                    over_etcd, _ = await time_fleetctl(
                        ["list-units"], cluster.fleetctl_env(), runs
                    )
                    times, _ = await time_fleetctl(["version"], api, runs)
                    startup += times
        rows = len(output.splitlines()) - 1
        for driver, times in (("API", over_api), ("etcd", over_etcd)):
            typical = median(times)
            figure = Figure(
                f"list-units at {size:,} units over {driver} ({rows:,} rows)",
                milliseconds(typical),
            )
            if size == 10_000 and driver == "API":
                figure.target = "300 ms"
                figure.met = typical <= 0.3
            elif size == 10_000:
                figure.note = ETCD_LIST_NOTE
            elif driver == "API":
                figure.note = "original fleet: 22 ms at 304 units"
            section.figures.append(figure)
    section.figures.append(
        Figure("`fleetctl version` (start-up only)", milliseconds(median(startup)))
    )
    return section


# Measured with curl against the list scenario's etcd at 10,000 units.
ETCD_LIST_NOTE = (
    "etcd's JSON gateway takes about 160 ms to encode the 10,000 states (4 MB)"
)


def x_fleet_text(spec: UnitSpec) -> str:
    """Return the [X-Fleet] lines that give ``spec``'s requirements."""
    requirements = spec.requirements
    lines = []
    if requirements.machine_id:
        lines.append(f"MachineID={requirements.machine_id}")
    lines += [f"MachineOf={peer}" for peer in requirements.peers]
    lines += [f"Conflicts={pattern}" for pattern in requirements.conflicts]
    lines += [
        f"MachineMetadata={condition.key}{condition.op}{condition.value}"
        for condition in requirements.metadata
    ]
    lines += [f"Replaces={pattern}" for pattern in requirements.replaces]
    if requirements.is_global:
        lines.append("Global=true")
    return "\n".join(lines)


async def placement(units: int = 10_000, machines: int = 1_000) -> Section:
    """Time one engine pass that places ``units`` over ``machines`` in etcd."""
    section = Section(
        f"Placement of {units:,} units over {machines:,} machines",
        f"An etcd of its own holds {machines:,} machine keys and {units:,} unit "
        "files with [X-Fleet] rules, the mix of bench/bench_placement.py (10% "
        "anti-affinity groups through `Conflicts` globs, 5% other `Conflicts`, "
        "8% `MachineOf` pairs, 6% `MachineMetadata`, 1% `MachineID`, a few "
        "`Replaces`, 5 global units). fleetd's engine runs in this process on "
        "the registry mirror, as in fleetd; one of the machines is its own. "
        "The time covers one engine pass: read the mirror, plan and commit "
        "every placement to etcd in fenced transactions.",
    )
    rng = random.Random(1)
    machine_list = build_machines(machines, rng)
    specs = build_units(units, machine_list, rng)
    with BenchCluster(hosts=0) as cluster:
        async with registry_at(cluster.etcd_url) as registry:
            lease = await registry.grant_lease(3600)
            await write_in_batches(
                registry,
                [
                    (keys.machine_key(machine.id), keys.encode_machine(machine), lease)
                    for machine in machine_list[1:]
                ],
            )
            await submit_bulk(
                registry,
                [
                    (spec.name, sleep_unit(spec.name, x_fleet_text(spec)))
                    for spec in specs
                ],
            )
            presence = MachinePresence(registry, machine_list[0], 10)
            await presence.register()
            mirror = RegistryMirror(registry)
            follow = asyncio.create_task(mirror.run())
            try:
                await mirror.synced.wait()
                engine = Engine(registry, mirror, presence, interval=1.0)
                if not await engine.campaign():
                    raise RuntimeError("the benchmark engine did not become leader")
                started = time.monotonic()
                await engine.reconcile()
                elapsed = time.monotonic() - started
                # The next pass, with nothing to change, is the steady cost.
                started = time.monotonic()
                await engine.reconcile()
                steady = time.monotonic() - started
            finally:
                follow.cancel()
            view = await registry.read_view()
    placed = sum(1 for spec in specs if spec.name in view.placements)
    unplaceable = sum(1 for spec in specs if spec.name in view.reasons)
    section.figures = [
        Figure(
            "engine pass: plan and commit",
            seconds(elapsed),
            "1 s",
            elapsed <= 1.0,
            f"{placed:,} placed, {unplaceable:,} with a reason why not",
        ),
        Figure("next engine pass, nothing to change", seconds(steady)),
    ]
    return section


async def scale(
    machines: int = 1_000, units: int = 10_000, steady_seconds: float = 10.0
) -> Section:
    """Schedule ``units`` over three real hosts plus simulated machines."""
    simulated_count = machines - 3
    section = Section(
        f"Scale: {machines:,} machines, {units:,} units",
        f"Three test hosts run fleetd with real systemd; {simulated_count:,} "
        "more machines are a SIMULATION (bench/simulated.py): they register "
        "in the same etcd with their own leases and renew them, and publish "
        "an active state for each unit placed on them, but run no systemd "
        f"and no fleetd. {units:,} `sleep infinity` services are written in "
        "transactions of 42 units. Times run from the first write. etcd load "
        "is the number of gRPC request messages etcd received (unary calls "
        "plus messages on streams, such as lease keep-alives), from its "
        f"/metrics, during scheduling and over {steady_seconds:g} s after.",
    )
    names = [f"scale-{index}.service" for index in range(units)]
    with BenchCluster(hosts=3) as cluster:
        meter = LoadMeter(cluster.etcd_url)
        async with (
            registry_at(cluster.etcd_url) as registry,
            SimulatedMachines(registry, simulated_count),
            Follower(registry) as follower,
        ):
            await follower.wait(
                lambda view: len(view.machines) >= machines, 60, "machines registered"
            )
            meter.start()
            started = time.monotonic()
            await submit_bulk(registry, [(name, sleep_unit(name)) for name in names])
            submitted = time.monotonic()
            placed = await follower.wait(
                lambda view: len(view.placements) >= units, 300, "all units placed"
            )
            active = await follower.wait(
                lambda view: _active_states(view) >= units, 300, "all units active"
            )
            during = meter.stop()
            meter.start()
            await asyncio.sleep(steady_seconds)
            steady = meter.stop()
            real = {host.machine_id for host in cluster.hosts}
            on_real = sum(
                1
                for machine_id in follower.view.placements.values()
                if machine_id in real
            )
    total = placed - started
    section.figures = [
        Figure(
            "first write to all units placed",
            seconds(total),
            "10 s",
            total <= 10.0,
            f"writing the units took {seconds(submitted - started)}",
        ),
        Figure(
            "first write to all units active",
            seconds(active - started),
            note=f"{on_real} units ran on the three real hosts",
        ),
        Figure("etcd load while scheduling", during.describe()),
        Figure("etcd load at rest", steady.describe()),
    ]
    return section


def _active_states(view: RegistryView) -> int:
    if len(view.states) < len(view.placements):
        return 0
    return sum(
        1
        for name, machine_id in view.placements.items()
        if (state := view.states.get(name, {}).get(machine_id)) is not None
        and state.active_state == "active"
    )
