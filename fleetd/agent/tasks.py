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
