"""Waiting for units to reach a state, as load, start, stop, unload and destroy do.

A wait re-reads the registry each time ``changes()`` reports a change. It
gives up after ``--block-attempts`` x 2 seconds, the original's attempt
length. 0 attempts waits without limit, except for a unit that the engine
reports it cannot place: that unit fails once the engine has given a reason
for ``UNPLACEABLE_SECONDS`` without a break, so ``fleetctl start`` of such a
unit never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import click

from fleetctl.client import ClientRegistry
from fleetctl.output import machine_legend
from fleetctl.placement import engine_reason
from fleetd.errors import FleetError
from fleetd.model import Machine, Unit, UnitState

log = logging.getLogger(__name__)

ATTEMPT_SECONDS = 2.0
# How long a wait runs before it reports which units it is waiting for, and
# how often it repeats that report.
FIRST_REPORT_SECONDS = 2.0
REPORT_INTERVAL_SECONDS = 10.0
# The registry is re-read at least this often even when no change arrives.
# NOTE: changes() starts its etcd watch only when first iterated, so it misses
# a change made between the first read and the start of the watch. This
# re-read bounds how long such a change can go unnoticed.
RECHECK_SECONDS = 2.0
# How long a wait without --block-attempts goes on while the engine reports
# that it cannot place a unit. A reason can be transient: a dead machine's
# units and a unit that another command is stopping leave within one agent_ttl
# (10 s by default), and the engine places the unit on its next pass.
UNPLACEABLE_SECONDS = 10.0


class Snapshot:
    """Registry records read once per check, each fetched only when needed."""

    def __init__(self, registry: ClientRegistry, with_reasons: bool = True) -> None:
        self._registry = registry
        self._with_reasons = with_reasons
        self._units: dict[str, Unit] | None = None
        self._states: dict[str, list[UnitState]] | None = None
        self._machines: dict[str, Machine] | None = None

    async def unit(self, name: str) -> Unit | None:
        if self._units is None:
            self._units = {unit.name: unit for unit in await self._registry.units()}
        return self._units.get(name)

    async def states(self, name: str) -> list[UnitState]:
        if self._states is None:
            self._states = {}
            for state in await self._registry.unit_states():
                self._states.setdefault(state.name, []).append(state)
        return self._states.get(name, [])

    async def reason(self, unit: Unit) -> str:
        """Return why the engine could not place ``unit``, "" if it is placed.

        Returns "" for every unit when the snapshot was made without reasons.
        """
        if not self._with_reasons:
            return ""
        return await engine_reason(self._registry, unit)

    async def legend(self, machine_id: str) -> str:
        """Return ``<id[:8]>.../<ip>`` for a machine, without the IP if it is gone."""
        if self._machines is None:
            machines = await self._registry.machines()
            self._machines = {machine.id: machine for machine in machines}
        machine = self._machines.get(machine_id)
        return machine_legend(machine_id, machine.public_ip if machine else "", False)


@dataclass(frozen=True)
class Progress:
    """The outcome of one check of one unit.

    ``done`` means success, and its ``message`` goes to stdout. ``failed``
    is a failure that waiting cannot fix. Otherwise ``waiting`` describes
    what the unit still waits for, and ``reason`` is why the engine has not
    placed it, if it reported one.
    """

    done: bool
    message: str = ""
    waiting: str = ""
    failed: str = ""
    reason: str = ""


@dataclass(frozen=True)
class StateTarget:
    """A wait for a unit's current state, and for systemd active if requested."""

    name: str
    state: str
    systemd_active: bool = False

    async def check(self, snapshot: Snapshot) -> Progress:
        unit = await snapshot.unit(self.name)
        if unit is None:
            return Progress(
                done=False, failed=f"unit {self.name} was destroyed during the wait"
            )
        if unit.current_state != self.state:
            reason = await snapshot.reason(unit)
            waiting = (
                f"{self.name} to report state {self.state} "
                f"(current state {unit.current_state})"
            )
            if reason:
                waiting += f", not placed: {reason}"
            return Progress(done=False, waiting=waiting, reason=reason)
        legend = await snapshot.legend(unit.machine_id) if unit.machine_id else ""
        if self.systemd_active:
            active = [
                state
                for state in await snapshot.states(self.name)
                if state.machine_id == unit.machine_id
            ]
            if active and active[0].active_state == "failed":
                state = active[0]
                return Progress(
                    done=False,
                    failed=(
                        f"unit {self.name} failed on {legend} (systemd state "
                        f"{state.load_state}/{state.active_state}/{state.sub_state}); "
                        f"see fleetctl journal {self.name}"
                    ),
                )
            if not active or not _is_active(active[0]):
                now = (
                    f"{active[0].load_state}/{active[0].active_state}"
                    if active
                    else "no state published yet"
                )
                return Progress(
                    done=False,
                    waiting=f"{self.name} to become active on {legend} (now {now})",
                )
        message = f"Unit {self.name} {unit.current_state}"
        if legend:
            message += f" on {legend}"
        return Progress(done=True, message=message)

    def timeout_message(self) -> str:
        if self.systemd_active:
            return (
                f"timed out waiting for unit {self.name} to report state "
                f"{self.state} and become active"
            )
        return f"timed out waiting for unit {self.name} to report state {self.state}"


