"""Placement: which machine runs each unit. Pure code, no I/O and no clock.

``plan`` compares the units' desired states and placements with the live
machines and returns the tasks that make them agree, following fleet's engine:

* a unit whose desired state is inactive is unplaced;
* a unit placed on a machine that is not live, or that no longer fits its
  machine, is unplaced and placed again in the same plan;
* a unit that is not placed goes to the least-loaded machine that fits it,
  ties broken by machine ID. Load is the number of units on a machine, global
  units and the earlier decisions of the same plan included.

A machine fits a unit when five checks pass, in this order:

1. MachineID: the machine has that full or 8-character ID;
2. MachineMetadata: the machine's metadata matches;
3. MachineOf: every peer is on the machine;
4. Conflicts: no glob of the unit matches a unit there, and no glob of a
   unit there matches the unit, global units included;
5. Replaces: no unit there replaces the unit, and every unit there that it
   replaces can move away.

A unit placed next to a unit that it replaces moves that unit to the
least-loaded other machine that fits it. MachineOf followers move with their
peer. The move happens in the same plan, and the new machine must pass every
check for the moved unit.

The engine never places global units. A machine runs the global units whose
metadata matches, taken in name order together with the units placed there,
and skips a unit that conflicts with one taken before it, as the agent does.

Same input, same plan: every loop runs in unit name or machine ID order.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import filterfalse
from operator import attrgetter
from typing import Literal

from fleetd import rules
from fleetd.errors import FleetError
from fleetd.model import DesiredState, Machine
from fleetd.rules import MetadataCondition, Requirements


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """One unit as input to the scheduler: requirements, desired state, placement."""

    name: str
    requirements: Requirements
    desired_state: DesiredState
    machine_id: str = ""  # current placement, "" if none


@dataclass(frozen=True, slots=True)
class Task:
    """One placement change for the engine to write, with its reason."""

    kind: Literal["place", "unplace"]
    unit: str
    machine_id: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """The tasks of one engine pass, unplace tasks first, and the units left out."""

    tasks: tuple[Task, ...]
    unplaceable: Mapping[str, str]  # unit name -> reason, in name order


# Kinds of check failure, in the order the checks run.
_MACHINE_ID = 0
_METADATA = 1
_PEER = 2
_CONFLICT = 3
_REPLACED = 4
_STUCK = 5  # a unit this one replaces cannot move away

# A failed check: its kind and the value it names (a unit or a machine ID).
_Failure = tuple[int, str]

_NOT_PLACED = {
    state: f"desired state {state} and unit not placed" for state in DesiredState
}

_GLOB_CHARS = frozenset("*?[\\")


def _literal_prefix(pattern: str) -> str:
    """Return the text of ``pattern`` before its first glob character."""
    for index, char in enumerate(pattern):
        if char in _GLOB_CHARS:
            return pattern[:index]
    return pattern


class _Info:
    """A unit with what the checks need of it, computed once per plan."""

    __slots__ = (
        "conflicts",
        "free",
        "is_global",
        "matched_by",
        "matching",
        "name",
        "plain",
        "replaces",
        "req",
        "spec",
    )

    def __init__(
        self,
        spec: UnitSpec,
        matching: frozenset[str] | None,
        matched_by: tuple[str, ...],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.req = spec.requirements
        self.is_global = self.req.is_global
        # Machine IDs whose metadata matches; None when the unit names none.
        self.matching = matching
        # Distinct Conflicts globs of this unit, and those of any unit that
        # match this unit's name.
        conflicts = self.req.conflicts
        self.conflicts = tuple(dict.fromkeys(conflicts)) if conflicts else ()
        self.matched_by = matched_by
        # Replaces is ignored on global units: the engine cannot move them.
        self.replaces = bool(self.req.replaces) and not self.is_global
        # True when no Conflicts glob involves it and it replaces nothing,
        # so only a unit with Replaces can clash with it.
        self.free = not (self.conflicts or matched_by or self.replaces)
        # True when, in addition, no machine requirement or peer limits it.
        self.plain = self.free and not (
            self.req.machine_id or matching is not None or self.req.peers
        )


class _Node:
    """A live machine and the units on it."""

    __slots__ = ("id", "metadata", "pools", "replacers", "units")

    def __init__(self, machine: Machine) -> None:
        self.id = machine.id
        self.metadata = machine.metadata
        self.units: dict[str, _Info] = {}
        self.replacers: list[_Info] = []  # units here with Replaces, not global
        self.pools: list[_Pool] = []


class _Pool:
    """Machines ordered by (load, machine ID): one bucket of sorted IDs per load.

    The least-loaded walk reads the buckets in order without changing them,
    and a placement moves one machine to the next bucket.
    """

    __slots__ = ("buckets", "loads")

    def __init__(self) -> None:
        self.buckets: dict[int, list[str]] = {}
        self.loads: list[int] = []  # loads with a non-empty bucket, ascending

    def insert(self, load: int, machine_id: str) -> None:
        bucket = self.buckets.get(load)
        if bucket is None:
            self.buckets[load] = [machine_id]
            insort(self.loads, load)
        else:
            insort(bucket, machine_id)

    def remove(self, load: int, machine_id: str) -> None:
        bucket = self.buckets[load]
        del bucket[bisect_left(bucket, machine_id)]
        if not bucket:
            del self.buckets[load]
            del self.loads[bisect_left(self.loads, load)]


class _Planner:
    """The cluster model that one plan, explanation or global-unit query uses.

    Conflicts are indexed cluster-wide, per distinct glob: ``name_hits[glob]``
    maps a machine ID to the units there whose names match the glob, and
    ``holder_hits[glob]`` to the units there that have the glob in Conflicts.
    A conflict check is then one dict lookup per glob of the checked unit and
    per glob that matches its name, and the least-loaded walk skips machines
    found in those dicts without checking them one by one.
    """

    def __init__(self, units: Sequence[UnitSpec], machines: Sequence[Machine]) -> None:
        self.nodes: dict[str, _Node] = {
            machine.id: _Node(machine)
            for machine in sorted(machines, key=lambda machine: machine.id)
        }
        self.short_ids: dict[str, list[_Node]] = {}
        for node in self.nodes.values():
            self.short_ids.setdefault(node.id[:8], []).append(node)

        specs = sorted(units, key=attrgetter("name"))
        self._globs_by_prefix: dict[str, list[str]] = {}
        for spec in specs:
            for glob in spec.requirements.conflicts:
                globs = self._globs_by_prefix.setdefault(_literal_prefix(glob), [])
                if glob not in globs:
                    globs.append(glob)
        self._prefix_lengths = sorted({len(prefix) for prefix in self._globs_by_prefix})
        self._prefixes = tuple(self._globs_by_prefix)
        self.name_hits: dict[str, dict[str, list[str]]] = {}
        self.holder_hits: dict[str, dict[str, list[str]]] = {}
        for globs in self._globs_by_prefix.values():
            for glob in globs:
                self.name_hits[glob] = {}
                self.holder_hits[glob] = {}

        self._matching: dict[tuple[MetadataCondition, ...], frozenset[str]] = {}
        self.infos: dict[str, _Info] = {}
        for spec in specs:
            metadata = spec.requirements.metadata
            matching = self._matching_ids(metadata) if metadata else None
            self.infos[spec.name] = _Info(
                spec, matching, self._globs_matching(spec.name)
            )

        self.globals = [
            info
            for info in self.infos.values()
            if info.is_global and info.spec.desired_state != DesiredState.INACTIVE
        ]
        self.followers: dict[str, list[_Info]] = {}
        for info in self.infos.values():
            if not info.is_global:
                for peer in info.req.peers:
                    self.followers.setdefault(peer, []).append(info)

        self.location: dict[str, _Node] = {}  # placed units that are not global
        self.queue: set[str] = set()  # units to place in this plan
        self.moved: set[str] = set()  # units moved away by a Replaces this plan
        self.global_skips: dict[tuple[str, str], _Failure] = {}
        self.pools: dict[tuple[MetadataCondition, ...], _Pool] = {}
        self.unplace_tasks: dict[str, Task] = {}
        self.place_tasks: dict[str, Task] = {}
        self.unplaceable: dict[str, str] = {}

    def _matching_ids(self, metadata: tuple[MetadataCondition, ...]) -> frozenset[str]:
        found = self._matching.get(metadata)
        if found is None:
            req = Requirements(metadata=metadata)
            found = frozenset(
                node.id
                for node in self.nodes.values()
                if rules.metadata_matches(req, node.metadata)
            )
            self._matching[metadata] = found
        return found

    def _globs_matching(self, name: str) -> tuple[str, ...]:
        """Return the Conflicts globs of all units that match ``name``."""
        if not name.startswith(self._prefixes):
            return ()
        found: list[str] = []
        by_prefix = self._globs_by_prefix
        for length in self._prefix_lengths:
            if length > len(name):
                break
            for glob in by_prefix.get(name[:length], ()):
                if rules.glob_match(glob, name):
                    found.append(glob)
        return tuple(found)

    # Checks

    def failure(self, info: _Info, node: _Node) -> _Failure | None:
        """Return the first check ``node`` fails for ``info``, None if it fits."""
        req = info.req
        if req.machine_id and not rules.machine_id_matches(req, node.id):
            return (_MACHINE_ID, req.machine_id)
        if info.matching is not None and node.id not in info.matching:
            return (_METADATA, "")
        units = node.units
        for peer in req.peers:
            if peer not in units:
                return (_PEER, peer)
        return self.clash(info, node)

    def clash(self, info: _Info, node: _Node) -> _Failure | None:
        """Return the Conflicts or Replaces failure of ``info`` on ``node``."""
        other = self._conflicting(info, node.id)
        if other is not None:
            return (_CONFLICT, other)
        if info.is_global:
            return None
        for replacer in node.replacers:
            if replacer is not info and rules.replaces(
                replacer.name, replacer.req, info.name
            ):
                return (_REPLACED, replacer.name)
        if info.replaces:
            victims = self.replaced_on(info, node)
            if victims:
                stuck = self._stuck_victim(info, victims, node)
                if stuck is not None:
                    return (_STUCK, stuck)
        return None

    def _conflicting(self, info: _Info, machine_id: str) -> str | None:
        name = info.name
        for glob in info.conflicts:
            for other in self.name_hits[glob].get(machine_id, ()):
                if other != name:
                    return other
        for glob in info.matched_by:
            for other in self.holder_hits[glob].get(machine_id, ()):
                if other != name:
                    return other
        return None

    def _blockers(self, info: _Info) -> list[dict[str, list[str]]]:
        """Return the hit maps whose machines conflict with ``info``."""
        if not info.conflicts and not info.matched_by:
            return []
        found = [self.name_hits[glob] for glob in info.conflicts]
        found += [self.holder_hits[glob] for glob in info.matched_by]
        return [hits for hits in found if hits]

    def replaced_on(self, info: _Info, node: _Node) -> list[_Info]:
        """Return the units on ``node`` that ``info`` replaces, in name order."""
        found = [
            other
            for other in node.units.values()
            if other is not info
            and not other.is_global
            and rules.replaces(info.name, info.req, other.name)
        ]
        return sorted(found, key=lambda other: other.name)

    def _stuck_victim(
        self, info: _Info, victims: list[_Info], node: _Node
    ) -> str | None:
        """Return a unit that ``info`` replaces on ``node`` but cannot move away.

        A unit moves away at most once per plan, so a ring of Replaces ends.
        It cannot move when it, or a follower moving with it, is a peer of
        ``info``, or when the agent of ``node`` would then skip a unit that
        is not global: a global unit skipped because of a moved unit may run
        again and conflict with ``info`` or with a unit that stays.
        """
        group: set[str] = set()
        for victim in victims:
            if victim.name in self.moved:
                return victim.name
            for member in self._with_followers(victim, node):
                if member.name in info.req.peers:
                    return victim.name
                group.add(member.name)
        _, skipped = self._agent_view(node, group, info)
        if any(not unit.is_global for unit, _ in skipped):
            return victims[0].name
        return None

    def _agent_view(
        self, node: _Node, without: set[str], extra: _Info | None
    ) -> tuple[list[_Info], list[tuple[_Info, str]]]:
        """Return the units the agent of ``node`` would take and skip.

        Each skipped unit comes with the name of the unit it conflicts with.

        The units are those placed on ``node`` except ``without``, plus
        ``extra`` and the active global units whose metadata matches. The
        agent takes them in name order and skips each that conflicts with a
        unit taken before it.
        """
        members = [
            unit
            for unit in node.units.values()
            if not unit.is_global and unit.name not in without
        ]
        if extra is not None:
            members.append(extra)
        members += [
            unit
            for unit in self.globals
            if unit.matching is None or node.id in unit.matching
        ]
        taken: list[_Info] = []
        skipped: list[tuple[_Info, str]] = []
        for unit in sorted(members, key=_name):
            blocker = next(
                (
                    other.name
                    for other in taken
                    if rules.conflicts(unit.name, unit.req, other.name, other.req)
                ),
                None,
            )
            if blocker is None:
                taken.append(unit)
            else:
                skipped.append((unit, blocker))
        return taken, skipped

    def _with_followers(self, info: _Info, node: _Node) -> list[_Info]:
        """Return ``info`` and the units on ``node`` that follow it, transitively."""
        found = [info]
        seen = {info.name}
        for current in found:
            for follower in self.followers.get(current.name, ()):
                if (
                    follower.name not in seen
                    and self.location.get(follower.name) is node
                ):
                    seen.add(follower.name)
                    found.append(follower)
        return found

    # Model updates

    def _attach(self, info: _Info, node: _Node) -> None:
        name = info.name
        machine_id = node.id
        load = len(node.units)
        node.units[name] = info
        if not info.plain:
            if info.replaces:
                node.replacers.append(info)
            for glob in info.conflicts:
                self.holder_hits[glob].setdefault(machine_id, []).append(name)
            for glob in info.matched_by:
                self.name_hits[glob].setdefault(machine_id, []).append(name)
        for pool in node.pools:
            pool.remove(load, machine_id)
            pool.insert(load + 1, machine_id)
        if not info.is_global:
            self.location[name] = node

    def _detach(self, info: _Info, node: _Node) -> None:
        name = info.name
        machine_id = node.id
        load = len(node.units)
        del node.units[name]
        if info.replaces:
            node.replacers.remove(info)
        for glob in info.conflicts:
            _discard(self.holder_hits[glob], machine_id, name)
        for glob in info.matched_by:
            _discard(self.name_hits[glob], machine_id, name)
        for pool in node.pools:
            pool.remove(load, machine_id)
            pool.insert(load - 1, machine_id)
        self.location.pop(name, None)

    def _unplace(self, info: _Info, machine_id: str, reason: str) -> None:
        name = info.name
        placed = self.place_tasks.get(name)
        if placed is not None and placed.machine_id == machine_id:
            # Placed earlier in this plan: drop that task instead.
            del self.place_tasks[name]
        elif name not in self.unplace_tasks and info.spec.machine_id == machine_id:
            self.unplace_tasks[name] = Task("unplace", name, machine_id, reason)

    def _evict(self, info: _Info, machine_id: str, failure: _Failure) -> None:
        phrase = _phrase(failure, info)
        self._unplace(
            info, machine_id, f"no longer fits machine {machine_id}: {phrase}"
        )
        self.queue.add(info.name)

    def _place(self, info: _Info, node: _Node) -> None:
        self._attach(info, node)
        name = info.name
        previous = info.spec.machine_id
        if previous == node.id:
            # Back on the machine the registry has it on: nothing to write.
            self.unplace_tasks.pop(name, None)
            return
        if previous:
            reason = f"moved from machine {previous}"
        else:
            reason = _NOT_PLACED[info.spec.desired_state]
        self.place_tasks[name] = Task("place", name, node.id, reason)

    # Phase 1: check the current placements

    def settle(self) -> None:
        """Unplace what must go and build the model of what stays."""
        kept: dict[str, list[_Info]] = {}
        for info in self.infos.values():
            machine_id = info.spec.machine_id
            if info.is_global or not machine_id:
                continue
            if info.spec.desired_state == DesiredState.INACTIVE:
                self._unplace(info, machine_id, "desired state inactive")
                continue
            node = self.nodes.get(machine_id)
            if node is None:
                self._unplace(info, machine_id, f"machine {machine_id} went away")
                self.queue.add(info.name)
                continue
            failure = self._machine_failure(info, node)
            if failure is not None:
                self._evict(info, machine_id, failure)
                continue
            kept.setdefault(machine_id, []).append(info)
        for node in self.nodes.values():
            self._settle_node(node, kept.get(node.id, []))

    def _machine_failure(self, info: _Info, node: _Node) -> _Failure | None:
        req = info.req
        if req.machine_id and not rules.machine_id_matches(req, node.id):
            return (_MACHINE_ID, req.machine_id)
        if info.matching is not None and node.id not in info.matching:
            return (_METADATA, "")
        return None

    def _settle_node(self, node: _Node, kept: list[_Info]) -> None:
        """Take the units of ``node`` in name order as its agent would.

        A unit leaves when it conflicts with a unit taken before it, when a
        unit there replaces it, or when its MachineOf peer is gone. Removing a
        unit that lost its peer can change what else is taken, so the pass
        repeats until nothing changes.
        """
        matching_globals = [
            g for g in self.globals if g.matching is None or node.id in g.matching
        ]
        replaced = self._replaced_among(kept)
        members = sorted(
            [info for info in kept if info.name not in replaced] + matching_globals,
            key=lambda info: info.name,
        )
        lost_peer: dict[str, _Failure] = {}
        while True:
            for info in list(node.units.values()):
                self._detach(info, node)
            skipped: dict[str, _Failure] = {}
            for info in members:
                if info.name in lost_peer:
                    continue
                if info.free and not node.replacers:
                    failure = None
                else:
                    failure = self.clash(info, node)
                if failure is None:
                    self._attach(info, node)
                else:
                    skipped[info.name] = failure
            changed = False
            for info in members:
                if info.is_global or info.name not in node.units:
                    continue
                for peer in info.req.peers:
                    if peer not in node.units:
                        lost_peer[info.name] = (_PEER, peer)
                        changed = True
                        break
            if not changed:
                break

        for info in kept:
            name = info.name
            if name in node.units:
                continue
            if name in replaced:
                self.moved.add(name)
                self._evict(info, node.id, (_REPLACED, replaced[name]))
            else:
                self._evict(info, node.id, lost_peer.get(name) or skipped[name])
        for info in matching_globals:
            if info.name not in node.units:
                self.global_skips[(node.id, info.name)] = skipped[info.name]

    def _replaced_among(self, kept: list[_Info]) -> dict[str, str]:
        """Map each unit that another one in ``kept`` replaces to that unit.

        Two units that replace each other are left to the name-order pass.
        """
        replaced: dict[str, str] = {}
        for info in kept:
            if not info.replaces:
                continue
            for other in kept:
                if (
                    other is not info
                    and other.name not in replaced
                    and rules.replaces(info.name, info.req, other.name)
                    and not rules.replaces(other.name, other.req, info.name)
                ):
                    replaced[other.name] = info.name
        return replaced

    # Phase 2: place

    def place_all(self) -> None:
        """Place every unit that needs a machine, each peer before its followers."""
        inactive = DesiredState.INACTIVE
        queue = self.queue
        queued = [
            info
            for info in self.infos.values()
            if info.name in queue
            or (
                not (info.is_global or info.spec.machine_id)
                and info.spec.desired_state != inactive
            )
        ]
        queue.update(info.name for info in queued)
        # Units meant to run are placed before units only meant to be loaded,
        # so after a machine loss a loaded unit cannot take a running unit's
        # place. Within each group, name order keeps plans deterministic.
        launched = DesiredState.LAUNCHED
        queued.sort(key=lambda info: (info.spec.desired_state != launched, info.name))

        main = _Pool()
        for node in self.nodes.values():
            node.pools.append(main)
            main.insert(len(node.units), node.id)
        self.pools[()] = main
        for info in self._peer_order(queued, queue):
            self._decide(info)

    def _peer_order(self, queued: list[_Info], members: set[str]) -> list[_Info]:
        """Return ``queued``, in name order, with each unit after its peers.

        Only peers among ``members`` count; the others are placed already or
        not placed in this pass. A MachineOf cycle is placed in name order.
        """
        order: list[_Info] = []
        done: set[str] = set()
        for first in queued:
            if not first.req.peers:
                if first.name not in done:
                    order.append(first)
                    done.add(first.name)
                continue
            if first.name in done:
                continue
            done.add(first.name)
            stack = [(first, iter(first.req.peers))]
            while stack:
                current, peers = stack[-1]
                for peer in peers:
                    if peer in members and peer not in done:
                        done.add(peer)
                        dependency = self.infos[peer]
                        stack.append((dependency, iter(dependency.req.peers)))
                        break
                else:
                    stack.pop()
                    order.append(current)
        return order

    def _decide(self, info: _Info) -> None:
        node = self._choose(info)
        if node is None:
            self.unplaceable[info.name] = self._why_not(info)
            return
        self.unplaceable.pop(info.name, None)
        self._place(info, node)
        if info.replaces:
            victims = self.replaced_on(info, node)
            if victims:
                self._move_away(victims, node, info.name)

    def _move_away(self, victims: list[_Info], node: _Node, replacer: str) -> None:
        """Move ``victims`` off ``node``, with the units there that follow them."""
        group: dict[str, _Info] = {}
        for victim in victims:
            self.moved.add(victim.name)
            for member in self._with_followers(victim, node):
                group.setdefault(member.name, member)
        for name, member in sorted(group.items()):
            self._detach(member, node)
            if member.name in self.moved:
                failure: _Failure = (_REPLACED, replacer)
            else:
                peer = next(peer for peer in member.req.peers if peer in group)
                failure = (_PEER, peer)
            phrase = _phrase(failure, member)
            self._unplace(
                member, node.id, f"no longer fits machine {node.id}: {phrase}"
            )
            self.queue.add(name)
        # A global unit skipped because of a moved unit runs again, and may
        # push out another global unit that conflicts with it.
        taken, skipped = self._agent_view(node, set(), None)
        for unit, blocker in skipped:
            if unit.name in node.units:
                self._detach(unit, node)
            self.global_skips[(node.id, unit.name)] = (_CONFLICT, blocker)
        for unit in taken:
            if unit.name not in node.units:
                self._attach(unit, node)
                self.global_skips.pop((node.id, unit.name), None)
        for member in self._peer_order(sorted(group.values(), key=_name), set(group)):
            self._decide(member)

    def _choose(self, info: _Info) -> _Node | None:
        req = info.req
        for peer in req.peers:
            peer_info = self.infos.get(peer)
            if peer_info is None:
                return None
            if not peer_info.is_global:
                node = self.location.get(peer)
                if node is None or self.failure(info, node) is not None:
                    return None
                return node
        if req.machine_id:
            best: _Node | None = None
            for node in self._nodes_named(req):
                if self.failure(info, node) is None and (
                    best is None
                    or (len(node.units), node.id) < (len(best.units), best.id)
                ):
                    best = node
            return best
        pool = self.pools[()] if info.matching is None else self._pool(info)
        nodes = self.nodes
        if info.plain:
            for load in pool.loads:
                for machine_id in pool.buckets[load]:
                    node = nodes[machine_id]
                    if not node.replacers or self.clash(info, node) is None:
                        return node
            return None
        blockers = self._blockers(info)
        for load in pool.loads:
            # Machines in a blocker map conflict with the unit: filterfalse
            # skips them at C speed, which matters when most of the least
            # loaded machines hold a conflicting unit.
            machine_ids: Iterable[str] = pool.buckets[load]
            for hits in blockers:
                machine_ids = filterfalse(hits.__contains__, machine_ids)
            for machine_id in machine_ids:
                node = nodes[machine_id]
                if self.failure(info, node) is None:
                    return node
        return None

    def _nodes_named(self, req: Requirements) -> list[_Node]:
        candidates = list(self.short_ids.get(req.machine_id, ()))
        exact = self.nodes.get(req.machine_id)
        if exact is not None and exact not in candidates:
            candidates.append(exact)
        return [node for node in candidates if rules.machine_id_matches(req, node.id)]

    def _pool(self, info: _Info) -> _Pool:
        """Return the pool of machines whose metadata matches ``info``."""
        if info.matching is None:
            return self.pools[()]
        key = info.req.metadata
        pool = self.pools.get(key)
        if pool is None:
            pool = _Pool()
            for machine_id in info.matching:
                node = self.nodes[machine_id]
                node.pools.append(pool)
                pool.insert(len(node.units), machine_id)
            self.pools[key] = pool
        return pool

    def _why_not(self, info: _Info) -> str:
        req = info.req
        if req.machine_id or info.matching is not None or req.peers or info.replaces:
            failures = [
                failure
                for node in self.nodes.values()
                if (failure := self.failure(info, node)) is not None
            ]
            return _summary(failures, len(self.nodes), info)

        # Only Conflicts and Replaces can fail, so check just those. This
        # runs on every machine for each unplaceable unit, on every pass.
        failures = []
        for node in self.nodes.values():
            other = self._conflicting(info, node.id)
            if other is not None:
                failures.append((_CONFLICT, other))
            elif node.replacers:
                failure = self.clash(info, node)
                if failure is not None:
                    failures.append(failure)
        return _summary(failures, len(self.nodes), info)

    def result(self) -> Plan:
        tasks = (*self.unplace_tasks.values(), *self.place_tasks.values())
        return Plan(tasks=tasks, unplaceable=dict(sorted(self.unplaceable.items())))


def _name(info: _Info) -> str:
    return info.name


def _discard(hits: dict[str, list[str]], machine_id: str, name: str) -> None:
    names = hits[machine_id]
    names.remove(name)
    if not names:
        del hits[machine_id]


# Messages


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _names(names: Iterable[str]) -> str:
    distinct = set(names)
    first = heapq.nsmallest(3, distinct)
    if len(distinct) <= 3:
        return ", ".join(first)
    return f"{', '.join(first)} and {len(distinct) - 3} more"


def _describe_metadata(conditions: Sequence[MetadataCondition]) -> str:
    """Describe conditions as ``region=eu or region=us, disk=ssd``.

    Values of "=" conditions on one key are alternatives, so they are joined
    with "or"; every other condition is listed on its own.
    """
    groups: dict[str, list[str]] = {}
    for condition in conditions:
        text = f"{condition.key}{condition.op}{condition.value}"
        key = condition.key if condition.op == "=" else f"\0{text}"
        groups.setdefault(key, []).append(text)
    return ", ".join(" or ".join(texts) for texts in groups.values())


def _phrase(failure: _Failure, info: _Info) -> str:
    """Say why one machine cannot run ``info``."""
    kind, value = failure
    if kind == _MACHINE_ID:
        return f"MachineID={value} names another machine"
    if kind == _METADATA:
        return f"metadata does not match {_describe_metadata(info.req.metadata)}"
    if kind == _PEER:
        return f"peer {value} is not on this machine"
    if kind == _CONFLICT:
        return f"conflicts with {value}"
    if kind == _REPLACED:
        return f"replaced by {value}"
    return f"cannot move {value} away"


def _summary(failures: list[_Failure], machine_count: int, info: _Info) -> str:
    """Say why no machine can run ``info``, given each machine's failure."""
    checked = f"{_count(machine_count, 'machine')} checked"
    if machine_count == 0:
        return "no live machines"
    grouped: dict[int, list[str]] = {}
    for kind, value in failures:
        grouped.setdefault(kind, []).append(value)
    by_kind = {kind: grouped[kind] for kind in sorted(grouped)}
    if not by_kind:
        return f"no machine fits ({checked})"

    if len(by_kind) == 1:
        ((kind, values),) = by_kind.items()
        names = _names(values)
        if kind == _MACHINE_ID:
            return f"no machine has ID {names} ({checked})"
        if kind == _METADATA:
            return f"no machine has {_describe_metadata(info.req.metadata)} ({checked})"
        if kind == _PEER:
            return f"no machine runs peer {names} ({checked})"
        if kind == _CONFLICT:
            return f"conflicts with {names} on every machine ({checked})"
        if kind == _REPLACED:
            return f"replaced by {names} on every machine ({checked})"
        return f"cannot move {names} away on any machine ({checked})"

    parts = []
    for kind, values in by_kind.items():
        machines = _count(len(values), "machine")
        names = _names(values)
        if kind == _MACHINE_ID:
            parts.append(f"{machines} not named by MachineID={names}")
        elif kind == _METADATA:
            parts.append(f"{machines} without {_describe_metadata(info.req.metadata)}")
        elif kind == _PEER:
            parts.append(f"{machines} without peer {names}")
        elif kind == _CONFLICT:
            parts.append(f"{machines} with conflicting {names}")
        elif kind == _REPLACED:
            parts.append(f"{machines} with {names} replacing it")
        else:
            parts.append(f"{machines} where {names} cannot move away")
    return f"no machine fits ({checked}): {'; '.join(parts)}"


