"""An in-memory copy of the registry, kept current by one etcd watch.

The engine and the agent read the mirror instead of etcd: one range read at
start, then only the watch's events. After a compaction or a lost watch the
mirror reads everything again, so it never misses a change.
"""

from __future__ import annotations

import asyncio
import logging

from fleetd.errors import RegistryError
from fleetd.registry.etcd import Compacted, EtcdRegistry
from fleetd.registry.view import RegistryView

log = logging.getLogger(__name__)


class RegistryMirror:
    """The parsed registry view, updated from a watch; wakes its subscribers."""

    def __init__(self, registry: EtcdRegistry, retry_interval: float = 1.0) -> None:
        self.registry = registry
        self.view = RegistryView()
        self.revision = 0
        self._retry_interval = retry_interval
        self._subscribers: list[tuple[asyncio.Event, tuple[str, ...]]] = []
        self.synced = asyncio.Event()

    def subscribe(self, ignore: tuple[str, ...] = ()) -> asyncio.Event:
        """Return an event that is set after every change the mirror applies.

        Changes of keys that start with one of ``ignore`` do not set it,
        unless other keys changed with them. Every full read sets it.
        """
        event = asyncio.Event()
        self._subscribers.append((event, ignore))
        return event

    def _notify(self, keys: list[str] | None = None) -> None:
        for event, ignore in self._subscribers:
            relevant = keys is None or not ignore
            if not relevant and keys is not None:
                relevant = any(not key.startswith(ignore) for key in keys)
            if relevant:
                event.set()

    async def resync(self) -> None:
        revision, pairs = await self.registry.read_all()
        fresh = RegistryView()
        fresh.load(pairs)
        self.view = fresh
        self.revision = revision
        self.synced.set()
        self._notify()

    async def run(self) -> None:
        """Keep the mirror current until cancelled."""
        while True:
            try:
                await self.resync()
                async for revision, changes in self.registry.watch(self.revision + 1):
                    for key, value in changes:
                        self.view.apply(key, value)
                    self.revision = revision
                    self._notify([key for key, _ in changes])
            except Compacted as err:
                log.info("registry watch compacted, reading everything again: %s", err)
            except RegistryError as err:
                log.warning(
                    "registry watch failed, retrying in %gs: %s",
                    self._retry_interval,
                    err,
                )
                await asyncio.sleep(self._retry_interval)
