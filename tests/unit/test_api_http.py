"""The API's HTTP/1.1 server over a unix socket of its own, spoken to in raw bytes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetd.api import http
from fleetd.api.http import (
    ChunkedReply,
    HttpReply,
    HttpServer,
    Request,
    RequestError,
    Response,
)

LIMIT = 1000


async def echo(request: Request) -> HttpReply:
    """Reply with what the server parsed; /stream streams three chunks.

    /stream-fail raises after sending the head of a streamed reply.
    """
    if request.raw_path == "/stream":
        reply: ChunkedReply = await request.stream(200, {"Content-Type": "text/plain"})
        for part in (b"one\n", b"two\n", b"three\n"):
            await reply.write(part)
        return reply
    if request.raw_path == "/stream-fail":
        await request.stream(200, {"Content-Type": "text/plain"})
        raise RuntimeError("handler failed after the reply's head")
    if request.raw_path == "/ignore-body":
        return Response(204)
    try:
        body = await request.read_body(LIMIT)
    except RequestError as err:
        return error_reply(err.status, err.message)
    seen = {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "body": body.decode(),
    }
    return Response(
        200, json.dumps(seen).encode(), {"Content-Type": "application/json"}
    )


def error_reply(status: int, message: str) -> Response:
    return Response(status, json.dumps({"error": message}).encode())


async def serve_at(path: Path) -> HttpServer:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    server = HttpServer(echo, error_reply)
    await server.listen(listener, None)
    return server


@pytest.fixture
async def socket_path(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "api.sock"
    server = await serve_at(path)
    try:
        yield path
    finally:
        await server.close()


async def exchange(path: Path, data: bytes) -> bytes:
    """Send ``data``, half-close, and return everything the server sends back."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    async with asyncio.timeout(5):
        received = await reader.read()
    writer.close()
    return received