# Public functions


def plan(units: Sequence[UnitSpec], machines: Sequence[Machine]) -> Plan:
    """Compute the placement tasks that bring ``units`` in line with ``machines``.

    ``machines`` are the live machines; a placement on any other machine
    counts as gone. Unit names must be unique. The same input always gives
    the same plan.
    """
    planner = _Planner(units, machines)
    planner.settle()
    planner.place_all()
    return planner.result()


def global_units_for(machine: Machine, units: Sequence[UnitSpec]) -> list[str]:
    """Return, in name order, the global units that ``machine`` runs.

    A global unit runs where its metadata matches and it conflicts with no
    unit taken before it, in name order, among the units placed there and the
    other global units. Units with desired state inactive run nowhere.
    """
    relevant = [
        spec
        for spec in units
        if spec.requirements.is_global or spec.machine_id == machine.id
    ]
    planner = _Planner(relevant, [machine])
    planner.settle()
    node = planner.nodes[machine.id]
    return sorted(name for name, info in node.units.items() if info.is_global)


def explain(
    unit: str, units: Sequence[UnitSpec], machines: Sequence[Machine]
) -> list[str]:
    """Say, one line per machine in ID order, why it can or cannot run ``unit``.

    The lines describe the cluster as placed now, less the placements that
    ``plan`` would remove because they no longer hold. Raises FleetError if
    ``unit`` is not among ``units``.
    """
    planner = _Planner(units, machines)
    info = planner.infos.get(unit)
    if info is None:
        raise FleetError(
            f"unit {unit} not found; check the name with fleetctl list-unit-files"
        )
    planner.settle()

    lines = []
    for node in planner.nodes.values():
        prefix = f"{node.id}: "
        if info.is_global:
            lines.append(prefix + _explain_global(planner, info, node))
            continue
        load = f"load {len(node.units)}"
        if planner.location.get(unit) is node:
            load += ", placed here"
        failure = planner.failure(info, node)
        if failure is not None:
            lines.append(
                f"{prefix}cannot run {unit}: {_phrase(failure, info)} ({load})"
            )
            continue
        line = f"{prefix}can run {unit} ({load})"
        victims = [victim.name for victim in planner.replaced_on(info, node)]
        if victims:
            line += f", moving {_names(victims)} away"
        lines.append(line)
    return lines


def _explain_global(planner: _Planner, info: _Info, node: _Node) -> str:
    unit = info.name
    if info.spec.desired_state == DesiredState.INACTIVE:
        return f"does not run {unit}: desired state inactive"
    if info.name in node.units:
        return f"runs {unit}"
    failure = planner.global_skips.get((node.id, unit), (_METADATA, ""))
    return f"does not run {unit}: {_phrase(failure, info)}"
