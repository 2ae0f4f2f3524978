"""The data source of the API handlers: the registry mirror and etcd.

Reads come from the registry mirror that the engine and the agent also use,
so a page of 10,000 units costs no etcd round trip. A write goes to etcd and
then waits, up to ``write_timeout`` seconds, until the mirror shows it, so a
client that reads right after its own write gets the new value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetd.api.schema import (
    JSONObject,
    MetadataOperation,
    machine_json,
    options_json,
    unit_json,
    unit_state_json,
)
from fleetd.errors import UnitFileError
from fleetd.model import DesiredState
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry
from fleetd.registry.mirror import RegistryMirror
from fleetd.registry.view import RegistryView
from fleetd.rules import requirements_of
from fleetd.unit import UnitFile

log = logging.getLogger(__name__)

ViewCondition = Callable[[RegistryView], bool]


@dataclass(frozen=True)
class ParsedFile:
    """The API form of a stored unit file, computed once per unit hash."""

    options: list[JSONObject]
    is_global: bool


class ApiBackend:
    """The registry operations of the API, over one mirror and one registry."""

    def __init__(
        self,
        registry: EtcdRegistry,
        mirror: RegistryMirror,
        ready: Callable[[], bool],
        machine_id: str,
        token_limit: int = 100,
        write_timeout: float = 5.0,
    ) -> None:
        self.registry = registry
        self.mirror = mirror
        self.ready = ready
        self.machine_id = machine_id
        self.token_limit = token_limit
        self.write_timeout = write_timeout
        self._parsed: dict[str, ParsedFile] = {}
        self._lists: dict[str, tuple[tuple[int, int], Any]] = {}
        # Per list name: the stamp of the mirror's contents, and the encoded
        # pages served since, by page number.
        self._pages: dict[str, tuple[tuple[int, int], dict[int, bytes]]] = {}
        self._changed = asyncio.Condition()
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following the mirror's changes, for writes that wait on them."""
        event = self.mirror.subscribe()

        async def follow() -> None:
            while True:
                await event.wait()
                event.clear()
                async with self._changed:
                    self._changed.notify_all()

        self._watcher = asyncio.create_task(follow())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    @property
    def view(self) -> RegistryView:
        return self.mirror.view

    # -- reads --------------------------------------------------------------

    def _stamp(self) -> tuple[int, int]:
        # The view object changes on a full re-read and the revision on every
        # watch event, so together they identify the mirror's contents.
        return (id(self.mirror.view), self.mirror.revision)

    def _cached(self, name: str, build: Callable[[], Any]) -> Any:
        stamp = self._stamp()
        cached = self._lists.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        value = build()
        self._lists[name] = (stamp, value)
        return value

    def encoded_page(self, name: str, page: int, encode: Callable[[], bytes]) -> bytes:
        """Return page ``page`` of the list ``name``, from ``encode`` or the cache.

        The cache of a list is dropped when the mirror's contents change, so
        ``encode`` must encode the page of the current contents.
        """
        stamp = self._stamp()
        cached = self._pages.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, {})
            self._pages[name] = cached
        encoded = cached[1].get(page)
        if encoded is None:
            encoded = encode()
            cached[1][page] = encoded
        return encoded

    def parsed_file(self, name: str, unit_hash: str, raw: str) -> ParsedFile:
        parsed = self._parsed.get(unit_hash)
        if parsed is None:
            try:
                unit_file = UnitFile.parse(raw)
                is_global = requirements_of(name, unit_file).is_global
            except UnitFileError as err:
                # Only a parser change can make a stored file unparsable.
                log.warning("stored unit %s does not parse: %s", name, err)
                unit_file, is_global = UnitFile(), False
            parsed = ParsedFile(options_json(unit_file.options), is_global)
            if len(self._parsed) > 2 * len(self.view.files) + 1000:
                self._parsed.clear()
            self._parsed[unit_hash] = parsed
        return parsed

    def unit(self, name: str) -> JSONObject | None:
        unit = self.view.unit(name)
        if unit is None:
            return None
        parsed = self.parsed_file(unit.name, unit.hash, unit.raw)
        # Global units have no placement and no single current state; the
        # original left both fields out for them.
        current = "" if parsed.is_global else unit.current_state
        machine = "" if parsed.is_global else unit.machine_id
        return unit_json(
            unit.name, parsed.options, unit.desired_state.value, current, machine
        )

    def units(self) -> list[JSONObject]:
        def build() -> list[JSONObject]:
            found = (self.unit(name) for name in sorted(self.view.files))
            return [unit for unit in found if unit is not None]

        result: list[JSONObject] = self._cached("units", build)
        return result

    def unit_states(self) -> list[JSONObject]:
        def build() -> list[JSONObject]:
            return [unit_state_json(state) for state in self.view.unit_states()]

        result: list[JSONObject] = self._cached("states", build)
        return result

    def unit_state(self, name: str) -> JSONObject | None:
        """Return the state of ``name`` on the first machine by ID, or None."""
        per_machine = self.view.states.get(name)
        if not per_machine:
            return None
        return unit_state_json(per_machine[min(per_machine)])

    def machines(self) -> list[JSONObject]:
        def build() -> list[JSONObject]:
            return [machine_json(machine) for machine in self.view.machine_list()]

        result: list[JSONObject] = self._cached("machines", build)
        return result

    def unit_file(self, name: str) -> tuple[str, DesiredState] | None:
        """Return the stored hash and desired state of a unit, or None."""
        record = self.view.files.get(name)
        if record is None:
            return None
        return record.hash, self.view.desired.get(name, DesiredState.INACTIVE)

    def knows_machine(self, machine_id: str) -> bool:
        """Tell whether a machine is live or has dynamic metadata stored."""
        view = self.view
        return machine_id in view.machines or machine_id in view.dynamic_metadata

    # -- writes -------------------------------------------------------------

    async def _until(self, condition: ViewCondition, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: condition(self.view)),
                    self.write_timeout,
                )
            except TimeoutError:
                # The write is in etcd; only this fleetd's copy lags behind.
                log.warning(
                    "the registry mirror did not show %s within %gs",
                    what,
                    self.write_timeout,
                )

    async def create_unit(
        self, name: str, raw: str, unit_hash: str, desired: DesiredState
    ) -> bool:
        """Store a new unit; False, writing nothing, if it exists already."""
        created = await self.registry.create_unit(name, raw, desired)
        if created:
            await self._until(_has_file(name, unit_hash), f"unit {name}")
        return created

    async def replace_unit(
        self, name: str, raw: str, unit_hash: str, desired: DesiredState
    ) -> None:
        await self.registry.replace_unit(name, raw, desired)
        await self._until(_has_file(name, unit_hash), f"unit {name}")

    async def set_desired_state(self, name: str, desired: DesiredState) -> bool:
        changed = await self.registry.set_desired_state(name, desired)
        if changed:
            await self._until(
                lambda view: view.desired.get(name) is desired,
                f"desired state {desired} of {name}",
            )
        return changed

    async def destroy_unit(self, name: str) -> bool:
        destroyed = await self.registry.destroy_unit(name)
        if destroyed:
            await self._until(
                lambda view: name not in view.files, f"destroyed unit {name}"
            )
        return destroyed

    async def set_metadata(self, operations: list[MetadataOperation]) -> None:
        """Write every operation's value in one transaction ("" for remove)."""
        writes = [
            self.registry.op_put(keys.metadata_key(op.machine_id, op.key), op.value)
            for op in operations
        ]
        await self.registry.txn([], writes, "set machine metadata")

        def applied(view: RegistryView) -> bool:
            return all(
                view.dynamic_metadata.get(op.machine_id, {}).get(op.key, "") == op.value
                for op in operations
            )

        await self._until(applied, "the machine metadata")


def _has_file(name: str, unit_hash: str) -> ViewCondition:
    def condition(view: RegistryView) -> bool:
        record = view.files.get(name)
        return record is not None and record.hash == unit_hash

    return condition
