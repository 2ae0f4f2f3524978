"""The agent's reconciler: from target and local units to systemd tasks.

Pure: no I/O. The agent loop executes the tasks in the order given, with one
daemon-reload after the unloads and loads of a batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fleetd.model import DesiredState

TaskKind = Literal["unload", "load", "stop", "start"]
_ORDER: dict[TaskKind, int] = {"unload": 0, "load": 1, "stop": 2, "start": 3}


@dataclass(frozen=True)
class TargetUnit:
    """A unit this machine should have: its file and desired state."""

    hash: str
    raw: str
    state: DesiredState


@dataclass(frozen=True)
class LocalUnit:
    """A unit this machine has: the hash of its file and whether it runs."""

    hash: str
    launched: bool


@dataclass(frozen=True)
class AgentTask:
    """One systemd operation on one unit, with the reason it is needed."""

    kind: TaskKind
    unit: str
    reason: str


def plan_tasks(
    targets: Mapping[str, TargetUnit], local: Mapping[str, LocalUnit]
) -> list[AgentTask]:
    """Return the tasks that turn ``local`` into ``targets``, in execution order.

    A target in state inactive is treated as absent.
    """
    tasks: list[AgentTask] = []
    for name in sorted(local.keys() - targets.keys()):
        tasks.append(AgentTask("unload", name, "unit not placed here"))

    for name in sorted(targets):
        target = targets[name]
        have = local.get(name)
        if target.state is DesiredState.INACTIVE:
            if have is not None:
                tasks.append(AgentTask("unload", name, "desired state inactive"))
            continue
        want_running = target.state is DesiredState.LAUNCHED
        if have is None:
            tasks.append(AgentTask("load", name, "unit placed here"))
        elif have.hash != target.hash:
            tasks.append(AgentTask("unload", name, "unit file changed"))
            tasks.append(AgentTask("load", name, "unit file changed"))
            have = None
        if want_running and (have is None or not have.launched):
            tasks.append(AgentTask("start", name, "desired state launched"))
        elif not want_running and have is not None and have.launched:
            tasks.append(AgentTask("stop", name, "desired state loaded"))

    tasks.sort(key=lambda task: _ORDER[task.kind])
    return tasks


class RetryTable:
    """When a failed load or start of a unit file may be tried again.

    Each failure of the same unit and file doubles the wait, from
    ``first`` up to ``maximum`` seconds, so a unit systemd keeps rejecting
    is not retried on every agent pass, while a passing failure is retried
    soon. A new file starts afresh.
    """

    def __init__(self, first: float = 1.0, maximum: float = 60.0) -> None:
        self.first = first
        self.maximum = maximum
        self._entries: dict[tuple[str, str], tuple[float, float]] = {}

    def fail(self, unit: str, unit_hash: str, now: float) -> float:
        """Record a failure at ``now``; returns the seconds until the next try."""
        previous = self._entries.get((unit, unit_hash))
        delay = self.first if previous is None else min(previous[0] * 2, self.maximum)
        self._entries[(unit, unit_hash)] = (delay, now + delay)
        return delay

    def succeed(self, unit: str, unit_hash: str) -> None:
        self._entries.pop((unit, unit_hash), None)

    def waiting(self, unit: str, unit_hash: str, now: float) -> bool:
        """Tell whether the unit's file failed and its wait has not ended."""
        entry = self._entries.get((unit, unit_hash))
        return entry is not None and entry[1] > now

    def next_due(self, now: float) -> float | None:
        """Return the seconds until the earliest retry, None if none waits."""
        due = [retry_at for _, retry_at in self._entries.values() if retry_at > now]
        return min(due) - now if due else None

    def keep_only(self, units: Mapping[str, object]) -> None:
        """Forget the units that are not in ``units``."""
        for key in [key for key in self._entries if key[0] not in units]:
            del self._entries[key]
