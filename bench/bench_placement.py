"""Measure the scheduler: placement decisions per second of compute.

Builds 10,000 units over 1,000 machines and times ``plan`` in four passes.
The first places every unit, the second runs after 10% of the machines go
away, and the third has nothing to change. The fourth adds an anti-affinity
group with more units than machines. A decision is a unit placed or found
unplaceable. Run it as ``python bench/bench_placement.py`` (options:
``--units``, ``--machines``, ``--seed``, ``--repeat``).

The unit mix with the default seed: 64% without requirements, 9% in five
anti-affinity groups (``Conflicts=web-<group>@*.service``), 5% with
``Conflicts=db-*.service``, 16% in MachineOf pairs whose names that glob
matches, 5% with MachineMetadata, 1% pinned by MachineID, 18 units with
Replaces and 5 global units.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import replace

from fleetd.engine.scheduler import Plan, UnitSpec, plan
from fleetd.model import DesiredState, Machine
from fleetd.rules import MetadataCondition, Requirements

REGIONS = ("eu", "us", "ap")
DISKS = ("ssd", "hdd")


def build_machines(count: int, rng: random.Random) -> list[Machine]:
    machines = []
    for _ in range(count):
        metadata = {"region": rng.choice(REGIONS), "disk": rng.choice(DISKS)}
        machines.append(Machine(id=f"{rng.getrandbits(128):032x}", metadata=metadata))
    return machines


def build_units(
    count: int, machines: Sequence[Machine], rng: random.Random
) -> list[UnitSpec]:
    launched = DesiredState.LAUNCHED
    units: list[UnitSpec] = []

    def add(name: str, requirements: Requirements) -> None:
        units.append(UnitSpec(name, requirements, launched))

    for index in range(5):
        ssd_only = (MetadataCondition("disk", "=", "ssd"),) if index % 2 else ()
        conflicts = ("batch-*.service",) if index == 0 else ()
        add(
            f"global-{index}.service",
            Requirements(is_global=True, metadata=ssd_only, conflicts=conflicts),
        )

    index = 0
    while len(units) < count:
        roll = rng.random()
        if roll < 0.10:
            group = index % 5
            pattern = f"web-{group}@*.service"
            add(f"web-{group}@{index}.service", Requirements(conflicts=(pattern,)))
        elif roll < 0.15:
            add(f"cache-{index}.service", Requirements(conflicts=("db-*.service",)))
        elif roll < 0.23:
            add(f"db-{index}.service", Requirements())
            add(
                f"db-{index}-backup.service",
                Requirements(peers=(f"db-{index}.service",)),
            )
        elif roll < 0.29:
            region = rng.choice(REGIONS)
            metadata = [MetadataCondition("region", "=", region)]
            if rng.random() < 0.5:
                metadata.append(MetadataCondition("disk", "=", "ssd"))
            add(f"regional-{index}.service", Requirements(metadata=tuple(metadata)))
        elif roll < 0.30:
            machine_id = rng.choice(machines).id
            add(f"pinned-{index}.service", Requirements(machine_id=machine_id))
        elif roll < 0.302:
            add(
                f"next-{index}.service",
                Requirements(replaces=(f"app-{index - 1}.service",)),
            )
        else:
            add(f"app-{index}.service", Requirements())
        index += 1
    return units


def decisions_in(result: Plan) -> int:
    """Count placement decisions: units placed plus units found unplaceable."""
    placed = sum(1 for task in result.tasks if task.kind == "place")
    return placed + len(result.unplaceable)


def apply(units: Sequence[UnitSpec], result: Plan) -> list[UnitSpec]:
    """Return ``units`` with the placements of ``result`` written in."""
    placement = {unit.name: unit.machine_id for unit in units}
    for task in result.tasks:
        placement[task.unit] = task.machine_id if task.kind == "place" else ""
    return [replace(unit, machine_id=placement[unit.name]) for unit in units]


def timed(
    units: Sequence[UnitSpec], machines: Sequence[Machine], repeat: int
) -> tuple[Plan, float]:
    """Run ``plan`` once to warm up, then ``repeat`` times timed.

    Returns the last result and the fastest time in seconds.
    """
    best = float("inf")
    result = plan(units, machines)
    for _ in range(repeat):
        started = time.perf_counter()
        result = plan(units, machines)
        best = min(best, time.perf_counter() - started)
    return result, best


def report(label: str, result: Plan, seconds: float) -> None:
    decisions = decisions_in(result)
    rate = decisions / seconds if seconds else float("inf")
    print(
        f"{label:<28} {decisions:>6} decisions  {len(result.tasks):>6} tasks  "
        f"{len(result.unplaceable):>4} unplaceable  {seconds * 1000:8.1f} ms  "
        f"{rate:>10,.0f} decisions/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000, help="units to place")
    parser.add_argument("--machines", type=int, default=1_000, help="live machines")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per pass; the fastest counts"
    )
    args = parser.parse_args()

    rng = random.Random(args.seed)
    machines = build_machines(args.machines, rng)
    units = build_units(args.units, machines, rng)
    print(f"{len(units)} units over {len(machines)} machines (seed {args.seed})")

    first, first_seconds = timed(units, machines, args.repeat)
    report("first placement", first, first_seconds)

    placed = apply(units, first)
    survivors = machines[len(machines) // 10 :]
    after_loss, loss_seconds = timed(placed, survivors, args.repeat)
    report("10% of machines gone", after_loss, loss_seconds)

    settled = apply(placed, after_loss)
    steady, steady_seconds = timed(settled, survivors, args.repeat)
    report("nothing to change", steady, steady_seconds)

    # An anti-affinity group with machines/5 more units than live machines:
    # the extra units are unplaceable and get a reason on every pass.
    group = [
        UnitSpec(
            f"solo@{index}.service",
            Requirements(conflicts=("solo@*.service",)),
            DesiredState.LAUNCHED,
        )
        for index in range(len(survivors) + args.machines // 5)
    ]
    crowded, crowded_seconds = timed(settled + group, survivors, args.repeat)
    report(f"+{len(group)} units, 1 group", crowded, crowded_seconds)

    total = first_seconds + loss_seconds + steady_seconds + crowded_seconds
    runs = f"fastest of {args.repeat} runs per pass"
    print(f"total compute time {total * 1000:.1f} ms ({runs})")


if __name__ == "__main__":
    main()
