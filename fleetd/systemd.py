"""D-Bus client for systemd: unit files, start and stop, and state signals.

The agent writes each unit placed on its machine to a units directory under
the private /run, links it as a runtime unit, and starts and stops it through
systemd. States (LOAD/ACTIVE/SUB) come from systemd's signals. Every signal
and every method reply from systemd carries a serial number that grows with
each message systemd sends on the connection. A state is only applied if it
comes from a newer message than the state it replaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import string
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from fleetd.errors import SystemdError, UnitNameError

log = logging.getLogger(__name__)

SYSTEMD_BUS_NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_INTERFACE = "org.freedesktop.systemd1.Manager"
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"

# Unit types fleet schedules; other files in the units directory are ignored.
UNIT_TYPES = frozenset(
    {"service", "socket", "timer", "path", "device", "mount", "automount"}
)

# Seconds. 25 s is libdbus's default reply timeout.
# A daemon reload re-reads every unit file, so it gets a longer one.
CALL_TIMEOUT = 25.0
RELOAD_TIMEOUT = 120.0
# An estimate: 20 ms was enough in 120 of 120 direct connections in a test host.
DIRECT_HELLO_DELAY = 0.02
RECONNECT_DELAY_MIN = 0.1
RECONNECT_DELAY_MAX = 5.0

_NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
_ALREADY_SUBSCRIBED = "org.freedesktop.systemd1.AlreadySubscribed"
_INSTALL_SECTION = re.compile(r"^[ \t]*\[Install\][ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class UnitSystemdState:
    """systemd's LoadState, ActiveState and SubState of one unit."""

    load: str
    active: str
    sub: str


StateCallback = Callable[[str, UnitSystemdState], None]


def unit_object_path(name: str) -> str:
    """Return the D-Bus object path systemd gives the unit ``name``.

    systemd keeps ASCII letters and digits and writes every other byte of
    the UTF-8 name as ``_`` plus two lowercase hex digits. An empty name
    becomes ``_``.
    """
    if not name:
        return UNIT_PATH_PREFIX + "_"
    label = []
    for byte in name.encode():
        char = chr(byte)
        if char.isascii() and char.isalnum():
            label.append(char)
        else:
            label.append(f"_{byte:02x}")
    return UNIT_PATH_PREFIX + "".join(label)


def unit_name_from_path(path: str) -> str | None:
    """Return the unit name in a systemd unit object path, or None.

    None means the path is not a unit path or is not escaped the way
    systemd escapes unit names.
    """
    if not path.startswith(UNIT_PATH_PREFIX):
        return None
    label = path[len(UNIT_PATH_PREFIX) :]
    if label == "_":
        return ""
    decoded = bytearray()
    i = 0
    while i < len(label):
        char = label[i]
        if char != "_":
            if not (char.isascii() and char.isalnum()):
                return None
            decoded.append(ord(char))
            i += 1
            continue
        digits = label[i + 1 : i + 3]
        if len(digits) != 2 or not all(c in string.hexdigits for c in digits):
            return None
        decoded.append(int(digits, 16))
        i += 3
    try:
        return decoded.decode()
    except UnicodeDecodeError:
        return None


def unit_type(name: str) -> str:
    """Return the type suffix of a unit name (``service`` for ``a.service``)."""
    return name.rpartition(".")[2] if "." in name else ""


def is_template(name: str) -> bool:
    """Tell whether ``name`` is a template (``a@.service``), not an instance."""
    return name.rpartition(".")[0].endswith("@")


def has_install_section(raw: str) -> bool:
    """Tell whether a unit file has an ``[Install]`` section header."""
    return _INSTALL_SECTION.search(raw) is not None


