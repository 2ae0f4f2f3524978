"""The peer channel: fleetd serves its local units' journals and status.

fleetctl (on any host with access to etcd) connects to the machine running a
unit, at the machine's public IP and ``peer_port``, and sends a request. A
request is one JSON line signed with HMAC-SHA256 under the cluster secret
stored in etcd, so only clients that can read the registry are served.

Operation ``journal``: the reply is a status line (``OK`` or ``ERROR
<message>``) followed by journalctl's output until it ends or the client
hangs up. Operation ``status``: the server runs ``systemctl status`` to
completion, then replies ``OK <exit code>`` and the command's output, or
``ERROR <message>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import BinaryIO

from fleetd.errors import UnitNameError
from fleetd.model import Machine
from fleetd.unit import validate_unit_name

log = logging.getLogger(__name__)

# journalctl --output modes a client may ask for.
OUTPUT_MODES = frozenset(
    {
        "short",
        "short-full",
        "short-iso",
        "short-iso-precise",
        "short-precise",
        "short-monotonic",
        "short-unix",
        "verbose",
        "export",
        "json",
        "json-pretty",
        "json-sse",
        "json-seq",
        "cat",
        "with-unit",
    }
)
MAX_CLOCK_SKEW = 300.0
MAX_LINES = 1_000_000
OPERATIONS = frozenset({"journal", "status"})
# How long systemctl status may run before the server kills it. It reads the
# unit's last journal lines, so it can be slow on a loaded machine.
STATUS_TIMEOUT = 20.0


def sign(secret: bytes, request: dict[str, object]) -> str:
    body = json.dumps(request, sort_keys=True).encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_request(secret: bytes, line: bytes, now: float) -> dict[str, object]:
    """Return the verified request in ``line``; raises ValueError saying why not."""
    try:
        request = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError("request is not JSON") from err
    if not isinstance(request, dict):
        raise ValueError("request is not a JSON object")
    mac = request.pop("mac", "")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, sign(secret, request)):
        raise ValueError("request signature invalid")
    sent = request.get("time")
    if not isinstance(sent, int | float) or abs(now - sent) > MAX_CLOCK_SKEW:
        raise ValueError("request too old or clock skew over 300s")
    if request.get("op") not in OPERATIONS:
        raise ValueError(f"unknown operation {request.get('op')!r}")
    unit = request.get("unit")
    if not isinstance(unit, str):
        raise ValueError(f"invalid unit {unit!r}")
    try:
        validate_unit_name(unit)
    except UnitNameError as err:
        raise ValueError(f"invalid unit {unit!r}: {err}") from err
    if not isinstance(request.get("nonce"), str):
        raise ValueError("request has no nonce")
    if request["op"] == "status":
        return request
    lines = request.get("lines")
    if not isinstance(lines, int) or not 0 <= lines <= MAX_LINES:
        raise ValueError(f"invalid line count {lines!r}")
    if request.get("output") not in OUTPUT_MODES:
        raise ValueError(f"invalid output mode {request.get('output')!r}")
    return request


def journalctl_argv(unit: str, lines: int, follow: bool, output: str) -> list[str]:
    argv = ["journalctl", f"--unit={unit}", "--no-pager", f"--lines={lines}"]
    argv.append(f"--output={output}")
    if follow:
        argv.append("--follow")
    return argv


def systemctl_status_argv(unit: str) -> list[str]:
    # "--" because a unit name may start with a dash.
    return ["systemctl", "status", "-l", "--no-pager", "--", unit]


async def run_systemctl_status(
    unit: str, timeout: float = STATUS_TIMEOUT
) -> tuple[int, bytes]:
    """Run ``systemctl status`` for ``unit`` here; return its exit code and output.

    stderr is merged into the output. Raises TimeoutError, after killing the
    command, when it runs longer than ``timeout`` seconds, and OSError when
    systemctl cannot be started.
    """
    process = await asyncio.create_subprocess_exec(
        *systemctl_status_argv(unit),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output


class PeerServer:
    """Serves journal and status requests from other fleetd instances and fleetctl."""

    def __init__(
        self,
        secret: bytes,
        host: str,
        port: int,
        *,
        status_timeout: float = STATUS_TIMEOUT,
    ) -> None:
        # Nonces of the requests served in the last MAX_CLOCK_SKEW seconds,
        # so a signed request cannot be replayed while its time is valid.
        self._seen: dict[str, float] = {}
        self.secret = secret
        self.host = host
        self.port = port
        self.status_timeout = status_timeout
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("serving journals to peers on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=10)
                now = time.time()
                request = check_request(self.secret, line, now)
                self._check_replay(str(request["nonce"]), now)
            except ValueError as err:
                # A first line over the stream limit also raises ValueError.
                log.warning("rejected peer request from %s: %s", peer, err)
                writer.write(f"ERROR {err}\n".encode())
                return
            if request["op"] == "status":
                await self._send_status(str(request["unit"]), writer)
                return
            writer.write(b"OK\n")
            await self._stream_journal(request, reader, writer)
        except (TimeoutError, ConnectionError) as err:
            log.debug("peer %s went away: %s", peer, err)
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()
                await writer.wait_closed()

    def _check_replay(self, nonce: str, now: float) -> None:
        for seen, at in list(self._seen.items()):
            if now - at > MAX_CLOCK_SKEW:
                del self._seen[seen]
        if nonce in self._seen:
            raise ValueError("request replayed")
        self._seen[nonce] = now

    async def _send_status(self, unit: str, writer: asyncio.StreamWriter) -> None:
        try:
            code, output = await run_systemctl_status(unit, self.status_timeout)
        except TimeoutError:
            limit = self.status_timeout
            log.warning("systemctl status %s timed out after %gs", unit, limit)
            writer.write(
                f"ERROR systemctl status {unit} timed out after {limit:g}s\n".encode()
            )
            return
        except OSError as err:
            log.warning("cannot run systemctl status %s: %s", unit, err)
            writer.write(f"ERROR cannot run systemctl: {err}\n".encode())
            return
        writer.write(f"OK {code}\n".encode() + output)
        await writer.drain()

    async def _stream_journal(
        self,
        request: dict[str, object],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        argv = journalctl_argv(
            str(request["unit"]),
            int(str(request["lines"])),
            bool(request.get("follow")),
            str(request["output"]),
        )
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert process.stdout is not None
        hangup = asyncio.create_task(reader.read())
        try:
            while True:
                chunk_task = asyncio.create_task(process.stdout.read(65536))
                done, _ = await asyncio.wait(
                    {chunk_task, hangup}, return_when=asyncio.FIRST_COMPLETED
                )
                if chunk_task not in done:
                    chunk_task.cancel()
                    break
                chunk = chunk_task.result()
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()
        finally:
            hangup.cancel()
            if process.returncode is None:
                process.kill()
            await process.wait()


async def open_peer(
    machine: Machine,
    operation: str,
    unit: str,
    *,
    secret: bytes,
    timeout: float,
    **fields: object,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``machine``'s fleetd and send one signed request.

    Raises ConnectionError when the machine publishes no peer address, OSError
    when it cannot be reached and TimeoutError when it does not reply.
    """
    if not machine.public_ip or not machine.peer_port:
        raise ConnectionError(f"machine {machine.id} publishes no peer address")
    request: dict[str, object] = {
        "op": operation,
        "unit": unit,
        **fields,
        "time": time.time(),
        "nonce": secrets.token_hex(8),
    }
    request["mac"] = sign(secret, request)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(machine.public_ip, machine.peer_port), timeout
    )
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    return reader, writer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def stream_journal(
    machine: Machine,
    unit: str,
    *,
    lines: int,
    follow: bool,
    output: str,
    secret: bytes,
    out: BinaryIO,
    timeout: float = 10.0,
) -> int:
    """Copy ``unit``'s journal on ``machine`` to ``out``; returns an exit code."""
    reader, writer = await open_peer(
        machine,
        "journal",
        unit,
        secret=secret,
        timeout=timeout,
        lines=lines,
        follow=follow,
        output=output,
    )
    try:
        status = await asyncio.wait_for(reader.readline(), timeout)
        if status != b"OK\n":
            message = status.decode(errors="replace").strip() or "connection closed"
            raise ConnectionError(
                f"machine {machine.id[:8]} rejected the journal request: {message}"
            )
        while chunk := await reader.read(65536):
            out.write(chunk)
            out.flush()
    finally:
        await _close(writer)
    return 0


