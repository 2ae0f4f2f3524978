"""Unit commands for the cloud-config processor, over D-Bus to systemd."""

from __future__ import annotations

from collections.abc import Sequence

from fleetd.cloudinit.plan import COMMANDS
from fleetd.systemd import SystemdManager


class SystemdControl(SystemdManager):
    """The fleet agent's systemd client plus the calls that applying needs.

    Raises SystemdError, naming the method and unit, when systemd rejects a
    call or cannot be reached.
    """

    async def enable(self, names: Sequence[str], runtime: bool) -> None:
        """Enable units by their [Install] sections, replacing stale links."""
        await self._call(
            "EnableUnitFiles",
            "asbb",
            [list(names), runtime, True],
            unit=",".join(names),
        )

    async def command(self, unit: str, command: str) -> None:
        """Queue the job for ``command`` (a key of COMMANDS) in "replace" mode."""
        await self._call(COMMANDS[command], "ss", [unit, "replace"], unit=unit)
