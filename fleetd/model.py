"""Records shared by the registry, the engine, the agent and fleetctl."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class DesiredState(enum.StrEnum):
    """The state the user requested for a unit: the fleet target state."""

    INACTIVE = "inactive"
    LOADED = "loaded"
    LAUNCHED = "launched"


@dataclass(frozen=True)
class Machine:
    """A live fleetd host, as registered under its lease."""

    id: str
    public_ip: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    peer_port: int = 0


@dataclass(frozen=True)
class Unit:
    """A unit in the registry: its file, desired state and placement.

    ``machine_id`` is the placement written by the engine, empty while the
    unit is not placed (always empty for global units). ``current_state`` is
    the fleet state reported by the machine it is placed on: inactive,
    loaded or launched. ``reason`` is why the engine could not place it.
    """

    name: str
    hash: str
    raw: str
    desired_state: DesiredState
    machine_id: str = ""
    current_state: str = "inactive"
    reason: str = ""


@dataclass(frozen=True)
class UnitState:
    """systemd's view of one unit on one machine, as that machine publishes it."""

    name: str
    machine_id: str
    hash: str
    load_state: str
    active_state: str
    sub_state: str
    fleet_state: str = "loaded"