def replies(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split raw bytes into (status, headers, body) replies with Content-Length."""
    found = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("Content-Length", "0"))
        found.append((status, headers, data[:length]))
        data = data[length:]
    return found


async def test_keep_alive_answers_requests_in_order(socket_path: Path) -> None:
    data = await exchange(
        socket_path,
        b"GET /a?x=1&x=2&y= HTTP/1.1\r\nHost: h\r\n\r\n"
        b"PUT /b%20c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    )

    first, second = replies(data)
    assert json.loads(first[2]) == {
        "method": "GET",
        "path": "/a",
        "query": {"x": ["1", "2"], "y": [""]},
        "body": "",
    }
    assert json.loads(second[2])["path"] == "/b c"
    assert json.loads(second[2])["body"] == "hello"


async def test_chunked_request_body(socket_path: Path) -> None:
    data = await exchange(
        socket_path,
        b"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
    )

    [(status, _, body)] = replies(data)
    assert status == 200
    assert json.loads(body)["body"] == "abcde"


async def test_expect_continue_gets_interim_reply(socket_path: Path) -> None:
    data = await exchange(
        socket_path,
        b"PUT /u HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
    )

    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


async def test_body_over_limit_is_413(socket_path: Path) -> None:
    data = await exchange(
        socket_path,
        b"PUT /u HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
        + b"x" * 5000
        + b"GET /next HTTP/1.1\r\n\r\n",
    )

    [(status, _, body), (after, _, _)] = replies(data)
    assert status == 413
    assert "5000 bytes" in json.loads(body)["error"]
    assert after == 200


async def test_large_unread_body_closes_connection(socket_path: Path) -> None:
    # The body is not sent, so the server must reply without waiting for it.
    data = await exchange(
        socket_path, b"PUT /u HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"
    )

    [(status, headers, _)] = replies(data)
    assert status == 413
    assert headers["Connection"] == "close"


async def test_unread_body_does_not_become_next_request(socket_path: Path) -> None:
    data = await exchange(
        socket_path,
        b"POST /ignore-body HTTP/1.1\r\nContent-Length: 26\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\n\r\n"
        b"GET /next HTTP/1.1\r\n\r\n",
    )

    statuses = [reply[0] for reply in replies(data)]
    assert statuses == [204, 200]
    assert b"/smuggled" not in data


async def test_truncated_unread_body_closes_connection(socket_path: Path) -> None:
    data = await exchange(
        socket_path, b"POST /ignore-body HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"
    )

    [(status, headers, _)] = replies(data)
    assert status == 204
    assert headers["Connection"] == "close"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"NONSENSE\r\n\r\n", 400, id="request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, id="header-line"),
        pytest.param(
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, id="content-length"
        ),
        pytest.param(
            b"PUT / HTTP/1.1\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
            id="both-lengths",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nX: " + b"y" * 20_000 + b"\r\n\r\n", 431, id="long-line"
        ),
        # U+00B2 SUPERSCRIPT TWO: str.isdigit() is true for it, int() fails.
        pytest.param(
            b"PUT / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\nab",
            400,
            id="non-ascii-digit",
        ),
        # More digits than int() converts by default (4300).
        pytest.param(
            b"PUT / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
            413,
            id="content-length-digits",
        ),
        pytest.param(
            b"PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nabcde",
            400,
            id="content-lengths-differ",
        ),
        pytest.param(
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
            501,
            id="chunked-then-gzip",
        ),
    ],
)
async def test_malformed_request_is_rejected_and_closed(
    socket_path: Path, request_bytes: bytes, status: int
) -> None:
    data = await exchange(socket_path, request_bytes + b"GET /next HTTP/1.1\r\n\r\n")

    [(answered, headers, _)] = replies(data)
    assert answered == status
    assert headers["Connection"] == "close"


async def test_head_reply_has_no_body(socket_path: Path) -> None:
    data = await exchange(socket_path, b"HEAD /x HTTP/1.1\r\n\r\n")

    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: " in head
    assert body == b""


async def test_http_1_0_closes_after_reply(socket_path: Path) -> None:
    data = await exchange(
        socket_path, b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    )

    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    [(status, headers, _)] = replies(data)
    assert status == 200
    assert headers["Connection"] == "close"


async def test_http_1_0_stream_ends_with_connection(socket_path: Path) -> None:
    data = await exchange(socket_path, b"GET /stream HTTP/1.0\r\n\r\n")

    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert body == b"one\ntwo\nthree\n"


async def test_streamed_reply_is_chunked(socket_path: Path) -> None:
    data = await exchange(socket_path, b"GET /stream HTTP/1.1\r\n\r\n")

    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"4\r\none\n\r\n4\r\ntwo\n\r\n6\r\nthree\n\r\n0\r\n\r\n"


async def test_close_ends_idle_connections(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    server = await serve_at(path)
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"GET /a HTTP/1.1\r\n\r\n")
    await reader.readuntil(b'"body": ""}')

    await server.close()

    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize(
    "size_line",
    [
        pytest.param(b"-5", id="negative"),
        pytest.param(b"0x3", id="hex-prefix"),
        pytest.param(b"+3", id="plus-sign"),
        pytest.param(b"1_0", id="underscore"),
        pytest.param(b"1" * 20_000, id="long-line"),
    ],
)
async def test_bad_chunk_size_is_400(
    socket_path: Path, size_line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = await exchange(
        socket_path,
        b"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size_line
        + b"\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    )

    [(status, headers, _)] = replies(data)
    assert status == 400
    assert headers["Connection"] == "close"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"PUT /u HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", id="length"),
        pytest.param(
            b"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            id="chunked",
        ),
    ],
)
async def test_truncated_body_is_400_not_error(
    socket_path: Path, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = await exchange(socket_path, request_bytes)

    [(status, headers, _)] = replies(data)
    assert status == 400
    assert headers["Connection"] == "close"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_slow_body_times_out(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BODY_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    writer.write(b"PUT /u HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")

    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()

    [(status, headers, _)] = replies(data)
    assert status == 408
    assert headers["Connection"] == "close"


async def test_failure_inside_stream_sends_no_second_head(socket_path: Path) -> None:
    data = await exchange(socket_path, b"GET /stream-fail HTTP/1.1\r\n\r\n")

    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.count(b"HTTP/1.1") == 1


async def test_http_1_0_expect_gets_no_interim_reply(socket_path: Path) -> None:
    data = await exchange(
        socket_path,
        b"PUT /u HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
    )

    assert data.startswith(b"HTTP/1.0 200 OK\r\n")


async def test_connections_over_limit_are_dropped(
    socket_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 2)
    open_connections = [
        await asyncio.open_unix_connection(str(socket_path)) for _ in range(2)
    ]
    for reader, writer in open_connections:
        writer.write(b"GET /held HTTP/1.1\r\n\r\n")
        await reader.readuntil(b'"body": ""}')

    dropped_reader, dropped_writer = await asyncio.open_unix_connection(
        str(socket_path)
    )
    async with asyncio.timeout(5):
        assert await dropped_reader.read() == b""
    dropped_writer.close()

    for _, writer in open_connections:
        writer.close()
        await writer.wait_closed()
    # Time for the server to see both ends of file before the next connect.
    await asyncio.sleep(0.2)
    data = await exchange(socket_path, b"GET /after HTTP/1.1\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
