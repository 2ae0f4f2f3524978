"""Property tests of the placement invariants, over random clusters."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetd import rules
from fleetd.engine.scheduler import Plan, UnitSpec, global_units_for, plan
from fleetd.model import DesiredState, Machine
from fleetd.rules import MetadataCondition, Requirements

MACHINE_IDS = [f"{index:08x}" + "0" * 24 for index in range(1, 7)]
DEAD_ID = "f" * 32
NAMES = [
    "a.service",
    "b.service",
    "db.service",
    "db-backup.service",
    "web-1.service",
    "web-2.service",
    "web-3.service",
    "y-agent.service",
    "z-agent.service",
]
GLOBS = ["a.service", "web-*.service", "db*", "*-agent.service", "[ab].service", "*"]
REGIONS = ["eu", "us"]


@st.composite
def machines(draw: st.DrawFn) -> list[Machine]:
    ids = draw(st.lists(st.sampled_from(MACHINE_IDS), max_size=5, unique=True))
    return [
        Machine(id=machine_id, metadata={"region": draw(st.sampled_from(REGIONS))})
        for machine_id in ids
    ]


@st.composite
def requirements(draw: st.DrawFn, with_replaces: bool) -> Requirements:
    metadata: tuple[MetadataCondition, ...] = ()
    if draw(st.booleans()):
        metadata = (MetadataCondition("region", "=", draw(st.sampled_from(REGIONS))),)
    return Requirements(
        machine_id=draw(st.sampled_from(["", "", "", MACHINE_IDS[0][:8]])),
        peers=tuple(draw(st.lists(st.sampled_from(NAMES), max_size=1))),
        conflicts=tuple(
            draw(st.lists(st.sampled_from(GLOBS), max_size=2, unique=True))
        ),
        metadata=metadata,
        is_global=draw(st.integers(0, 5)) == 0,
        replaces=tuple(
            draw(st.lists(st.sampled_from(GLOBS), max_size=1 if with_replaces else 0))
        ),
    )


@st.composite
def clusters(
    draw: st.DrawFn, with_replaces: bool = True
) -> tuple[list[UnitSpec], list[Machine]]:
    cluster = draw(machines())
    placed_on = [machine.id for machine in cluster] + ["", "", DEAD_ID]
    names = draw(st.lists(st.sampled_from(NAMES), unique=True))
    units = []
    for name in names:
        req = draw(requirements(with_replaces))
        state = draw(st.sampled_from(list(DesiredState)))
        machine_id = "" if req.is_global else draw(st.sampled_from(placed_on))
        units.append(UnitSpec(name, req, state, machine_id))
    return units, cluster


def applied(units: list[UnitSpec], result: Plan) -> list[UnitSpec]:
    """Return ``units`` with the plan's placements written in."""
    placement = {spec.name: spec.machine_id for spec in units}
    for task in result.tasks:
        placement[task.unit] = task.machine_id if task.kind == "place" else ""
    return [replace(spec, machine_id=placement[spec.name]) for spec in units]


def running(units: list[UnitSpec], machine: Machine) -> list[UnitSpec]:
    """Return the units placed on ``machine`` and the global units it runs."""
    global_names = set(global_units_for(machine, units))
    return [
        spec
        for spec in units
        if spec.name in global_names
        or (not spec.requirements.is_global and spec.machine_id == machine.id)
    ]


def placed_units(units: list[UnitSpec]) -> list[UnitSpec]:
    return [
        spec for spec in units if spec.machine_id and not spec.requirements.is_global
    ]


SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(clusters())
def test_placed_units_are_on_live_machines(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))
    live = {machine.id for machine in machines_}

    for spec in placed_units(after):
        assert spec.machine_id in live, spec


@SETTINGS
@given(clusters())
def test_placed_units_are_active(cluster: tuple[list[UnitSpec], list[Machine]]) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))

    for spec in placed_units(after):
        assert spec.desired_state != DesiredState.INACTIVE, spec


@SETTINGS
@given(clusters())
def test_no_conflicts_on_a_machine(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))

    for machine in machines_:
        here = running(after, machine)
        for first in here:
            for second in here:
                clash = rules.conflicts(
                    first.name, first.requirements, second.name, second.requirements
                )
                assert not clash, (machine.id, first.name, second.name)


