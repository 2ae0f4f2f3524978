"""The engine role: leader election and placement commits.

One fleetd at a time leads. The leader key ``engine/leader`` holds the
leader's machine ID on the leader's machine lease, so it disappears when the
leader dies. Every placement write is a transaction that compares the leader
key's create revision with the one this engine created: a deposed leader's
write fails, because its key is gone or was created again by another leader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetd.api import metrics
from fleetd.engine.scheduler import Plan, UnitSpec, plan
from fleetd.errors import RegistryError, UnitFileError
from fleetd.model import Machine
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import MAX_TXN_OPS, EtcdRegistry
from fleetd.registry.mirror import RegistryMirror
from fleetd.registry.view import RegistryView
from fleetd.rules import Requirements, requirements_of_text

log = logging.getLogger(__name__)

# With no change to what placement reads, the engine skips its periodic pass,
# but still runs one at least this often (seconds).
QUIET_PASS_INTERVAL = 30.0


class LeadershipLost(RegistryError):
    """A fenced write failed because another engine leads now."""


@dataclass
class _Cached:
    hash: str
    requirements: Requirements


class Engine:
    """Campaigns for leadership and, while leading, places units."""

    def __init__(
        self,
        registry: EtcdRegistry,
        mirror: RegistryMirror,
        presence: MachinePresence,
        interval: float,
    ) -> None:
        self.registry = registry
        self.mirror = mirror
        self.presence = presence
        self.interval = interval
        self.leader_revision = 0
        self._requirements: dict[str, _Cached] = {}
        # Machines seen live outside an outage's grace period, by ID.
        self._remembered: dict[str, Machine] = {}
        # Placement does not depend on the unit states agents publish.
        self._wake = mirror.subscribe(ignore=(keys.STATES,))
        # The leader revision and outage grace of the last committed pass,
        # and when it started; None until a pass commits.
        self._last_pass: tuple[int, bool] | None = None
        self._last_pass_at = 0.0
        self.passes = 0

    @property
    def machine_id(self) -> str:
        return self.presence.machine.id

    async def campaign(self) -> bool:
        """Try to become leader; True if this engine leads now."""
        registry = self.registry
        created = await registry.txn(
            [registry.cmp_missing(keys.LEADER)],
            [registry.op_put(keys.LEADER, self.machine_id, self.presence.lease)],
            "campaign for engine leadership",
        )
        found = await registry.get(keys.LEADER)
        if found is None:
            return False
        value, create_revision, lease = found
        if value.decode() != self.machine_id or lease != self.presence.lease:
            return False
        if created or create_revision != self.leader_revision:
            log.info("engine leadership acquired by %s", self.machine_id)
            metrics.ENGINE_LEADER_START_TIME.set(time.time())
        self.leader_revision = create_revision
        return True

    async def run(self) -> None:
        """Lead when possible and reconcile on every registry change."""
        await self.mirror.synced.wait()
        changed = True
        while True:
            await self.presence.registered.wait()
            self.remember(self.mirror.view)
            # Cleared before the pass, so a change that arrives during the
            # pass starts the next one at once instead of after the interval.
            self._wake.clear()
            try:
                leader = self.mirror.view.leader
                if leader not in ("", self.machine_id):
                    if self.leader_revision:
                        log.info("engine leadership moved to %s", leader)
                    self.leader_revision = 0
                elif not self.leader_revision:
                    await self.campaign()
                if self.leader_revision and (changed or self.pass_due()):
                    await self.reconcile()
            except LeadershipLost:
                log.info("engine leadership lost by %s", self.machine_id)
                self.leader_revision = 0
            except RegistryError as err:
                log.warning("engine pass failed: %s", err)
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
                changed = True
            except TimeoutError:
                changed = False

    def pass_due(self) -> bool:
        """Tell whether a pass is due although nothing placement reads changed.

        It is after a failed pass or a change of leadership, during and just
        after an etcd outage's grace period (which changes the machines to
        plan for), and once every QUIET_PASS_INTERVAL in any case.
        """
        grace = self.in_outage_grace()
        return (
            grace
            or self._last_pass != (self.leader_revision, grace)
            or time.monotonic() - self._last_pass_at >= QUIET_PASS_INTERVAL
        )

    def _specs(self, view: RegistryView) -> list[UnitSpec]:
        specs: list[UnitSpec] = []
        for unit in view.units():
            cached = self._requirements.get(unit.name)
            if cached is None or cached.hash != unit.hash:
                try:
                    requirements = requirements_of_text(unit.name, unit.raw)
                except UnitFileError as err:
                    log.warning("cannot place unit %s: %s", unit.name, err)
                    continue
                cached = _Cached(unit.hash, requirements)
                self._requirements[unit.name] = cached
            specs.append(
                UnitSpec(
                    name=unit.name,
                    requirements=cached.requirements,
                    desired_state=unit.desired_state,
                    machine_id=unit.machine_id,
                )
            )
        for gone in self._requirements.keys() - view.files.keys():
            del self._requirements[gone]
        return specs

    def in_outage_grace(self) -> bool:
        """Tell whether this fleetd lost etcd less than one TTL ago."""
        since = time.monotonic() - self.presence.recovered_at
        return since < self.presence.ttl

    def remember(self, view: RegistryView) -> bool:
        """Remember the live machines unless in an outage's grace period.

        Returns True while in the grace period.
        """
        if self.in_outage_grace():
            return True
        self._remembered = dict(view.machines)
        return False

    def machines_to_plan(self, view: RegistryView) -> list[Machine]:
        """Return the live machines, plus, after an outage, the missing ones.

        When etcd comes back from an outage, each fleetd reconnects and renews
        its lease or registers again in its own time. For one TTL a machine
        missing from etcd is most likely still running its units, so they
        stay placed on it.
        """
        live = view.machine_list()
        if not self.remember(view):
            return live
        held = [
            machine
            for machine_id, machine in sorted(self._remembered.items())
            if machine_id not in view.machines
        ]
        if held:
            log.info(
                "keeping units on %d machines missing since the etcd outage",
                len(held),
            )
        return live + held

    async def reconcile(self) -> None:
        """Plan against the mirror and commit the plan, fenced by leadership."""
        started = time.monotonic()
        self.passes += 1
        self._last_pass = None
        grace = self.in_outage_grace()
        view = self.mirror.view
        machines = self.machines_to_plan(view)
        result: Plan = plan(self._specs(view), machines)

        ops: list[tuple[str, str | None]] = []
        for name in view.placements.keys() - view.files.keys():
            ops.append((keys.placement_key(name), None))
        for task in result.tasks:
            key = keys.placement_key(task.unit)
            if task.kind == "place":
                ops.append((key, task.machine_id))
            else:
                ops.append((key, None))
            log.info(
                "%s %s on %s: %s", task.kind, task.unit, task.machine_id, task.reason
            )
        ops.extend(self._reason_ops(view, result.unplaceable))
        try:
            await self.commit(ops)
        except RegistryError as err:
            failure = (
                "leadership_lost" if isinstance(err, LeadershipLost) else "registry"
            )
            metrics.record_reconcile_failure(failure, len(result.tasks))
            raise

        self._last_pass = (self.leader_revision, grace)
        self._last_pass_at = started
        elapsed = time.monotonic() - started
        metrics.record_reconcile((task.kind for task in result.tasks), elapsed)
        if elapsed > self.interval:
            log.warning(
                "engine pass took %.2fs, over its %gs interval", elapsed, self.interval
            )

    def _reason_ops(
        self, view: RegistryView, unplaceable: Mapping[str, str]
    ) -> list[tuple[str, str | None]]:
        ops: list[tuple[str, str | None]] = []
        for name, reason in unplaceable.items():
            if view.reasons.get(name) != reason:
                ops.append((keys.reason_key(name), reason))
        for name in view.reasons.keys() - unplaceable.keys():
            if name in view.files:
                ops.append((keys.reason_key(name), None))
        return ops

    async def commit(self, ops: list[tuple[str, str | None]]) -> None:
        """Write ``ops`` (key, value or None to delete) in fenced transactions."""
        registry = self.registry
        fence = registry.cmp_created_at(keys.LEADER, self.leader_revision)
        # etcd rejects a transaction that names one key twice, as an unplace
        # and a place of a moved unit do: the last write of a key wins.
        latest: dict[str, str | None] = {}
        for key, value in ops:
            latest.pop(key, None)
            latest[key] = value
        merged = list(latest.items())
        batch = MAX_TXN_OPS - 1
        for start in range(0, len(merged), batch):
            chunk = merged[start : start + batch]
            requests: list[Any] = [
                registry.op_delete(key)
                if value is None
                else registry.op_put(key, value)
                for key, value in chunk
            ]
            if not await registry.txn([fence], requests, "commit placements"):
                raise LeadershipLost("engine leader key changed")
            # Apply at once, so a pass that runs before the watch delivers
            # these writes does not plan them again.
            for key, value in chunk:
                self.mirror.view.apply(key, None if value is None else value.encode())
