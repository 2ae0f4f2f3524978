"""The agent role: make systemd on this machine match the registry.

The agent reads the mirror for the units placed on its machine (and the global
units its machine matches) and plans tasks with the pure reconciler. It runs
them through systemd over D-Bus, with at most one daemon-reload per batch and
none for a batch that only adds units and starts them. It publishes each
local unit's systemd state on the machine lease whenever systemd signals a
change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from fleetd.agent.tasks import (
    AgentTask,
    LocalUnit,
    RetryTable,
    TargetUnit,
    plan_tasks,
)
from fleetd.engine.scheduler import UnitSpec, global_units_for
from fleetd.errors import FleetError, RegistryError, SystemdError, UnitFileError
from fleetd.model import DesiredState, UnitState
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry
from fleetd.registry.mirror import RegistryMirror
from fleetd.registry.view import RegistryView, UnitFileRecord
from fleetd.rules import Requirements, requirements_of_text
from fleetd.systemd import SystemdManager, UnitSystemdState, has_install_section
from fleetd.unit import UnitFile

log = logging.getLogger(__name__)

# systemd active states in which a unit counts as started.
_RUNNING = {"active", "activating", "reloading", "deactivating"}


class Agent:
    """Runs the units placed on this machine and reports their states."""

    def __init__(
        self,
        registry: EtcdRegistry,
        mirror: RegistryMirror,
        presence: MachinePresence,
        systemd: SystemdManager,
        interval: float = 5.0,
    ) -> None:
        self.registry = registry
        self.mirror = mirror
        self.presence = presence
        self.systemd = systemd
        self.interval = interval
        self.local: dict[str, LocalUnit] = {}
        self._systemd_states: dict[str, UnitSystemdState] = {}
        self._published: dict[str, UnitState] = {}
        # Unit name -> (file hash, its requirements or None if it does not parse).
        self._parsed: dict[str, tuple[str, Requirements | None]] = {}
        self._retries = RetryTable()
        # targets() does not read the unit states agents publish.
        self._wake = mirror.subscribe(ignore=(keys.STATES,))
        self._publish_wake = asyncio.Event()
        presence.on_register(self._on_register)

    @property
    def machine_id(self) -> str:
        return self.presence.machine.id

    def _on_register(self, _lease: int) -> None:
        # A new lease carries none of our states: publish them all again.
        self._published.clear()
        self._publish_wake.set()

    def _on_systemd_change(self, name: str, state: UnitSystemdState) -> None:
        self._systemd_states[name] = state
        self._publish_wake.set()

    async def adopt_local_units(self) -> None:
        """Take over the units a previous fleetd left in the units directory."""
        names = self.systemd.local_units()
        if not names:
            return
        states = await self.systemd.states(names)
        for name in names:
            path = self.systemd.units_dir / name
            try:
                content = path.read_text(encoding="utf-8")
                unit_hash = UnitFile.parse(content).hash()
            except (OSError, UnitFileError) as err:
                log.warning("unreadable local unit %s, unloading: %s", name, err)
                unit_hash = ""
            state = states.get(name)
            launched = state is not None and state.active in _RUNNING
            self.local[name] = LocalUnit(unit_hash, launched)
            if state is not None:
                self._systemd_states[name] = state
        log.info("adopted %d units left by a previous fleetd", len(self.local))

    def targets(self, view: RegistryView) -> dict[str, TargetUnit]:
        """Return the units this machine should have, from ``view``."""
        machine = view.machines.get(self.machine_id, self.presence.machine)
        targets: dict[str, TargetUnit] = {}
        global_specs: list[UnitSpec] = []
        placed_here: list[UnitSpec] = []
        for name, record in view.files.items():
            machine_id = view.placements.get(name, "")
            desired = view.desired.get(name, DesiredState.INACTIVE)
            if machine_id == self.machine_id:
                targets[name] = TargetUnit(record.hash, record.raw, desired)
                placed = self._requirements(name, record)
                if placed is not None:
                    placed_here.append(UnitSpec(name, placed, desired, machine_id))
                continue
            if machine_id or desired is DesiredState.INACTIVE:
                continue
            requirements = self._requirements(name, record)
            if requirements is not None and requirements.is_global:
                global_specs.append(UnitSpec(name, requirements, desired))
        if len(self._parsed) > len(view.files):
            for gone in self._parsed.keys() - view.files.keys():
                del self._parsed[gone]
        if global_specs:
            # The units placed here take part, so a global unit that conflicts
            # with one of them stays off this machine, as the engine assumes.
            specs = sorted(global_specs + placed_here, key=lambda spec: spec.name)
            for name in global_units_for(machine, specs):
                record = view.files[name]
                desired = view.desired.get(name, DesiredState.INACTIVE)
                targets[name] = TargetUnit(record.hash, record.raw, desired)
        return targets

    def _requirements(self, name: str, record: UnitFileRecord) -> Requirements | None:
        """Return the [X-Fleet] requirements of a unit file, parsed once per hash.

        None means a file with an [X-Fleet] section does not parse, so the
        unit cannot be global.
        """
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == record.hash:
            return cached[1]
        try:
            requirements: Requirements | None = requirements_of_text(name, record.raw)
        except UnitFileError:
            requirements = None
        self._parsed[name] = (record.hash, requirements)
        return requirements

    async def reconcile(self) -> None:
        targets = self.targets(self.mirror.view)
        self._retries.keep_only(targets)
        now = time.monotonic()
        tasks = [
            task
            for task in plan_tasks(targets, self.local)
            if not self._retry_later(task, targets, now)
        ]
        if tasks:
            await self.execute(tasks, targets)

    def _retry_later(
        self, task: AgentTask, targets: Mapping[str, TargetUnit], now: float
    ) -> bool:
        """Tell whether ``task`` failed for this file and must wait to retry."""
        target = targets.get(task.unit)
        if task.kind not in ("load", "start") or target is None:
            return False
        return self._retries.waiting(task.unit, target.hash, now)

    async def execute(
        self, tasks: list[AgentTask], targets: Mapping[str, TargetUnit]
    ) -> None:
        """Run ``tasks``: file changes in order, then stops and starts.

        A daemon-reload between the two runs only when _needs_reload returns
        True, because systemd could hold an outdated copy of a unit. The
        stops, then the starts, are sent to systemd concurrently.
        """
        reload = await self._needs_reload(tasks, targets)
        for task in tasks:
            if task.kind in ("unload", "load"):
                await self._run_logged(task, targets)
        if reload:
            await self._reload()
        stops = [task for task in tasks if task.kind == "stop"]
        starts = [task for task in tasks if task.kind == "start"]
        await asyncio.gather(*(self._run_logged(task, targets) for task in stops))
        results = await asyncio.gather(
            *(self._run_logged(task, targets) for task in starts)
        )
        failed = [task for task, ok in zip(starts, results, strict=True) if not ok]
        loaded = {task.unit for task in tasks if task.kind == "load"}
        retry = [task for task in failed if task.unit in loaded]
        if retry and not reload:
            # systemd notices new unit files by the modification time of
            # its unit directories. Two links within one tick of that clock
            # can leave a unit not found, and a reload reads every file again.
            log.info("retrying %d starts after a daemon-reload", len(retry))
            await self._reload()
            await asyncio.gather(*(self._run_logged(task, targets) for task in retry))
        self.systemd.track(self.local)
        self._publish_wake.set()

    async def _needs_reload(
        self, tasks: list[AgentTask], targets: Mapping[str, TargetUnit]
    ) -> bool:
        """Tell whether ``tasks`` need a daemon-reload after their file changes.

        systemd (checked with version 252) loads a unit file it has not
        loaded yet, or has loaded as not-found, when a start requests the
        unit, so new units that are started at once need no reload. A reload
        is still needed after an unload, for a unit that is only loaded, for
        a unit systemd has loaded from an older file, and for an [Install]
        section, whose runtime enable links are read on reload.
        """
        loads = [task.unit for task in tasks if task.kind == "load"]
        starts = {task.unit for task in tasks if task.kind == "start"}
        if any(task.kind == "unload" for task in tasks):
            return True
        if not loads:
            return False
        if not starts.issuperset(loads):
            # Only a start retries after a failure: see execute.
            return True
        if any(has_install_section(targets[name].raw) for name in loads):
            return True
        states = await self.systemd.states(loads)
        return any(state.load != "not-found" for state in states.values())

    async def _reload(self) -> None:
        await self.systemd.reload()
        states = await self.systemd.states(list(self.local))
        self._systemd_states.update(states)

    async def _run_logged(
        self, task: AgentTask, targets: Mapping[str, TargetUnit]
    ) -> bool:
        """Run one task and log it; False if systemd rejected it."""
        log.info("%s %s: %s", task.kind, task.unit, task.reason)
        target = targets.get(task.unit)
        try:
            await self._run(task, targets)
        except (FleetError, OSError) as err:
            # OSError: the unit file could not be written. One unit's failure
            # must not stop the agent, which runs every other unit here.
            if target is None or task.kind not in ("load", "start"):
                log.error("%s %s failed: %s", task.kind, task.unit, err)
                return False
            delay = self._retries.fail(task.unit, target.hash, time.monotonic())
            log.error(
                "%s %s failed, retrying in %gs: %s", task.kind, task.unit, delay, err
            )
            return False
        if target is not None:
            self._retries.succeed(task.unit, target.hash)
        return True

    async def _run(self, task: AgentTask, targets: Mapping[str, TargetUnit]) -> None:
        name = task.unit
        if task.kind == "unload":
            await self.systemd.remove_unit(name)
            self.local.pop(name, None)
            self._systemd_states.pop(name, None)
        elif task.kind == "load":
            target = targets[name]
            await self.systemd.write_unit(name, target.raw)
            self.local[name] = LocalUnit(target.hash, launched=False)
        elif task.kind in ("start", "stop"):
            local = self.local.get(name)
            if local is None:
                raise SystemdError(f"{task.kind} {name} skipped: its load failed")
            if task.kind == "start":
                await self.systemd.start(name)
            else:
                await self.systemd.stop(name)
            self.local[name] = LocalUnit(local.hash, launched=task.kind == "start")

    def current_states(self) -> dict[str, UnitState]:
        """Return the state to publish for every local unit."""
        states: dict[str, UnitState] = {}
        for name, local in self.local.items():
            systemd_state = self._systemd_states.get(name)
            if systemd_state is None:
                continue
            states[name] = UnitState(
                name=name,
                machine_id=self.machine_id,
                hash=local.hash,
                load_state=systemd_state.load,
                active_state=systemd_state.active,
                sub_state=systemd_state.sub,
                fleet_state="launched" if local.launched else "loaded",
            )
        return states

    async def publish(self) -> None:
        """Write changed states on the machine lease and delete stale ones."""
        await self.presence.registered.wait()
        lease = self.presence.lease
        current = self.current_states()
        ops = []
        for name, state in current.items():
            if self._published.get(name) != state:
                ops.append((name, state))
        stale = [name for name in self._published if name not in current]
        registry = self.registry
        requests = [
            registry.op_put(
                keys.state_key(name, self.machine_id), keys.encode_state(state), lease
            )
            for name, state in ops
        ] + [
            registry.op_delete(keys.state_key(name, self.machine_id)) for name in stale
        ]
        for start in range(0, len(requests), 127):
            await registry.txn([], requests[start : start + 127], "publish unit states")
        for name, state in ops:
            self._published[name] = state
        for name in stale:
            del self._published[name]

    async def run_publisher(self) -> None:
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            try:
                await self.publish()
            except RegistryError as err:
                log.warning("publishing unit states failed, retrying: %s", err)
                await asyncio.sleep(1.0)
                self._publish_wake.set()

    async def run(self) -> None:
        """Reconcile on every registry change, and every ``interval`` at least."""
        self.systemd.watch(self._on_systemd_change)
        await self.adopt_local_units()
        self.systemd.track(self.local)
        publisher = asyncio.create_task(self.run_publisher(), name="state-publisher")
        try:
            await self.mirror.synced.wait()
            while True:
                # Only a registered machine acts on placements: a fleetd whose
                # machine ID another host holds, or whose lease lapsed, waits.
                await self.presence.registered.wait()
                self._wake.clear()
                try:
                    await self.reconcile()
                except FleetError as err:
                    log.warning("agent pass failed: %s", err)
                # Wake for a retry that falls due before the next pass.
                due = self._retries.next_due(time.monotonic())
                wait = self.interval if due is None else min(self.interval, due)
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            publisher.cancel()

    async def purge(self) -> None:
        """Stop and unload every local unit, as on an orderly fleetd shutdown."""
        tasks = [AgentTask("unload", name, "fleetd stopping") for name in self.local]
        for task in tasks:
            try:
                await self._run(task, {})
            except FleetError as err:
                log.error("unload %s failed: %s", task.unit, err)
        if tasks:
            await self.systemd.reload()
