"""The cluster state in etcd, behind one small interface.

The key layout and its fencing rules are documented in docs/registry.md.
"""

from __future__ import annotations

from typing import Protocol

from fleetd.model import DesiredState, Machine, Unit, UnitState


class Registry(Protocol):
    """Operations fleetctl needs on the cluster state.

    Every method raises ``RegistryError`` when etcd cannot be reached or
    rejects the request; "not found" is never reported as an error.
    """

    async def units(self) -> list[Unit]:
        """Return every unit, sorted by name."""
        ...

    async def unit(self, name: str) -> Unit | None:
        """Return the unit called ``name``, or None if there is none."""
        ...

    async def create_unit(self, name: str, raw: str, desired: DesiredState) -> bool:
        """Store a new unit whose serialized file is ``raw``.

        Returns False, writing nothing, if a unit of that name already exists.
        """
        ...

    async def replace_unit(self, name: str, raw: str, desired: DesiredState) -> None:
        """Store ``raw`` as the file of ``name``, created or replaced."""
        ...

    async def set_desired_state(self, name: str, desired: DesiredState) -> bool:
        """Set the desired state of ``name``; False if the unit does not exist."""
        ...

    async def destroy_unit(self, name: str) -> bool:
        """Delete ``name`` and its placement; False if it did not exist."""
        ...

    async def machines(self) -> list[Machine]:
        """Return the live machines, sorted by machine ID."""
        ...

    async def unit_states(self) -> list[UnitState]:
        """Return the published systemd states, sorted by unit name then machine."""
        ...
