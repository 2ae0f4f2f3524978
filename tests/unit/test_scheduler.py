"""Table tests of the placement rules and their messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from fleetd.engine.scheduler import (
    Plan,
    Task,
    UnitSpec,
    explain,
    global_units_for,
    plan,
)
from fleetd.errors import FleetError
from fleetd.model import DesiredState, Machine
from fleetd.rules import MetadataCondition, Requirements

LAUNCHED = DesiredState.LAUNCHED
LOADED = DesiredState.LOADED
INACTIVE = DesiredState.INACTIVE

# Machine IDs whose first 8 characters differ, as real machine IDs do.
M1 = "11111111aaaaaaaaaaaaaaaaaaaaaaaa"
M2 = "22222222bbbbbbbbbbbbbbbbbbbbbbbb"
M3 = "33333333cccccccccccccccccccccccc"


def machine(machine_id: str, **metadata: str) -> Machine:
    return Machine(id=machine_id, metadata=metadata)


def unit(
    name: str,
    on: str = "",
    state: DesiredState = LAUNCHED,
    *,
    machine_id: str = "",
    peers: Sequence[str] = (),
    conflicts: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    is_global: bool = False,
    replaces: Sequence[str] = (),
) -> UnitSpec:
    conditions = tuple(
        MetadataCondition(key, "=", value) for key, value in (metadata or {}).items()
    )
    requirements = Requirements(
        machine_id=machine_id,
        peers=tuple(peers),
        conflicts=tuple(conflicts),
        metadata=conditions,
        is_global=is_global,
        replaces=tuple(replaces),
    )
    return UnitSpec(name, requirements, state, on)


def placements(result: Plan) -> dict[str, str]:
    """Map each unit with a place task to its machine."""
    return {task.unit: task.machine_id for task in result.tasks if task.kind == "place"}


def unplacements(result: Plan) -> dict[str, str]:
    """Map each unit with an unplace task to its reason."""
    return {task.unit: task.reason for task in result.tasks if task.kind == "unplace"}


def filler(count: int, on: str, prefix: str = "filler") -> list[UnitSpec]:
    return [unit(f"{prefix}-{on[:4]}-{index}.service", on) for index in range(count)]


# Least-loaded placement


def test_least_loaded_machine_wins() -> None:
    machines = [machine(M1), machine(M2), machine(M3)]
    units = [*filler(2, M1), *filler(1, M2), *filler(3, M3), unit("web.service")]

    result = plan(units, machines)

    assert result.tasks == (
        Task("place", "web.service", M2, "desired state launched and unit not placed"),
    )
    assert result.unplaceable == {}


def test_load_tie_goes_to_lowest_id() -> None:
    machines = [machine(M3), machine(M2), machine(M1)]

    result = plan([unit("web.service", state=LOADED)], machines)

    assert placements(result) == {"web.service": M1}
    assert result.tasks[0].reason == "desired state loaded and unit not placed"


def test_earlier_decisions_count_as_load() -> None:
    machines = [machine(M1), machine(M2)]
    units = [unit(f"app-{index}.service") for index in range(4)]

    result = plan(units, machines)

    assert placements(result) == {
        "app-0.service": M1,
        "app-1.service": M2,
        "app-2.service": M1,
        "app-3.service": M2,
    }


def test_global_units_count_as_load() -> None:
    machines = [machine(M1), machine(M2, disk="ssd")]
    units = [
        unit("monitor.service", is_global=True, metadata={"disk": "ssd"}),
        *filler(1, M1),
        unit("web.service"),
    ]

    result = plan(units, machines)

    # M1 has one filler unit and M2 one global unit, so the tie goes to M1.
    assert placements(result) == {"web.service": M1}


def test_global_units_are_never_placed() -> None:
    units = [unit("monitor.service", is_global=True)]

    result = plan(units, [machine(M1)])

    assert result.tasks == ()
    assert result.unplaceable == {}


def test_unit_already_placed_stays() -> None:
    units = [unit("web.service", M2), *filler(3, M2)]

    result = plan(units, [machine(M1), machine(M2)])

    assert result.tasks == ()


# Unplacing


def test_inactive_unit_is_unplaced() -> None:
    units = [unit("web.service", M1, INACTIVE), unit("idle.service", state=INACTIVE)]

    result = plan(units, [machine(M1)])

    assert result.tasks == (
        Task("unplace", "web.service", M1, "desired state inactive"),
    )
    assert result.unplaceable == {}


def test_unit_on_dead_machine_moves() -> None:
    units = [unit("web.service", "deadbeefdeadbeefdeadbeefdeadbeef")]

    result = plan(units, [machine(M1)])

    assert result.tasks == (
        Task(
            "unplace",
            "web.service",
            "deadbeefdeadbeefdeadbeefdeadbeef",
            "machine deadbeefdeadbeefdeadbeefdeadbeef went away",
        ),
        Task(
            "place",
            "web.service",
            M1,
            "moved from machine deadbeefdeadbeefdeadbeefdeadbeef",
        ),
    )


def test_unplace_tasks_come_first() -> None:
    units = [unit("a.service"), unit("b.service", M3), unit("c.service", M1, INACTIVE)]

    result = plan(units, [machine(M1), machine(M2)])

    kinds = [task.kind for task in result.tasks]
    assert kinds == ["unplace", "unplace", "place", "place"]


def test_new_conflict_moves_later_unit() -> None:
    units = [
        unit("a.service", M1),
        unit("b.service", M1, conflicts=["a.service"]),
    ]

    result = plan(units, [machine(M1), machine(M2)])

    assert unplacements(result) == {
        "b.service": f"no longer fits machine {M1}: conflicts with a.service"
    }
    assert placements(result) == {"b.service": M2}


def test_changed_metadata_moves_unit() -> None:
    units = [unit("web.service", M1, metadata={"region": "eu"})]
    machines = [machine(M1, region="us"), machine(M2, region="eu")]

    result = plan(units, machines)

    assert unplacements(result) == {
        "web.service": f"no longer fits machine {M1}: metadata does not match region=eu"
    }
    assert placements(result) == {"web.service": M2}


def test_machine_id_change_moves_unit() -> None:
    units = [unit("web.service", M1, machine_id=M2)]

    result = plan(units, [machine(M1), machine(M2)])

    assert unplacements(result) == {
        "web.service": f"no longer fits machine {M1}: "
        f"MachineID={M2} names another machine"
    }
    assert placements(result) == {"web.service": M2}


def test_global_conflict_moves_later_unit() -> None:
    units = [
        unit("a-agent.service", is_global=True, conflicts=["web*"]),
        unit("web.service", M1),
    ]

    result = plan(units, [machine(M1), machine(M2, role="db")])

    assert unplacements(result) == {
        "web.service": f"no longer fits machine {M1}: conflicts with a-agent.service"
    }
    assert result.unplaceable == {
        "web.service": "conflicts with a-agent.service on every machine "
        "(2 machines checked)"
    }


def test_placed_unit_before_global_stays() -> None:
    # The agent takes units in name order, so web.service is taken first and
    # the global unit is the one skipped.
    units = [
        unit("web.service", M1),
        unit("zz-agent.service", is_global=True, conflicts=["web*"]),
    ]

    result = plan(units, [machine(M1)])

    assert result.tasks == ()
    assert global_units_for(machine(M1), units) == []


# MachineID


@pytest.mark.parametrize("wanted", [M2, M2[:8]])
def test_machine_id_full_or_short(wanted: str) -> None:
    units = [unit("pinned.service", machine_id=wanted)]

    result = plan(units, [machine(M1), machine(M2), machine(M3)])

    assert placements(result) == {"pinned.service": M2}


def test_machine_id_not_found_message() -> None:
    units = [unit("pinned.service", machine_id="99999999")]

    result = plan(units, [machine(M1), machine(M2)])

    assert result.unplaceable == {
        "pinned.service": "no machine has ID 99999999 (2 machines checked)"
    }


# MachineMetadata


def test_metadata_picks_matching_machine() -> None:
    machines = [machine(M1, region="us"), machine(M2, region="eu"), machine(M3)]
    units = [*filler(2, M2), unit("web.service", metadata={"region": "eu"})]

    result = plan(units, machines)

    assert placements(result) == {"web.service": M2}


def test_metadata_not_found_message() -> None:
    machines = [machine(M1, region="us"), machine(M2), machine(M3, region="ap")]
    units = [unit("web.service", metadata={"region": "eu"})]

    result = plan(units, machines)

    assert result.unplaceable == {
        "web.service": "no machine has region=eu (3 machines checked)"
    }


def test_metadata_alternatives_message() -> None:
    conditions = (
        MetadataCondition("region", "=", "eu"),
        MetadataCondition("region", "=", "us"),
        MetadataCondition("disk", "=", "ssd"),
    )
    spec = UnitSpec("web.service", Requirements(metadata=conditions), LAUNCHED)

    result = plan([spec], [machine(M1, region="eu", disk="hdd")])

    assert result.unplaceable == {
        "web.service": "no machine has region=eu or region=us, disk=ssd "
        "(1 machine checked)"
    }


# MachineOf


def test_follower_joins_its_peer() -> None:
    machines = [machine(M1), machine(M2)]
    units = [
        *filler(3, M2),
        unit("db.service", M2),
        unit("backup.service", peers=["db.service"]),
    ]

    result = plan(units, machines)

    assert placements(result) == {"backup.service": M2}


def test_follower_placed_after_peer() -> None:
    # "a-follower" sorts before "db", yet it must wait for db's placement.
    units = [
        unit("a-follower.service", peers=["db.service"]),
        unit("db.service"),
        *filler(1, M1),
    ]

    result = plan(units, [machine(M1), machine(M2)])

    assert placements(result) == {"db.service": M2, "a-follower.service": M2}


def test_follower_moves_with_peer() -> None:
    dead = "deadbeefdeadbeefdeadbeefdeadbeef"
    units = [
        unit("a-follower.service", dead, peers=["db.service"]),
        unit("db.service", dead),
        *filler(1, M1),
    ]

    result = plan(units, [machine(M1), machine(M2)])

    assert placements(result) == {"db.service": M2, "a-follower.service": M2}


def test_follower_of_moved_peer_moves() -> None:
    units = [
        unit("a.service", M1),
        unit("db.service", M1, conflicts=["a.service"]),
        unit("db-backup.service", M1, peers=["db.service"]),
    ]

    result = plan(units, [machine(M1), machine(M2)])

    assert unplacements(result) == {
        "db.service": f"no longer fits machine {M1}: conflicts with a.service",
        "db-backup.service": f"no longer fits machine {M1}: "
        "peer db.service is not on this machine",
    }
    assert placements(result) == {"db.service": M2, "db-backup.service": M2}


def test_peer_missing_message() -> None:
    units = [unit("backup.service", peers=["db.service"])]

    result = plan(units, [machine(M1), machine(M2)])

    assert result.unplaceable == {
        "backup.service": "no machine runs peer db.service (2 machines checked)"
    }


def test_peer_inactive_unplaces_follower() -> None:
    units = [
        unit("db.service", M1, INACTIVE),
        unit("backup.service", M1, peers=["db.service"]),
    ]

    result = plan(units, [machine(M1), machine(M2)])

    assert unplacements(result) == {
        "db.service": "desired state inactive",
        "backup.service": f"no longer fits machine {M1}: "
        "peer db.service is not on this machine",
    }
    assert result.unplaceable == {
        "backup.service": "no machine runs peer db.service (2 machines checked)"
    }


def test_global_peer_counts() -> None:
    machines = [machine(M1), machine(M2, disk="ssd")]
    units = [
        unit("cache.service", is_global=True, metadata={"disk": "ssd"}),
        unit("web.service", peers=["cache.service"]),
    ]

    result = plan(units, machines)

    assert placements(result) == {"web.service": M2}


# Conflicts


def test_conflict_checked_both_ways() -> None:
    machines = [machine(M1), machine(M2)]
    units = [
        unit("web-1.service", M1, conflicts=["web-*.service"]),
        unit("web-2.service"),  # no Conflicts of its own
        *filler(2, M2),
    ]

    result = plan(units, machines)

    assert placements(result) == {"web-2.service": M2}


def test_conflict_everywhere_message() -> None:
    machines = [machine(M1), machine(M2), machine(M3)]
    units = [
        unit("nginx.1.service", M1),
        unit("nginx.2.service", M2),
        unit("nginx.3.service", M3),
        unit("nginx.4.service", conflicts=["nginx.*.service"]),
    ]

    result = plan(units, machines)

    assert result.unplaceable == {
        "nginx.4.service": "conflicts with nginx.1.service, nginx.2.service, "
        "nginx.3.service on every machine (3 machines checked)"
    }


def test_conflict_names_truncated() -> None:
    machines = [machine(f"{index:032x}") for index in range(5)]
    units = [unit(f"web-{index}.service", f"{index:032x}") for index in range(5)]
    units.append(unit("web-x.service", conflicts=["web-*"]))

    result = plan(units, machines)

    assert result.unplaceable["web-x.service"] == (
        "conflicts with web-0.service, web-1.service, web-2.service and 2 more "
        "on every machine (5 machines checked)"
    )


def test_one_machine_one_conflict_message() -> None:
    units = [unit("nginx.1.service", M1), unit("nginx.2.service", conflicts=["nginx*"])]

    result = plan(units, [machine(M1)])

    assert result.unplaceable == {
        "nginx.2.service": "conflicts with nginx.1.service on every machine "
        "(1 machine checked)"
    }


def test_mixed_failures_message() -> None:
    machines = [machine(M1, region="eu"), machine(M2, region="eu"), machine(M3)]
    units = [
        unit("db.service", M1),
        unit("cache.service", M2),
        unit(
            "web.service",
            conflicts=["db.service", "cache.service"],
            metadata={"region": "eu"},
        ),
    ]

    result = plan(units, machines)

    assert result.unplaceable == {
        "web.service": "no machine fits (3 machines checked): "
        "1 machine without region=eu; 2 machines with conflicting "
        "cache.service, db.service"
    }


def test_no_machines_message() -> None:
    result = plan([unit("web.service")], [])

    assert result.unplaceable == {"web.service": "no live machines"}


# Replaces


def test_replacing_unit_moves_replaced_one() -> None:
    machines = [machine(M1), machine(M2)]
    units = [
        unit("old.service", M1),
        *filler(2, M2),
        unit("new.service", replaces=["old.service"]),
    ]

    result = plan(units, machines)

    assert unplacements(result) == {
        "old.service": f"no longer fits machine {M1}: replaced by new.service"
    }
    assert placements(result) == {"new.service": M1, "old.service": M2}


def test_replaced_unit_avoids_replacer() -> None:
    units = [
        unit("new.service", M1, replaces=["old.service"]),
        unit("old.service"),
    ]

    result = plan(units, [machine(M1)])

    assert result.unplaceable == {
        "old.service": "replaced by new.service on every machine (1 machine checked)"
    }


def test_replaced_unit_followers_move_too() -> None:
    machines = [machine(M1), machine(M2)]
    units = [
        unit("old.service", M1),
        unit("old-log.service", M1, peers=["old.service"]),
        *filler(3, M2),
        unit("new.service", replaces=["old*.service"]),
    ]

    result = plan(units, machines)

    # new.service replaces both; old-log.service moves with its peer.
    assert placements(result) == {
        "new.service": M1,
        "old.service": M2,
        "old-log.service": M2,
    }
    assert set(unplacements(result)) == {"old.service", "old-log.service"}


def test_replace_among_placed_units() -> None:
    units = [
        unit("a-new.service", M1, replaces=["b-old.service"]),
        unit("b-old.service", M1),
    ]

    result = plan(units, [machine(M1), machine(M2)])

    assert unplacements(result) == {
        "b-old.service": f"no longer fits machine {M1}: replaced by a-new.service"
    }
    assert placements(result) == {"b-old.service": M2}


def test_mutual_replaces_leave_one() -> None:
    units = [
        unit("a.service", M1, replaces=["b.service"]),
        unit("b.service", replaces=["a.service"]),
    ]

    result = plan(units, [machine(M1)])

    assert result.tasks == ()
    assert result.unplaceable == {
        "b.service": "replaced by a.service on every machine (1 machine checked)"
    }


def test_replace_ring_ends() -> None:
    # a replaces b, b replaces c, c replaces a: each unit moves at most once.
    machines = [machine(M1), machine(M2), machine(M3)]
    units = [
        unit("a.service", replaces=["b.service"]),
        unit("b.service", M1, replaces=["c.service"]),
        unit("c.service", M2, replaces=["a.service"]),
        *filler(1, M3),
    ]

    result = plan(units, machines)

    # a.service takes M1 and moves b.service to M2, which moves c.service
    # to M1, which moves a.service on. There a.service could replace
    # b.service again, but b.service has moved once, so a.service takes M3.
    assert placements(result) == {
        "b.service": M2,
        "c.service": M1,
        "a.service": M3,
    }
    assert result.unplaceable == {}


def test_replaced_peer_cannot_move() -> None:
    units = [
        unit("old.service", M1),
        unit("new.service", peers=["old.service"], replaces=["old.service"]),
    ]

    one = plan(units, [machine(M1)])
    two = plan(units, [machine(M1), machine(M2)])

    assert one.unplaceable == {
        "new.service": "cannot move old.service away on any machine (1 machine checked)"
    }
    assert two.unplaceable == {
        "new.service": "no machine fits (2 machines checked): "
        "1 machine without peer old.service; "
        "1 machine where old.service cannot move away"
    }


def test_replace_move_reruns_global_units() -> None:
    machines = [machine(M1), machine(M2)]
    units = [
        unit("b-old.service", M1),
        unit("c-global.service", is_global=True, conflicts=["b-old.service"]),
        unit("d-global.service", is_global=True, conflicts=["c-global.service"]),
        *filler(2, M2),
        unit("a-new.service", replaces=["b-old.service"]),
        unit("z-app.service", conflicts=["d-global.service"]),
    ]

    result = plan(units, machines)

    # Once b-old.service leaves M1, c-global.service runs there and pushes
    # out d-global.service, so z-app.service fits M1, the less loaded. The
    # conflict check comes before Replaces, hence the reason for b-old.
    assert placements(result) == {"a-new.service": M1, "z-app.service": M1}
    assert result.unplaceable == {
        "b-old.service": "conflicts with c-global.service on every machine "
        "(2 machines checked)"
    }


# Determinism


def test_input_order_does_not_matter() -> None:
    machines = [machine(M1), machine(M2), machine(M3)]
    units = [
        unit("a.service", conflicts=["b*"]),
        unit("b.service"),
        unit("c.service", peers=["b.service"]),
        unit("d.service", "deadbeefdeadbeefdeadbeefdeadbeef"),
    ]

    forward = plan(units, machines)
    backward = plan(units[::-1], machines[::-1])

    assert forward == backward


# global_units_for


def test_global_units_metadata_and_state() -> None:
    units = [
        unit("a-global.service", is_global=True),
        unit("b-global.service", is_global=True, metadata={"disk": "ssd"}),
        unit("c-global.service", state=INACTIVE, is_global=True),
        unit("d-global.service", is_global=True, metadata={"disk": "hdd"}),
    ]

    found = global_units_for(machine(M1, disk="ssd"), units)

    assert found == ["a-global.service", "b-global.service"]


def test_global_units_name_order_conflicts() -> None:
    units = [
        unit("a-global.service", is_global=True, conflicts=["c-*"]),
        unit("b-web.service", M1),
        unit("c-global.service", is_global=True),
        unit("d-global.service", is_global=True, conflicts=["b-web.service"]),
        unit("e-web.service", M2, conflicts=["*"]),
    ]

    found = global_units_for(machine(M1), units)

    # c-global conflicts with a-global; d-global with b-web, taken first.
    # e-web runs on another machine, so it does not count here.
    assert found == ["a-global.service"]


# explain


def test_explain_lines() -> None:
    machines = [machine(M1, region="eu"), machine(M2, region="eu"), machine(M3)]
    units = [
        unit("db.service", M1),
        unit("old.service", M2),
        unit("web.service", conflicts=["db.service"], metadata={"region": "eu"}),
        unit("new.service", M2, replaces=["old.service"]),
    ]

    lines = explain("web.service", units, machines)

    # old.service leaves M2 because new.service replaces it.
    assert lines == [
        f"{M1}: cannot run web.service: conflicts with db.service (load 1)",
        f"{M2}: can run web.service (load 1)",
        f"{M3}: cannot run web.service: metadata does not match region=eu (load 0)",
    ]


def test_explain_placed_and_replacing() -> None:
    units = [
        unit("old.service", M1),
        unit("new.service", M2, replaces=["old.service"]),
    ]

    lines = explain("new.service", units, [machine(M1), machine(M2)])

    assert lines == [
        f"{M1}: can run new.service (load 1), moving old.service away",
        f"{M2}: can run new.service (load 1, placed here)",
    ]


def test_explain_global_unit() -> None:
    units = [
        unit("a.service", M2),
        unit("agent.service", is_global=True, conflicts=["a.service"]),
    ]
    machines = [machine(M1, disk="ssd"), machine(M2, disk="ssd"), machine(M3)]
    units.append(unit("b-agent.service", is_global=True, metadata={"disk": "ssd"}))

    assert explain("agent.service", units, machines) == [
        f"{M1}: runs agent.service",
        f"{M2}: does not run agent.service: conflicts with a.service",
        f"{M3}: runs agent.service",
    ]
    assert explain("b-agent.service", units, machines)[2] == (
        f"{M3}: does not run b-agent.service: metadata does not match disk=ssd"
    )


def test_explain_unknown_unit() -> None:
    with pytest.raises(FleetError, match=r"^unit nope.service not found; "):
        explain("nope.service", [], [machine(M1)])


def test_launched_unit_placed_before_loaded_rival() -> None:
    machine = Machine("m" * 32)
    conflicting = Requirements(conflicts=("rival@*.service",))
    result = plan(
        [
            UnitSpec("rival@a.service", conflicting, DesiredState.LOADED),
            UnitSpec("rival@b.service", conflicting, DesiredState.LAUNCHED),
        ],
        [machine],
    )
    placed = [task.unit for task in result.tasks if task.kind == "place"]
    assert placed == ["rival@b.service"]
    assert "rival@a.service" in result.unplaceable