@SETTINGS
@given(clusters())
def test_peers_share_a_machine(cluster: tuple[list[UnitSpec], list[Machine]]) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))
    by_id = {machine.id: machine for machine in machines_}

    for spec in placed_units(after):
        names_here = {other.name for other in running(after, by_id[spec.machine_id])}
        for peer in spec.requirements.peers:
            assert peer in names_here, (spec.name, peer)


@SETTINGS
@given(clusters())
def test_machine_requirements_hold(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))
    by_id = {machine.id: machine for machine in machines_}

    for spec in placed_units(after):
        machine = by_id[spec.machine_id]
        assert rules.metadata_matches(spec.requirements, machine.metadata), spec
        assert rules.machine_id_matches(spec.requirements, machine.id), spec


@SETTINGS
@given(clusters())
def test_no_replaced_unit_beside_replacer(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))

    for first in placed_units(after):
        for second in placed_units(after):
            if first.machine_id != second.machine_id:
                continue
            if rules.replaces(first.name, first.requirements, second.name):
                # Only two units that replace each other may share a machine.
                mutual = rules.replaces(second.name, second.requirements, first.name)
                assert mutual, (first.name, second.name)


@SETTINGS
@given(clusters())
def test_global_units_where_they_fit(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))
    global_units = [spec for spec in after if spec.requirements.is_global]

    for machine in machines_:
        here = running(after, machine)
        names_here = {spec.name for spec in here}
        for spec in global_units:
            if spec.desired_state == DesiredState.INACTIVE:
                assert spec.name not in names_here, (machine.id, spec.name)
                continue
            fits = rules.metadata_matches(spec.requirements, machine.metadata)
            blocked = any(
                other.name < spec.name
                and rules.conflicts(
                    spec.name, spec.requirements, other.name, other.requirements
                )
                for other in here
            )
            runs = spec.name in names_here
            should_run = fits and not blocked
            assert runs == should_run, (machine.id, spec.name)


@SETTINGS
@given(clusters())
def test_every_active_unit_placed_or_explained(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    result = plan(units, machines_)
    after = applied(units, result)

    for spec in after:
        wanted = (
            not spec.requirements.is_global
            and spec.desired_state != DesiredState.INACTIVE
        )
        if not wanted or spec.machine_id:
            assert spec.name not in result.unplaceable, spec
        else:
            assert result.unplaceable.get(spec.name), spec


@SETTINGS
@given(clusters(), st.randoms(use_true_random=False))
def test_same_input_same_plan(
    cluster: tuple[list[UnitSpec], list[Machine]], shuffler: random.Random
) -> None:
    units, machines_ = cluster
    shuffled_units = list(units)
    shuffled_machines = list(machines_)
    shuffler.shuffle(shuffled_units)
    shuffler.shuffle(shuffled_machines)

    assert plan(units, machines_) == plan(shuffled_units, shuffled_machines)


# A unit moves away for a Replaces at most once per plan, so with Replaces
# the next plan may still move units.
@SETTINGS
@given(clusters(with_replaces=False))
def test_second_plan_changes_nothing(
    cluster: tuple[list[UnitSpec], list[Machine]],
) -> None:
    units, machines_ = cluster
    after = applied(units, plan(units, machines_))

    again = plan(after, machines_)

    assert again.tasks == ()


@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=0, max_value=60),
    st.lists(st.integers(min_value=0, max_value=7), max_size=20),
)
def test_unconstrained_units_balance(
    machine_count: int, unit_count: int, global_flags: list[int]
) -> None:
    machines_ = [Machine(id=f"{index:032x}") for index in range(machine_count)]
    units = [
        UnitSpec(f"app-{index:03}.service", Requirements(), DesiredState.LAUNCHED)
        for index in range(unit_count)
    ]

    result = plan(units, machines_)

    loads = Counter(task.machine_id for task in result.tasks)
    counts = [loads[machine.id] for machine in machines_]
    assert max(counts) - min(counts) <= 1, counts
    assert sum(counts) == unit_count


@SETTINGS
@given(clusters())
def test_repeated_plans_settle(cluster: tuple[list[UnitSpec], list[Machine]]) -> None:
    units, machines_ = cluster

    for _ in range(5):
        result = plan(units, machines_)
        if not result.tasks:
            break
        units = applied(units, result)

    assert result.tasks == ()
