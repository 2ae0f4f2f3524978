import json
import time

import pytest

from fleetd.peer import PeerServer, check_request, journalctl_argv, sign

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