def check_unit_file_name(name: str) -> None:
    """Raise UnitNameError unless ``name`` can be a file in the units directory.

    The name must be a single path component of a type fleet runs.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UnitNameError(
            f"invalid unit name {name!r}: it must be a file name without '/'"
        )
    if name.startswith("."):
        raise UnitNameError(f"invalid unit name {name!r}: it must not start with '.'")
    if unit_type(name) not in UNIT_TYPES:
        types = ", ".join(sorted(UNIT_TYPES))
        raise UnitNameError(
            f"invalid unit name {name!r}: the type must be one of {types}"
        )


def _variant_value(value: Any) -> Any:
    """Unwrap a dbus_fast Variant (or return a plain value unchanged)."""
    return getattr(value, "value", value)


class UnitStateTracker:
    """Current states of a set of watched units, merged from systemd messages.

    Each observation is tagged with ``(generation, serial)``: the serial of
    the systemd message it came from, and a generation that grows each time
    the connection to systemd (or systemd's own bus connection) is replaced,
    because serials restart then. An observation older than the stored one
    is dropped, so a method reply that was overtaken by a signal cannot
    bring back an old state. Callbacks run when the stored state changes.

    Loading a unit to read its state (ListUnitsByNames does) makes systemd
    emit UnitNew and, once the unit is garbage-collected again, UnitRemoved.
    A refresh triggered by those signals would load the unit again, forever.
    So a unit is marked settled when such a refresh found nothing new, and
    UnitNew/UnitRemoved of a settled unit trigger nothing until another
    signal about that unit arrives.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._tracked: set[str] = set()
        self._states: dict[str, UnitSystemdState] = {}
        self._order: dict[str, tuple[int, int]] = {}
        self._settled: set[str] = set()
        self._callbacks: list[StateCallback] = []

    @property
    def tracked(self) -> frozenset[str]:
        """Names of the watched units."""
        return frozenset(self._tracked)

    def add_callback(self, callback: StateCallback) -> None:
        """Register a callback run with (name, state) on every change."""
        self._callbacks.append(callback)

    def track(self, names: Iterable[str]) -> set[str]:
        """Replace the watched set and return the names that are new in it.

        Templates are skipped: systemd has no state for them, and a
        template name makes ListUnitsByNames fail for the whole batch.
        """
        watched = set()
        for name in names:
            if is_template(name):
                log.warning("not watching template unit %s: it has no state", name)
                continue
            watched.add(name)

        added = watched - self._tracked
        for name in self._tracked - watched:
            self._states.pop(name, None)
            self._order.pop(name, None)
            self._settled.discard(name)
        self._tracked = watched
        return added

    def state(self, name: str) -> UnitSystemdState | None:
        """Return the last state stored for ``name``, or None if none is."""
        return self._states.get(name)

    def new_generation(self) -> None:
        """Start a new serial sequence; earlier observations become older."""
        self.generation += 1

    def observe(
        self,
        name: str,
        state: UnitSystemdState,
        order: tuple[int, int],
        *,
        membership: bool = False,
    ) -> bool:
        """Store a full state read at ``order``; return True if it changed.

        ``membership`` is set when the read was triggered by UnitNew or
        UnitRemoved; if it found no change, the unit becomes settled.
        """
        if name not in self._tracked:
            return False
        if name in self._order and order <= self._order[name]:
            return False

        self._order[name] = order
        changed = self._states.get(name) != state
        if changed:
            self._settled.discard(name)
            self._states[name] = state
            self._notify(name, state)
        elif membership:
            self._settled.add(name)
        return changed

    def observe_active(
        self, name: str, active: str, sub: str, order: tuple[int, int]
    ) -> bool:
        """Store ActiveState and SubState from a PropertiesChanged signal.

        systemd 252 does not send LoadState in PropertiesChanged, so the
        stored load state is kept. Return False if no load state is stored
        yet, so the caller must read the full state.
        """
        if name not in self._tracked:
            return True
        previous = self._states.get(name)
        if previous is None:
            return False

        self.observe(name, UnitSystemdState(previous.load, active, sub), order)
        return True

    def wants_membership_refresh(self, name: str) -> bool:
        """Tell whether UnitNew/UnitRemoved of ``name`` should trigger a read."""
        return name in self._tracked and name not in self._settled

    def touch(self, name: str) -> None:
        """Clear the settled mark after a signal other than UnitNew/UnitRemoved."""
        self._settled.discard(name)

    def _notify(self, name: str, state: UnitSystemdState) -> None:
        for callback in self._callbacks:
            try:
                callback(name, state)
            except Exception:
                log.exception("state callback failed: unit=%s state=%s", name, state)


class SystemdManager:
    """Client of one systemd instance over D-Bus (asyncio, dbus-fast).

    ``bus_address`` is a D-Bus address such as
    ``unix:path=/run/systemd/private`` (a direct connection to systemd);
    None means the system bus. After connect(), a lost connection is
    re-established in the background, and every watched unit is read again
    once it is back. Method calls made while the connection is down raise
    SystemdError.
    """

    def __init__(
        self,
        units_dir: Path = Path("/run/fleet/units"),
        bus_address: str | None = None,
    ) -> None:
        self.units_dir = units_dir
        self.bus_address = bus_address
        self._bus: MessageBus | None = None
        self._direct = False
        self._systemd_owner: str | None = None
        self._tracker = UnitStateTracker()
        self._pending: set[str] = set()
        self._pending_membership: set[str] = set()
        self._refresh_requested = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # Connection

    async def connect(self) -> None:
        """Connect to systemd and subscribe to its signals.

        Raises SystemdError if the bus cannot be reached or systemd rejects
        the subscription.
        """
        self._closing = False
        await self._open()
        self._spawn(self._supervise())
        self._spawn(self._refresh_loop())

    async def close(self) -> None:
        """Stop the background tasks and close the connection."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._bus is not None:
            self._bus.disconnect()
            await asyncio.wait({_disconnect_waiter(self._bus)}, timeout=CALL_TIMEOUT)
            self._bus = None

    @property
    def connected(self) -> bool:
        """True while the D-Bus connection to systemd is up."""
        return self._bus is not None and self._bus.connected

    async def _open(self) -> None:
        address = self.bus_address or "the system bus"
        bus_class = MessageBus if self.bus_address is None else _DirectBus
        bus = bus_class(bus_address=self.bus_address, bus_type=BusType.SYSTEM)
        try:
            await asyncio.wait_for(bus.connect(), CALL_TIMEOUT)
        except Exception as err:
            raise SystemdError(
                f"cannot connect to systemd over D-Bus at {address}: {err!r}; "
                "check that systemd (and dbus.socket) are running"
            ) from err

        self._bus = bus
        try:
            await self._setup_bus(bus)
        except SystemdError:
            bus.disconnect()
            self._bus = None
            raise
        log.info("connected to systemd: address=%s direct=%s", address, self._direct)

    async def _setup_bus(self, bus: MessageBus) -> None:
        # Serials restart on a new connection, so observations made on the
        # old one must compare as older than anything from this one.
        self._tracker.new_generation()
        self._systemd_owner = None

        # A direct connection to systemd has no bus daemon, so calls to
        # org.freedesktop.DBus come back from systemd as UnknownObject.
        reply = await self._get_systemd_owner()
        self._direct = reply.error_name in (
            "org.freedesktop.DBus.Error.UnknownObject",
            "org.freedesktop.DBus.Error.UnknownMethod",
        )
        bus.add_message_handler(self._on_message)
        if self._direct:
            await self._subscribe()
            return

        for rule in _match_rules():
            reply = await self._request("AddMatch", "s", [rule], interface=DBUS_NAME)
            _check_reply(reply, "AddMatch", "")

        # Ask for systemd's owner again now that NameOwnerChanged is matched:
        # the bus daemon may have been started by this very connection, and
        # systemd joins it a moment later.
        reply = await self._get_systemd_owner()
        if reply.message_type is MessageType.METHOD_RETURN:
            self._systemd_owner = reply.body[0]
            await self._subscribe()
        else:
            log.info("systemd is not on the system bus yet; waiting for it")

    async def _get_systemd_owner(self) -> Message:
        return await self._request(
            "GetNameOwner", "s", [SYSTEMD_BUS_NAME], interface=DBUS_NAME
        )

    async def _subscribe(self) -> None:
        await self._call("Subscribe", allowed_errors=frozenset({_ALREADY_SUBSCRIBED}))

    async def _supervise(self) -> None:
        while not self._closing:
            bus = self._bus
            if bus is not None:
                waiter = _disconnect_waiter(bus)
                # asyncio.wait leaves the waiter running when close() cancels
                # this task, so the bus's own disconnect future is not
                # cancelled with it.
                await asyncio.wait({waiter})
                if not waiter.cancelled() and waiter.exception() is not None:
                    log.warning(
                        "D-Bus connection to systemd failed: %r", waiter.exception()
                    )
            if self._closing:
                return

            log.warning("lost the D-Bus connection to systemd; reconnecting")
            self._bus = None
            delay = RECONNECT_DELAY_MIN
            while not self._closing:
                try:
                    await self._open()
                    break
                except SystemdError as err:
                    log.warning(
                        "reconnect to systemd failed, retrying in %.1f s: %s",
                        delay,
                        err,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_DELAY_MAX)
            self._request_refresh(self._tracker.tracked)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Unit files

    async def write_unit(self, name: str, raw: str) -> None:
        """Write the unit file and link it into systemd as a runtime unit.

        The file is replaced atomically. A unit with an [Install] section is
        also enabled for this boot only. The caller reloads systemd once per
        batch. If systemd rejects the link or the enable request, the file
        and any link are removed and SystemdError is raised. An invalid name
        raises UnitNameError.
        """
        check_unit_file_name(name)
        path = self.units_dir / name
        _write_atomically(path, raw)
        log.info("wrote unit file: unit=%s path=%s", name, path)

        try:
            await self._call(
                "LinkUnitFiles", "asbb", [[str(path)], True, True], unit=name
            )
            if has_install_section(raw):
                await self._call(
                    "EnableUnitFiles", "asbb", [[name], True, True], unit=name
                )
        except SystemdError:
            await self._unlink_after_failure(name)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise

    async def _unlink_after_failure(self, name: str) -> None:
        try:
            await self._call(
                "DisableUnitFiles",
                "asb",
                [[name], True],
                unit=name,
                allowed_errors=frozenset({_NO_SUCH_UNIT}),
            )
        except SystemdError as err:
            log.warning("removing the link of a failed unit failed: %s", err)

    async def remove_unit(self, name: str) -> None:
        """Stop the unit if systemd has it loaded, then unlink and delete it.

        A unit that systemd does not know and a missing file are not errors.
        If the stop request fails, SystemdError is raised and nothing is
        removed. The stop job may still be running when this returns.
        """
        check_unit_file_name(name)
        missing = frozenset({_NO_SUCH_UNIT})

        # GetUnit, unlike LoadUnit, does not load a unit that is not loaded.
        if await self._call("GetUnit", "s", [name], unit=name, allowed_errors=missing):
            await self._call("StopUnit", "ss", [name, "replace"], unit=name)

        await self._call(
            "DisableUnitFiles", "asb", [[name], True], unit=name, allowed_errors=missing
        )
        await self._call(
            "ResetFailedUnit", "s", [name], unit=name, allowed_errors=missing
        )
        with contextlib.suppress(FileNotFoundError):
            (self.units_dir / name).unlink()
        log.info("removed unit: unit=%s", name)

    def local_units(self) -> list[str]:
        """Return the sorted names of unit files in the units directory.

        Only names of a type fleet runs count; hidden files (such as
        write_unit's temporary files) do not.
        """
        try:
            entries = os.listdir(self.units_dir)
        except FileNotFoundError:
            return []
        return sorted(
            entry
            for entry in entries
            if not entry.startswith(".") and unit_type(entry) in UNIT_TYPES
        )

    # Manager methods

    async def reload(self) -> None:
        """Reload systemd's unit files (daemon-reload); call once per batch."""
        started = time.monotonic()
        await self._call("Reload", timeout=RELOAD_TIMEOUT)
        log.info("reloaded systemd in %.3f s", time.monotonic() - started)

    async def start(self, name: str) -> None:
        """Queue a start job for the unit (mode "replace"); does not wait for it."""
        await self._call("StartUnit", "ss", [name, "replace"], unit=name)

    async def stop(self, name: str) -> None:
        """Queue a stop job for the unit (mode "replace"); does not wait for it."""
        await self._call("StopUnit", "ss", [name, "replace"], unit=name)

    async def states(self, names: Iterable[str]) -> dict[str, UnitSystemdState]:
        """Return the states of the named units with one ListUnitsByNames call.

        Units without a file are reported as ``not-found``. The result is
        keyed by the names systemd returns, so an alias appears under the
        unit's primary name, and systemd leaves out invalid names.
        """
        states, _ = await self._list_units_by_names(list(names))
        return states

    async def _list_units_by_names(
        self, names: list[str]
    ) -> tuple[dict[str, UnitSystemdState], int]:
        """Return the states and the serial of the reply they came in."""
        if not names:
            return {}, 0
        reply = await self._request("ListUnitsByNames", "as", [names])
        _check_reply(reply, "ListUnitsByNames", _describe_names(names))
        states = {
            entry[0]: UnitSystemdState(entry[2], entry[3], entry[4])
            for entry in reply.body[0]
        }
        return states, reply.serial

    # Watching states

    async def restart_pending(self, pid: int) -> bool:
        """Tell whether systemd is restarting the unit that runs process ``pid``.

        During ``systemctl restart`` the unit's job has type "restart" while
        its main process receives SIGTERM; on a plain stop it has type "stop".
        """
        unit_path = await self._call("GetUnitByPID", "u", [pid])
        if not unit_path:
            return False
        job = await self._get_property(str(unit_path[0]), UNIT_INTERFACE, "Job")
        job_id, job_path = job
        if not job_id:
            return False
        job_type = await self._get_property(
            str(job_path), "org.freedesktop.systemd1.Job", "JobType"
        )
        return bool(job_type == "restart")

    async def _get_property(self, path: str, interface: str, name: str) -> Any:
        bus = self._bus
        if bus is None or not bus.connected:
            raise SystemdError(f"reading {name} failed: not connected to systemd")
        message = Message(
            destination=SYSTEMD_BUS_NAME,
            path=path,
            interface=PROPERTIES_INTERFACE,
            member="Get",
            signature="ss",
            body=[interface, name],
        )
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                reply = await bus.call(message)
        except Exception as err:
            raise SystemdError(f"reading {name} of {path} failed: {err!r}") from err
        _check_reply(reply, f"Get({name})", "")
        return _variant_value(reply.body[0])

    def watch(self, callback: StateCallback) -> None:
        """Run ``callback(name, state)`` on each change of a watched unit's state.

        The first state read for a unit counts as a change. Callbacks run on
        the event loop and must not block.
        """
        self._tracker.add_callback(callback)

    def track(self, names: Iterable[str]) -> None:
        """Set the units whose states are watched; new ones are read at once."""
        added = self._tracker.track(names)
        self._pending &= self._tracker.tracked
        self._pending_membership &= self._tracker.tracked
        self._request_refresh(added)

    def _request_refresh(
        self, names: Iterable[str], *, membership: bool = False
    ) -> None:
        names = set(names)
        if not names:
            return
        if membership:
            self._pending_membership |= names - self._pending
        else:
            self._pending |= names
            self._pending_membership -= names
        self._refresh_requested.set()

    async def _refresh_loop(self) -> None:
        while True:
            await self._refresh_requested.wait()
            self._refresh_requested.clear()
            if not self.connected:
                continue  # the supervisor reads every unit after reconnecting

            tracked = self._tracker.tracked
            names = self._pending & tracked
            membership = self._pending_membership & tracked
            self._pending = set()
            self._pending_membership = set()
            if not names and not membership:
                continue

            generation = self._tracker.generation
            try:
                states, serial = await self._list_units_by_names(
                    sorted(names | membership)
                )
            except SystemdError as err:
                log.warning("reading unit states failed: %s", err)
                self._pending |= names
                self._pending_membership |= membership
                if self.connected:  # else the supervisor requests a read later
                    await asyncio.sleep(RECONNECT_DELAY_MAX)
                    self._refresh_requested.set()
                continue

            for name, state in states.items():
                from_membership = name in membership and name not in names
                self._tracker.observe(
                    name, state, (generation, serial), membership=from_membership
                )

    def _on_message(self, message: Message) -> bool:
        if message.message_type is not MessageType.SIGNAL:
            return False
        if message.sender == DBUS_NAME and not self._direct:
            self._on_bus_signal(message)
            return False
        if not self._from_systemd(message):
            return False

        order = (self._tracker.generation, message.serial)
        member = message.member
        body = message.body
        if member == "PropertiesChanged":
            self._on_properties_changed(message, order)
        elif member in ("UnitNew", "UnitRemoved") and message.path == MANAGER_PATH:
            name = body[0]
            if self._tracker.wants_membership_refresh(name):
                self._request_refresh([name], membership=True)
        elif member == "JobRemoved" and message.path == MANAGER_PATH:
            name = body[2]
            if name in self._tracker.tracked:
                self._tracker.touch(name)
                self._request_refresh([name])
        elif member == "Reloading" and message.path == MANAGER_PATH and not body[0]:
            # A reload can change any load state without a PropertiesChanged.
            self._request_refresh(self._tracker.tracked)
        return False

    def _from_systemd(self, message: Message) -> bool:
        if self._direct:
            return True
        return message.sender is not None and message.sender == self._systemd_owner

    def _on_properties_changed(self, message: Message, order: tuple[int, int]) -> None:
        if (
            message.interface != PROPERTIES_INTERFACE
            or message.body[0] != UNIT_INTERFACE
        ):
            return
        name = unit_name_from_path(message.path or "")
        if name is None or name not in self._tracker.tracked:
            return
        changed = message.body[1]
        if "ActiveState" not in changed or "SubState" not in changed:
            self._tracker.touch(name)
            self._request_refresh([name])
            return
        active = _variant_value(changed["ActiveState"])
        sub = _variant_value(changed["SubState"])
        if not self._tracker.observe_active(name, active, sub, order):
            self._request_refresh([name])

    def _on_bus_signal(self, message: Message) -> None:
        if message.member != "NameOwnerChanged" or message.body[0] != SYSTEMD_BUS_NAME:
            return
        new_owner = message.body[2] or None
        self._systemd_owner = new_owner
        if new_owner is None:
            log.warning("systemd left the system bus")
            return

        # systemd rejoined the bus (for example after daemon-reexec): its
        # serials restart, and it may have forgotten the subscription.
        log.info("systemd joined the system bus as %s", new_owner)
        self._tracker.new_generation()
        self._spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        try:
            await self._subscribe()
        except SystemdError as err:
            log.warning("subscribing to systemd signals failed: %s", err)
        self._request_refresh(self._tracker.tracked)

    # D-Bus calls

    async def _call(
        self,
        method: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        unit: str = "",
        allowed_errors: frozenset[str] = frozenset(),
        timeout: float = CALL_TIMEOUT,
    ) -> list[Any]:
        """Call a systemd manager method and return the reply body.

        An error reply raises SystemdError, unless its name is in
        ``allowed_errors``; then the result is an empty list.
        """
        reply = await self._request(method, signature, body, unit=unit, timeout=timeout)
        if reply.error_name in allowed_errors:
            return []
        _check_reply(reply, method, unit)
        return list(reply.body)

    async def _request(
        self,
        method: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        unit: str = "",
        interface: str = MANAGER_INTERFACE,
        timeout: float = CALL_TIMEOUT,
    ) -> Message:
        """Send a method call and return the reply, which may be an error reply.

        ``interface`` is systemd's manager or the bus daemon's own interface.
        Raises SystemdError if there is no connection, the connection fails
        or no reply comes within ``timeout`` seconds.
        """
        bus = self._bus
        target = _describe(method, unit)
        if bus is None or not bus.connected:
            raise SystemdError(f"{target} failed: not connected to systemd over D-Bus")

        if interface == DBUS_NAME:
            destination, path = DBUS_NAME, DBUS_PATH
        else:
            destination, path = SYSTEMD_BUS_NAME, MANAGER_PATH
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=method,
            signature=signature,
            body=body or [],
        )
        try:
            async with asyncio.timeout(timeout):
                reply = await bus.call(message)
        except TimeoutError as err:
            raise SystemdError(
                f"{target} timed out: no reply from systemd within {timeout:g} s"
            ) from err
        except Exception as err:
            raise SystemdError(
                f"{target} failed: D-Bus connection error: {err!r}"
            ) from err
        return reply


class _DirectBus(MessageBus):
    """A MessageBus that pauses between authentication and its first message.

    NOTE: systemd 252 leaves a message that arrives in the same read as the
    end of authentication unanswered until more data comes in. dbus-fast
    sends Hello right after BEGIN, so on most direct connections in a test
    host connect() waited for a Hello reply forever. The pause relies on
    dbus-fast's private _inner_authenticate (checked with dbus-fast 5.2).
    """

    async def _inner_authenticate(self) -> None:
        await super()._inner_authenticate()
        await asyncio.sleep(DIRECT_HELLO_DELAY)


def _disconnect_waiter(bus: MessageBus) -> asyncio.Future[None]:
    """Return a task that ends when ``bus`` disconnects, with any error read."""
    waiter = asyncio.ensure_future(bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
    waiter.add_done_callback(_ignore_result)
    return waiter


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _describe(method: str, unit: str) -> str:
    return f"systemd {method}({unit})" if unit else f"systemd {method}"


def _describe_names(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} and {len(names) - 3} more"


def _check_reply(reply: Message, method: str, unit: str) -> None:
    if reply.message_type is not MessageType.ERROR:
        return
    detail = reply.body[0] if reply.body else ""
    raise SystemdError(
        f"{_describe(method, unit)} failed: {reply.error_name}: {detail}"
    )


def _match_rules() -> list[str]:
    manager = (
        f"type='signal',sender='{SYSTEMD_BUS_NAME}',path='{MANAGER_PATH}',"
        f"interface='{MANAGER_INTERFACE}'"
    )
    rules = [
        f"{manager},member='{member}'"
        for member in ("UnitNew", "UnitRemoved", "JobRemoved", "Reloading")
    ]
    rules.append(
        f"type='signal',sender='{SYSTEMD_BUS_NAME}',interface='{PROPERTIES_INTERFACE}',"
        f"member='PropertiesChanged',path_namespace='{UNIT_PATH_PREFIX.rstrip('/')}',"
        f"arg0='{UNIT_INTERFACE}'"
    )
    rules.append(
        f"type='signal',sender='{DBUS_NAME}',path='{DBUS_PATH}',interface='{DBUS_NAME}',"
        f"member='NameOwnerChanged',arg0='{SYSTEMD_BUS_NAME}'"
    )
    return rules


def _write_atomically(path: Path, raw: str) -> None:
    """Write ``raw`` to ``path`` (mode 0644) through a renamed temporary file."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    # The temporary name stays short: a unit name may use up to 255 bytes,
    # the whole length a file name may have.
    fd, temporary = tempfile.mkstemp(prefix=".fleet-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(raw)
            file.flush()
            os.fchmod(file.fileno(), 0o644)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
