from fleetd.agent.tasks import (
    AgentTask,
    LocalUnit,
    RetryTable,
    TargetUnit,
    plan_tasks,
)
from fleetd.model import DesiredState

LAUNCHED = DesiredState.LAUNCHED
LOADED = DesiredState.LOADED
INACTIVE = DesiredState.INACTIVE


def kinds(tasks: list[AgentTask]) -> list[tuple[str, str]]:
    return [(task.kind, task.unit) for task in tasks]


def test_new_launched_unit_loads_then_starts() -> None:
    tasks = plan_tasks({"a.service": TargetUnit("h1", "raw", LAUNCHED)}, {})
    assert kinds(tasks) == [("load", "a.service"), ("start", "a.service")]


def test_new_loaded_unit_only_loads() -> None:
    tasks = plan_tasks({"a.service": TargetUnit("h1", "raw", LOADED)}, {})
    assert kinds(tasks) == [("load", "a.service")]


def test_unit_no_longer_placed_is_unloaded() -> None:
    tasks = plan_tasks({}, {"a.service": LocalUnit("h1", launched=True)})
    assert kinds(tasks) == [("unload", "a.service")]
    assert tasks[0].reason == "unit not placed here"


def test_inactive_target_unloads_local_unit() -> None:
    tasks = plan_tasks(
        {"a.service": TargetUnit("h1", "raw", INACTIVE)},
        {"a.service": LocalUnit("h1", launched=False)},
    )
    assert kinds(tasks) == [("unload", "a.service")]


def test_inactive_target_without_local_unit_does_nothing() -> None:
    assert plan_tasks({"a.service": TargetUnit("h1", "raw", INACTIVE)}, {}) == []


def test_launched_to_loaded_stops() -> None:
    tasks = plan_tasks(
        {"a.service": TargetUnit("h1", "raw", LOADED)},
        {"a.service": LocalUnit("h1", launched=True)},
    )
    assert kinds(tasks) == [("stop", "a.service")]


def test_loaded_to_launched_starts() -> None:
    tasks = plan_tasks(
        {"a.service": TargetUnit("h1", "raw", LAUNCHED)},
        {"a.service": LocalUnit("h1", launched=False)},
    )
    assert kinds(tasks) == [("start", "a.service")]


def test_changed_file_is_reloaded_and_restarted() -> None:
    tasks = plan_tasks(
        {"a.service": TargetUnit("h2", "raw", LAUNCHED)},
        {"a.service": LocalUnit("h1", launched=True)},
    )
    assert kinds(tasks) == [
        ("unload", "a.service"),
        ("load", "a.service"),
        ("start", "a.service"),
    ]


def test_steady_state_needs_no_task() -> None:
    tasks = plan_tasks(
        {"a.service": TargetUnit("h1", "raw", LAUNCHED)},
        {"a.service": LocalUnit("h1", launched=True)},
    )
    assert tasks == []


def test_batch_orders_unloads_loads_stops_starts() -> None:
    tasks = plan_tasks(
        {
            "b.service": TargetUnit("h", "raw", LAUNCHED),
            "c.service": TargetUnit("h", "raw", LOADED),
        },
        {
            "a.service": LocalUnit("h", launched=True),
            "c.service": LocalUnit("h", launched=True),
        },
    )
    assert [task.kind for task in tasks] == ["unload", "load", "stop", "start"]


def test_retry_waits_double_up_to_maximum() -> None:
    table = RetryTable(first=5, maximum=12)
    assert table.fail("a.service", "h1", now=0) == 5
    assert table.waiting("a.service", "h1", now=4)
    assert not table.waiting("a.service", "h1", now=5)
    assert table.fail("a.service", "h1", now=5) == 10
    assert table.fail("a.service", "h1", now=15) == 12


def test_retry_next_due_is_earliest_wait() -> None:
    table = RetryTable(first=5)
    assert table.next_due(now=0) is None
    table.fail("a.service", "h1", now=0)
    table.fail("b.service", "h1", now=2)
    assert table.next_due(now=1) == 4
    assert table.next_due(now=10) is None


def test_retry_new_file_is_not_waiting() -> None:
    table = RetryTable()
    table.fail("a.service", "h1", now=0)
    assert not table.waiting("a.service", "h2", now=1)


def test_retry_success_and_removal_forget() -> None:
    table = RetryTable()
    table.fail("a.service", "h1", now=0)
    table.fail("b.service", "h1", now=0)
    table.succeed("a.service", "h1")
    table.keep_only({"c.service": None})
    assert not table.waiting("a.service", "h1", now=1)
    assert not table.waiting("b.service", "h1", now=1)
