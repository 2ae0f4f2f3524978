"""Measure placement compute and the engine's fenced commit of the whole batch.

Builds the unit mix of ``bench_placement`` (10,000 units over 1,000
machines, with Conflicts groups), times ``plan``, then writes its placements
and unplaceable reasons through ``Engine.commit`` into a real etcd that this
script starts on free loopback ports. The engine first campaigns, so every
transaction carries the leader fence, as in fleetd. A second scenario swaps
the last units of the mix for one Conflicts group with a fifth more units
than machines, so the extra units are unplaceable and their reasons are
committed too. The target is the whole batch committed within 1 second.
Run it from the repository root as
``python -m bench.bench_placement_commit`` (options: ``--units``,
``--machines``, ``--seed``, ``--repeat``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.bench_placement import build_machines, build_units, decisions_in, timed
from fleetd.engine.engine import Engine
from fleetd.engine.scheduler import Plan, UnitSpec
from fleetd.etcdserver import EtcdServer
from fleetd.model import DesiredState, Machine
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.registry.mirror import RegistryMirror
from fleetd.rules import Requirements

KEY_PREFIX = "/fleet-bench/"
ENGINE_MACHINE_ID = "e" * 32


def commit_ops(result: Plan) -> list[tuple[str, str | None]]:
    """Return the writes ``Engine.reconcile`` makes for ``result`` in an empty registry.

    Placements come first, then the reasons of the unplaceable units.
    """
    ops: list[tuple[str, str | None]] = []
    for task in result.tasks:
        value = task.machine_id if task.kind == "place" else None
        ops.append((keys.placement_key(task.unit), value))
    for name, reason in result.unplaceable.items():
        ops.append((keys.reason_key(name), reason))
    return ops


async def leading_engine(registry: EtcdRegistry) -> Engine:
    """Return an engine that leads, on a lease of its own, without running its loop."""
    presence = MachinePresence(registry, Machine(id=ENGINE_MACHINE_ID), ttl=60)
    presence.lease = await registry.grant_lease(60)
    engine = Engine(registry, RegistryMirror(registry), presence, interval=1.0)
    if not await engine.campaign():
        raise RuntimeError("the benchmark engine did not become leader")
    return engine


async def time_commits(
    url: str, ops: list[tuple[str, str | None]], repeat: int
) -> list[float]:
    """Commit ``ops`` ``repeat`` times into an emptied prefix; return the seconds."""
    seconds = []
    async with open_registry([url], KEY_PREFIX, 30.0) as registry:
        for _ in range(repeat):
            await registry.txn([], [registry.op_delete("", prefix=True)], "clear")
            engine = await leading_engine(registry)

            started = time.perf_counter()
            await engine.commit(ops)
            seconds.append(time.perf_counter() - started)

            view = await registry.read_view(keys.UNITS)
            written = len(view.placements) + len(view.reasons)
            expected = sum(1 for _, value in ops if value is not None)
            if written != expected:
                raise RuntimeError(f"etcd has {written} of {expected} written keys")
    return seconds


def crowded_group(count: int) -> list[UnitSpec]:
    """Return ``count`` units that all conflict with each other."""
    return [
        UnitSpec(
            f"solo@{index}.service",
            Requirements(conflicts=("solo@*.service",)),
            DesiredState.LAUNCHED,
        )
        for index in range(count)
    ]


def plan_timed(
    label: str, units: Sequence[UnitSpec], machines: Sequence[Machine], repeat: int
) -> Plan:
    result, seconds = timed(units, machines, repeat)
    decisions = decisions_in(result)
    print(
        f"{label}: {len(units)} units over {len(machines)} machines, plan: "
        f"{decisions} decisions in {seconds * 1000:.1f} ms (fastest of {repeat}), "
        f"{decisions / seconds:,.0f} decisions/s"
    )
    return result


def commit_timed(label: str, result: Plan, etcd_url: str, repeat: int) -> None:
    ops = commit_ops(result)
    seconds = asyncio.run(time_commits(etcd_url, ops, repeat))
    verdict = "within" if max(seconds) <= 1.0 else "over"
    print(
        f"{label}: commit of {len(ops)} writes ({len(result.tasks)} placements, "
        f"{len(result.unplaceable)} reasons), {repeat} runs: median "
        f"{statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} "
        f"ms ({verdict} the 1 s target)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000, help="units to place")
    parser.add_argument("--machines", type=int, default=1_000, help="live machines")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each step")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    machines = build_machines(args.machines, rng)
    units = build_units(args.units, machines, rng)
    group = crowded_group(args.machines + args.machines // 5)
    crowded = units[: max(len(units) - len(group), 0)] + group

    # Planned before etcd starts, so that etcd takes no CPU from the timing.
    results = {
        "mix": plan_timed("mix", units, machines, args.repeat),
        "crowded": plan_timed("crowded", crowded, machines, args.repeat),
    }
    with tempfile.TemporaryDirectory(prefix="fleet-bench-commit-") as directory:
        etcd = EtcdServer(Path(directory) / "etcd")
        etcd.start()
        try:
            for label, result in results.items():
                commit_timed(label, result, etcd.client_url, args.repeat)
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
