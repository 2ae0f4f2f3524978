import json
import time
from collections.abc import AsyncIterator

import pytest

from fleetd import peer
from fleetd.model import Machine
from fleetd.peer import (
    PeerServer,
    check_request,
    fetch_status,
    journalctl_argv,
    parse_status_reply,
    sign,
    systemctl_status_argv,
)

SECRET = b"s" * 32


def signed(**fields: object) -> bytes:
    request: dict[str, object] = {
        "op": "journal",
        "unit": "web.service",
        "lines": 10,
        "follow": False,
        "output": "short",
        "time": time.time(),
        "nonce": "n1",
    }
    request.update(fields)
    request["mac"] = sign(SECRET, request)
    return json.dumps(request).encode()


def test_valid_request_is_accepted() -> None:
    request = check_request(SECRET, signed(), time.time())
    assert request["unit"] == "web.service"


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="signature invalid"):
        check_request(b"x" * 32, signed(), time.time())


def test_old_request_is_rejected() -> None:
    with pytest.raises(ValueError, match="too old"):
        check_request(SECRET, signed(time=time.time() - 600), time.time())


def test_unit_starting_with_dash_is_a_valid_name() -> None:
    request = check_request(SECRET, signed(unit="-x.service"), time.time())
    assert journalctl_argv(str(request["unit"]), 5, False, "short")[1] == (
        "--unit=-x.service"
    )


def test_invalid_unit_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid unit 'web'"):
        check_request(SECRET, signed(unit="web"), time.time())


def test_unknown_output_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid output mode 'bogus'"):
        check_request(SECRET, signed(output="bogus"), time.time())


def test_replayed_nonce_is_rejected() -> None:
    server = PeerServer(SECRET, "127.0.0.1", 0)
    now = time.time()
    server._check_replay("n1", now)
    with pytest.raises(ValueError, match="replayed"):
        server._check_replay("n1", now + 1)
    server._check_replay("n1", now + 400)


def signed_status(**fields: object) -> bytes:
    request: dict[str, object] = {
        "op": "status",
        "unit": "web.service",
        "time": time.time(),
        "nonce": "n2",
    }
    request.update(fields)
    request["mac"] = sign(SECRET, request)
    return json.dumps(request).encode()


def test_status_request_needs_no_journal_fields() -> None:
    request = check_request(SECRET, signed_status(), time.time())
    assert request["op"] == "status"
    assert request["unit"] == "web.service"


def test_status_request_invalid_unit_rejected() -> None:
    with pytest.raises(ValueError, match="invalid unit 'web'"):
        check_request(SECRET, signed_status(unit="web"), time.time())


def test_status_request_wrong_secret_rejected() -> None:
    with pytest.raises(ValueError, match="signature invalid"):
        check_request(b"x" * 32, signed_status(), time.time())


def test_status_request_old_time_rejected() -> None:
    with pytest.raises(ValueError, match="too old"):
        check_request(SECRET, signed_status(time=time.time() - 600), time.time())


def test_status_request_without_nonce_rejected() -> None:
    request: dict[str, object] = {
        "op": "status",
        "unit": "web.service",
        "time": time.time(),
    }
    request["mac"] = sign(SECRET, request)
    with pytest.raises(ValueError, match="no nonce"):
        check_request(SECRET, json.dumps(request).encode(), time.time())


def test_unknown_operation_rejected() -> None:
    with pytest.raises(ValueError, match="unknown operation 'restart'"):
        check_request(SECRET, signed_status(op="restart"), time.time())


def test_systemctl_argv_ends_options_before_unit() -> None:
    argv = systemctl_status_argv("-x.service")
    assert argv == ["systemctl", "status", "-l", "--no-pager", "--", "-x.service"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"OK 0\nactive\n", (0, b"active\n")),
        (b"OK 3\n", (3, b"")),
        (b"OK 3", (3, b"")),
        (b"OK -9\npartial", (-9, b"partial")),
    ],
)
def test_status_reply_parsed(reply: bytes, expected: tuple[int, bytes]) -> None:
    assert parse_status_reply("m" * 32, reply) == expected


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"ERROR request replayed\n", "ERROR request replayed"),
        (b"", "connection closed"),
        (b"OK\nnot a status reply", "OK"),
        (b"OK x\n", "OK x"),
    ],
)
def test_status_reply_errors(reply: bytes, message: str) -> None:
    with pytest.raises(
        ConnectionError, match=f"rejected the status request: {message}"
    ):
        parse_status_reply("m" * 32, reply)


@pytest.fixture
async def status_server(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[PeerServer, Machine]]:
    # A shell script replaces systemctl, since unit tests reach no systemd.
    def fake_argv(unit: str) -> list[str]:
        return ["sh", "-c", 'echo "status of $0"; echo to-stderr >&2; exit 3', unit]

    monkeypatch.setattr(peer, "systemctl_status_argv", fake_argv)
    server = PeerServer(SECRET, "127.0.0.1", 0, status_timeout=5)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    yield server, Machine("a" * 32, "127.0.0.1", {}, peer_port=port)
    await server.close()


async def test_status_round_trip(status_server: tuple[PeerServer, Machine]) -> None:
    _, machine = status_server
    code, output = await fetch_status(machine, "web.service", secret=SECRET)
    assert code == 3
    assert output == b"status of web.service\nto-stderr\n"


async def test_status_wrong_secret_rejected(
    status_server: tuple[PeerServer, Machine],
) -> None:
    _, machine = status_server
    with pytest.raises(ConnectionError, match="ERROR request signature invalid"):
        await fetch_status(machine, "web.service", secret=b"x" * 32)


async def test_status_timeout_reported(
    status_server: tuple[PeerServer, Machine], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, machine = status_server
    server.status_timeout = 0.2
    monkeypatch.setattr(peer, "systemctl_status_argv", lambda unit: ["sleep", "30"])
    with pytest.raises(ConnectionError, match=r"timed out after 0\.2s"):
        await fetch_status(machine, "web.service", secret=SECRET)


async def test_status_without_peer_address_rejected() -> None:
    machine = Machine("b" * 32, "", {}, peer_port=0)
    with pytest.raises(ConnectionError, match="publishes no peer address"):
        await fetch_status(machine, "web.service", secret=SECRET)
