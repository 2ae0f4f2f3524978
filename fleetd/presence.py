"""Machine registration: this fleetd's machine key, kept alive on a lease.

The lease carries everything that must vanish with the machine: its machine
key, the unit states it publishes and, while it leads, the engine leader key.
When the lease is lost (etcd unreachable for longer than the TTL) a new one is
granted and the machine registers again; listeners are called so they can
publish their keys again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from fleetd.errors import RegistryError
from fleetd.model import Machine
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry

log = logging.getLogger(__name__)


class MachinePresence:
    """Registers ``machine`` under a lease of ``ttl`` seconds and renews it."""

    def __init__(
        self,
        registry: EtcdRegistry,
        machine: Machine,
        ttl: float,
        lease_file: Path | None = None,
    ) -> None:
        self.registry = registry
        self.machine = machine
        self.ttl = max(1, math.ceil(ttl))
        self.lease = 0
        self.registered = asyncio.Event()
        # When renewals last worked again after failing (monotonic seconds).
        # Other machines' keys may be missing for up to a TTL after that,
        # while their fleetd reconnects too.
        self.recovered_at = -math.inf
        self._lease_file = lease_file
        self._listeners: list[Callable[[int], None]] = []

    def on_register(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(lease)`` after every successful registration."""
        self._listeners.append(listener)

    async def _adopt_previous_lease(self) -> bool:
        """Take over the lease of this machine's previous fleetd, if still alive.

        A restarted fleetd finds its own machine key still registered until
        the old lease expires. The lease ID saved in the private /run distinguishes
        our own key from a duplicate machine ID on another host.
        """
        if self._lease_file is None or not self._lease_file.exists():
            return False
        try:
            saved = int(self._lease_file.read_text().strip())
        except ValueError:
            return False
        found = await self.registry.get(keys.machine_key(self.machine.id))
        if found is None or found[2] != saved:
            return False
        if await self.registry.keep_alive(saved) <= 0:
            return False
        self.lease = saved
        await self.registry.put(
            keys.machine_key(self.machine.id),
            keys.encode_machine(self.machine),
            lease=saved,
        )
        return True

    async def register_once(self) -> bool:
        """Try once to register; False if another fleetd registered this machine ID."""
        if await self._adopt_previous_lease():
            log.info("re-registered machine %s on its previous lease", self.machine.id)
        else:
            lease = await self.registry.grant_lease(self.ttl)
            key = keys.machine_key(self.machine.id)
            created = await self.registry.txn(
                [self.registry.cmp_missing(key)],
                [self.registry.op_put(key, keys.encode_machine(self.machine), lease)],
                f"register machine {self.machine.id}",
            )
            if not created:
                await self.registry.revoke_lease(lease)
                return False
            self.lease = lease
        if self._lease_file is not None:
            self._lease_file.parent.mkdir(parents=True, exist_ok=True)
            self._lease_file.write_text(f"{self.lease}\n")
        self.registered.set()
        for listener in self._listeners:
            listener(self.lease)
        return True

    async def register(self) -> None:
        """Register, retrying with backoff from 1 s up to 60 s."""
        delay = 1.0
        while True:
            try:
                if await self.register_once():
                    log.info(
                        "registered machine %s (public IP %s, TTL %ds)",
                        self.machine.id,
                        self.machine.public_ip or "-",
                        self.ttl,
                    )
                    return
                log.error(
                    "machine ID %s is already registered by another fleetd: give "
                    "this host its own /etc/machine-id; retrying in %gs",
                    self.machine.id,
                    delay,
                )
            except RegistryError as err:
                log.warning("registration failed, retrying in %gs: %s", delay, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def run(self) -> None:
        """Register, then renew the lease every third of the TTL until cancelled."""
        await self.register()
        interval = self.ttl / 3
        failing = False
        while True:
            # After a failed renewal, retry often: the lease is running out.
            await asyncio.sleep(min(interval, 0.5) if failing else interval)
            try:
                remaining = await self.registry.keep_alive(self.lease)
            except RegistryError as err:
                if not failing:
                    log.warning("lease renewal failed: %s", err)
                failing = True
                continue
            if failing:
                log.info("lease renewal works again")
                self.recovered_at = time.monotonic()
                failing = False
            if remaining <= 0:
                log.warning("lease %x expired; registering again", self.lease)
                self.registered.clear()
                await self.register()
                self.recovered_at = time.monotonic()

    async def withdraw(self) -> None:
        """Revoke the lease: the machine key and everything on the lease go."""
        if self.lease:
            await self.registry.revoke_lease(self.lease)
            self.lease = 0
        if self._lease_file is not None:
            self._lease_file.unlink(missing_ok=True)