@dataclass(frozen=True)
class GoneTarget:
    """A wait until a destroyed unit is gone: no record, no published state."""

    name: str

    async def check(self, snapshot: Snapshot) -> Progress:
        if await snapshot.unit(self.name) is not None:
            return Progress(done=False, waiting=f"{self.name} to be removed")
        states = await snapshot.states(self.name)
        if states:
            machines = [await snapshot.legend(state.machine_id) for state in states]
            return Progress(
                done=False,
                waiting=f"{self.name} to be unloaded from {', '.join(machines)}",
            )
        return Progress(done=True)

    def timeout_message(self) -> str:
        return f"timed out waiting for unit {self.name} to be removed from the cluster"


Target = StateTarget | GoneTarget


def _is_active(state: UnitState) -> bool:
    return state.active_state == "active" and state.load_state == "loaded"


async def wait_for(
    registry: ClientRegistry, targets: Sequence[Target], attempts: int
) -> list[str]:
    """Wait until every target is reached; return the error lines of the rest.

    Prints a success line per unit as it arrives (when a target has one) and,
    on stderr, which units still wait once the wait takes longer than
    ``FIRST_REPORT_SECONDS``. ``attempts`` is the number of 2-second
    attempts, 0 for no limit. With no limit, a unit the engine reports it
    cannot place fails after ``UNPLACEABLE_SECONDS`` with the engine's
    reason. Raises ``RegistryError`` when etcd fails.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = None if attempts == 0 else started + attempts * ATTEMPT_SECONDS
    next_report = started + FIRST_REPORT_SECONDS
    pending = {target.name: target for target in targets}
    reasons: dict[str, str] = {}
    # When each unit was first seen with an engine reason; a check without
    # one resets it.
    unplaceable_since: dict[str, float] = {}
    errors: list[str] = []

    async with _change_feed(registry) as wait_for_change:
        while True:
            checked = loop.time()
            # Over the API a reason costs one request per unplaced unit, so
            # reasons are read only once the wait reports, when they show.
            snapshot = Snapshot(registry, checked - started >= FIRST_REPORT_SECONDS)
            waiting: dict[str, str] = {}
            for name in sorted(pending):
                progress = await pending[name].check(snapshot)
                if progress.done:
                    if progress.message:
                        click.echo(progress.message)
                    del pending[name]
                elif progress.failed:
                    errors.append(progress.failed)
                    del pending[name]
                else:
                    waiting[name] = progress.waiting
                    reasons[name] = progress.reason
                    if progress.reason:
                        unplaceable_since.setdefault(name, checked)
                    else:
                        unplaceable_since.pop(name, None)

            now = loop.time()
            if deadline is None:
                for name in sorted(unplaceable_since):
                    if name in pending and now - unplaceable_since[name] >= (
                        UNPLACEABLE_SECONDS
                    ):
                        errors.append(_unplaceable_message(name, reasons[name]))
                        del pending[name]
                        del waiting[name]
            if not pending:
                return errors

            if deadline is not None and now >= deadline:
                for name in sorted(pending):
                    message = pending[name].timeout_message()
                    if reasons.get(name):
                        message += f"; the engine could not place it: {reasons[name]}"
                    errors.append(message)
                return errors
            if now >= next_report:
                _report(list(waiting.values()), now - started)
                next_report = now + REPORT_INTERVAL_SECONDS

            timeout = min(RECHECK_SECONDS, next_report - now)
            if deadline is not None:
                timeout = min(timeout, deadline - now)
            else:
                for name, since in unplaceable_since.items():
                    if name in pending:
                        timeout = min(timeout, since + UNPLACEABLE_SECONDS - now)
            await wait_for_change(max(timeout, 0.0))


def _unplaceable_message(name: str, reason: str) -> str:
    return (
        f"unit {name} cannot be placed: {reason}; it stays in the registry, and "
        f"the engine places it once a machine fits "
        f"(fleetctl explain {name} shows each machine's check)"
    )


def _report(waiting: Sequence[str], elapsed: float) -> None:
    shown = "; ".join(waiting[:5])
    if len(waiting) > 5:
        shown += f"; and {len(waiting) - 5} more units"
    click.echo(f"Waiting {elapsed:.0f}s for {shown}", err=True)


@contextlib.asynccontextmanager
async def _change_feed(
    registry: ClientRegistry,
) -> AsyncIterator[_ChangeWaiter]:
    """Yield a function that waits for the next registry change or a timeout."""
    changes = registry.changes()
    waiter = _ChangeWaiter(changes)
    try:
        yield waiter
    finally:
        await waiter.close()


class _ChangeWaiter:
    """Keeps one pending read of ``changes()`` so no change is lost between waits."""

    def __init__(self, changes: AsyncIterator[None]) -> None:
        self._changes = changes
        self._next: asyncio.Future[None] | None = asyncio.ensure_future(anext(changes))

    async def __call__(self, timeout: float) -> None:
        if self._next is None:
            # The watch failed earlier; fall back to re-reading on a timer.
            await asyncio.sleep(timeout)
            return
        done, _ = await asyncio.wait({self._next}, timeout=timeout)
        if not done:
            return
        try:
            self._next.result()
        except (FleetError, StopAsyncIteration) as err:
            log.debug("registry change feed ended (%s); polling instead", err)
            self._next = None
            return
        self._next = asyncio.ensure_future(anext(self._changes))

    async def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(asyncio.CancelledError, FleetError):
                await self._next
        aclose = getattr(self._changes, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(FleetError):
                await aclose()
