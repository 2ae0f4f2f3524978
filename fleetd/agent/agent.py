"""The agent role: make systemd on this machine match the registry.

The agent reads the mirror for the units placed on its machine (and the global
units its machine matches), plans tasks with the pure reconciler, runs them
through systemd over D-Bus with one daemon-reload per batch, and publishes
each local unit's systemd state on the machine lease whenever systemd signals
a change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from fleetd.agent.tasks import AgentTask, LocalUnit, TargetUnit, plan_tasks
from fleetd.engine.scheduler import UnitSpec, global_units_for
from fleetd.errors import FleetError, RegistryError, UnitFileError
from fleetd.model import DesiredState, UnitState
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry
from fleetd.registry.mirror import RegistryMirror
from fleetd.registry.view import RegistryView
from fleetd.rules import requirements_of
from fleetd.systemd import SystemdManager, UnitSystemdState
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
        self._wake = mirror.subscribe()
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
        for unit in view.units():
            if unit.machine_id == self.machine_id:
                targets[unit.name] = TargetUnit(unit.hash, unit.raw, unit.desired_state)
                continue
            if unit.machine_id or unit.desired_state is DesiredState.INACTIVE:
                continue
            try:
                requirements = requirements_of(unit.name, UnitFile.parse(unit.raw))
            except UnitFileError:
                continue
            if requirements.is_global:
                global_specs.append(
                    UnitSpec(unit.name, requirements, unit.desired_state)
                )
        if global_specs:
            for name in global_units_for(machine, global_specs):
                global_unit = view.unit(name)
                if global_unit is not None:
                    targets[name] = TargetUnit(
                        global_unit.hash, global_unit.raw, global_unit.desired_state
                    )
        return targets

    async def reconcile(self) -> None:
        targets = self.targets(self.mirror.view)
        tasks = plan_tasks(targets, self.local)
        if tasks:
            await self.execute(tasks, targets)

    async def execute(
        self, tasks: list[AgentTask], targets: Mapping[str, TargetUnit]
    ) -> None:
        """Run ``tasks`` in order; one daemon-reload after the file changes."""
        reloaded = False
        for task in tasks:
            if task.kind in ("stop", "start") and not reloaded:
                await self._reload_if_needed(tasks)
                reloaded = True
            log.info("%s %s: %s", task.kind, task.unit, task.reason)
            try:
                await self._run(task, targets)
            except FleetError as err:
                log.error("%s %s failed: %s", task.kind, task.unit, err)
        if not reloaded:
            await self._reload_if_needed(tasks)
        self.systemd.track(self.local)
        self._publish_wake.set()

    async def _reload_if_needed(self, tasks: list[AgentTask]) -> None:
        if any(task.kind in ("load", "unload") for task in tasks):
            await self.systemd.reload()
            states = await self.systemd.states(list(self.local))
            self._systemd_states.update(states)

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
        elif task.kind == "start":
            await self.systemd.start(name)
            self.local[name] = LocalUnit(self.local[name].hash, launched=True)
        elif task.kind == "stop":
            await self.systemd.stop(name)
            self.local[name] = LocalUnit(self.local[name].hash, launched=False)

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
                self._wake.clear()
                try:
                    await self.reconcile()
                except FleetError as err:
                    log.warning("agent pass failed: %s", err)
                try:
                    async with asyncio.timeout(self.interval):
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
