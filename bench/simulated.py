"""SIMULATION: lightweight machines that register in real etcd but run nothing.

A ``SimulatedMachines`` object replaces many fleetd agents in one
process, for the scale benchmark only. Each simulated machine gets its own
lease and machine key, exactly as fleetd's registration writes them, and its
lease is renewed every third of the TTL. One shared mirror of the registry
replaces the per-machine watch of a real fleetd, and for every unit the
engine places on a simulated machine the simulation publishes the state a
real agent would publish once systemd reports the unit active, without
starting anything. So the engine, etcd and the real hosts see a cluster of
``count`` machines; only the agents' systemd work is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from fleetd.errors import RegistryError
from fleetd.model import Machine, UnitState
from fleetd.registry import view as keys
from fleetd.registry.etcd import MAX_TXN_OPS, EtcdRegistry
from fleetd.registry.mirror import RegistryMirror

log = logging.getLogger(__name__)


class SimulatedMachines:
    """``count`` simulated machines with machine IDs ``51m...`` and a shared mirror."""

    def __init__(self, registry: EtcdRegistry, count: int, ttl: int = 10) -> None:
        self.registry = registry
        self.ttl = ttl
        self.machines = [
            Machine(
                id="51" + uuid.uuid4().hex[2:],
                public_ip="",
                metadata={"simulated": "true"},
                version="simulation",
            )
            for _ in range(count)
        ]
        self.ids = {machine.id for machine in self.machines}
        self.leases: dict[str, int] = {}
        self.mirror = RegistryMirror(registry)
        self._published: dict[str, str] = {}  # unit name -> machine ID
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SimulatedMachines:
        await self._register()
        self._tasks = [
            asyncio.create_task(self._keep_alive()),
            asyncio.create_task(self.mirror.run()),
            asyncio.create_task(self._agent()),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _register(self) -> None:
        limit = asyncio.Semaphore(16)

        async def register(machine: Machine) -> None:
            async with limit:
                lease = await self.registry.grant_lease(self.ttl)
                await self.registry.put(
                    keys.machine_key(machine.id), keys.encode_machine(machine), lease
                )
                self.leases[machine.id] = lease

        await asyncio.gather(*(register(machine) for machine in self.machines))

    async def _keep_alive(self) -> None:
        """Renew every lease each third of the TTL, one request per lease.

        The renewals are spread over the interval in 30 slices, as
        independent machines would renew at different moments. Each is one
        keep-alive POST, as a real fleetd sends, so etcd serves as many
        requests as it would for that many fleetd instances.
        """
        interval = self.ttl / 3
        slices = 30
        while True:
            leases = list(self.leases.values())
            size = max(1, -(-len(leases) // slices))
            for start in range(0, max(len(leases), 1), size):
                renewals = leases[start : start + size]
                results = await asyncio.gather(
                    *(self.registry.keep_alive(lease) for lease in renewals),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(
                        result, RegistryError
                    ):
                        raise result
                failed = [r for r in results if isinstance(r, RegistryError)]
                if failed:
                    log.warning(
                        "%d of %d simulated lease renewals failed: %s",
                        len(failed),
                        len(renewals),
                        failed[0],
                    )
                await asyncio.sleep(interval / slices)

    async def _agent(self) -> None:
        """Publish an active state for each unit placed on a simulated machine."""
        wake = self.mirror.subscribe()
        await self.mirror.synced.wait()
        while True:
            await wake.wait()
            wake.clear()
            await self._publish()

    async def _publish(self) -> None:
        view = self.mirror.view
        requests: list[Any] = []
        placed: dict[str, str] = {}
        for name, machine_id in view.placements.items():
            if machine_id not in self.ids or name not in view.files:
                continue
            placed[name] = machine_id
            if self._published.get(name) == machine_id:
                continue
            state = UnitState(
                name=name,
                machine_id=machine_id,
                hash=view.files[name].hash,
                load_state="loaded",
                active_state="active",
                sub_state="running",
                fleet_state="launched",
            )
            requests.append(
                self.registry.op_put(
                    keys.state_key(name, machine_id),
                    keys.encode_state(state),
                    self.leases[machine_id],
                )
            )
        for name, machine_id in self._published.items():
            if placed.get(name) != machine_id:
                requests.append(
                    self.registry.op_delete(keys.state_key(name, machine_id))
                )
        batch = MAX_TXN_OPS - 1
        await asyncio.gather(
            *(
                self.registry.txn([], requests[start : start + batch], "simulate")
                for start in range(0, len(requests), batch)
            )
        )
        self._published = placed
