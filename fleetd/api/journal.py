"""``GET /fleet/v1/units/<name>/journal``: a unit's journal from any machine.

This resource is not in the original API. It lets fleetctl's API driver read
a journal with no access to etcd and no SSH. The local fleetd runs
journalctl when the unit is placed on its machine. Otherwise it fetches the
journal from the fleetd of the unit's machine over the signed peer channel.
A global unit runs on many machines, so a request for one names the machine
with ``?machineID=<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from fleetd.api.backend import ApiBackend
from fleetd.api.resources import HttpError
from fleetd.model import DesiredState, Machine
from fleetd.peer import MAX_LINES, OUTPUT_MODES, journalctl_argv, open_peer

Writer = Callable[[bytes], Awaitable[None]]
CHUNK = 65536
# How often a quiet --follow stream checks whether its client hung up.
HANGUP_CHECK_SECONDS = 1.0
PEER_TIMEOUT = 10.0


@dataclass(frozen=True)
class JournalRequest:
    """The query of a journal request, checked."""

    lines: int
    follow: bool
    output: str
    # Empty, or the full ID of the machine whose journal to read.
    machine_id: str = ""


def parse_journal_query(query: Mapping[str, Sequence[str]]) -> JournalRequest:
    """Read lines, follow, output and machineID from the query; raise 400 if bad."""
    lines_text = (query.get("lines") or ["10"])[0]
    if not lines_text.isdigit() or int(lines_text) > MAX_LINES:
        raise HttpError(
            400, f"invalid lines {lines_text!r}: use a number from 0 to {MAX_LINES}"
        )
    follow_text = (query.get("follow") or ["false"])[0].lower()
    if follow_text not in {"true", "false", "1", "0"}:
        raise HttpError(400, f"invalid follow {follow_text!r}: use true or false")
    output = (query.get("output") or ["short"])[0]
    if output not in OUTPUT_MODES:
        raise HttpError(
            400,
            f"invalid output {output!r}: use one of {', '.join(sorted(OUTPUT_MODES))}",
        )
    machine_id = (query.get("machineID") or [""])[0]
    return JournalRequest(
        int(lines_text), follow_text in {"true", "1"}, output, machine_id
    )


def journal_machine(backend: ApiBackend, name: str, machine_id: str = "") -> Machine:
    """Return the machine whose journal of ``name`` to read; raise HttpError if none.

    A global unit needs ``machine_id``, one of the live machines that publish
    a state for it (400 without it, 404 for another machine). For a unit
    placed on one machine, ``machine_id`` may be empty or that machine's ID.
    """
    unit = backend.view.unit(name)
    if unit is None:
        raise HttpError(404, "unit does not exist")
    parsed = backend.parsed_file(unit.name, unit.hash, unit.raw)
    if parsed.is_global:
        return _global_journal_machine(backend, name, machine_id)
    if not unit.machine_id or unit.current_state == DesiredState.INACTIVE:
        raise HttpError(409, f"unit {name} does not appear to be running")
    if machine_id and machine_id != unit.machine_id:
        raise HttpError(
            404, f"unit {name} runs on machine {unit.machine_id}, not {machine_id}"
        )
    machine = backend.view.machines.get(unit.machine_id)
    if machine is None:
        raise HttpError(
            409,
            f"machine {unit.machine_id} of unit {name} has left the cluster; "
            "wait for the unit to be rescheduled",
        )
    return machine


def _global_journal_machine(backend: ApiBackend, name: str, machine_id: str) -> Machine:
    view = backend.view
    published = sorted(id_ for id_ in view.states.get(name, {}) if id_ in view.machines)
    if not published:
        raise HttpError(409, f"unit {name} does not appear to be running")
    if not machine_id:
        raise HttpError(
            400,
            f"unit {name} is global: give machineID=<id> of one of the machines "
            f"that run it ({', '.join(published)})",
        )
    if machine_id not in published:
        raise HttpError(404, f"unit {name} is not running on machine {machine_id}")
    return view.machines[machine_id]


async def _copy(
    read: Callable[[], Awaitable[bytes]], write: Writer, closed: Callable[[], bool]
) -> None:
    pending: asyncio.Task[bytes] | None = None
    try:
        while not closed():
            if pending is None:
                pending = asyncio.ensure_future(read())
            done, _ = await asyncio.wait({pending}, timeout=HANGUP_CHECK_SECONDS)
            if not done:
                continue
            chunk = pending.result()
            pending = None
            if not chunk:
                return
            await write(chunk)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pending


async def stream_local(
    unit: str, request: JournalRequest, write: Writer, closed: Callable[[], bool]
) -> None:
    """Copy journalctl's output for ``unit`` on this machine to ``write``."""
    argv = journalctl_argv(unit, request.lines, request.follow, request.output)
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    stdout = process.stdout
    try:
        await _copy(lambda: stdout.read(CHUNK), write, closed)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def open_peer_journal(
    machine: Machine, unit: str, request: JournalRequest, secret: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a signed journal request to ``machine``'s fleetd; return the stream.

    Raises HttpError(502) when the peer cannot be reached or refuses.
    """
    where = f"{machine.public_ip}:{machine.peer_port}"
    try:
        reader, writer = await open_peer(
            machine,
            "journal",
            unit,
            secret=secret,
            timeout=PEER_TIMEOUT,
            lines=request.lines,
            follow=request.follow,
            output=request.output,
        )
        status = await asyncio.wait_for(reader.readline(), PEER_TIMEOUT)
    except (OSError, TimeoutError) as err:
        raise HttpError(
            502,
            f"cannot reach fleetd of machine {machine.id} at {where}: "
            f"{err or type(err).__name__}",
        ) from err
    if status != b"OK\n":
        writer.close()
        text = status.decode(errors="replace").strip() or "connection closed"
        raise HttpError(
            502, f"fleetd of machine {machine.id} at {where} refused: {text}"
        )
    return reader, writer


async def stream_peer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    write: Writer,
    closed: Callable[[], bool],
) -> None:
    """Copy an opened peer journal stream to ``write``, then close it."""
    try:
        await _copy(lambda: reader.read(CHUNK), write, closed)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