async def fetch_status(
    machine: Machine, unit: str, *, secret: bytes, timeout: float = 10.0
) -> tuple[int, bytes]:
    """Run ``systemctl status unit`` on ``machine`` through its fleetd.

    Returns systemctl's exit code and output. Raises ConnectionError when
    the machine publishes no peer address or its fleetd rejects the request,
    OSError when it cannot be reached, and TimeoutError when it sends no
    reply within ``timeout`` seconds plus the time systemctl may take.
    """
    reader, writer = await open_peer(
        machine, "status", unit, secret=secret, timeout=timeout
    )
    try:
        reply = await asyncio.wait_for(reader.read(), timeout + STATUS_TIMEOUT)
    finally:
        await _close(writer)
    return parse_status_reply(machine.id, reply)


def parse_status_reply(machine_id: str, reply: bytes) -> tuple[int, bytes]:
    """Split a status reply into the exit code and the output.

    Raises ConnectionError when the reply is an ERROR line or malformed.
    """
    status, _, output = reply.partition(b"\n")
    words = status.split(b" ", 1)
    if words[0] == b"OK" and len(words) == 2:
        with contextlib.suppress(ValueError):
            return int(words[1]), output
    message = status.decode(errors="replace").strip() or "connection closed"
    raise ConnectionError(
        f"machine {machine_id[:8]} rejected the status request: {message}"
    )
