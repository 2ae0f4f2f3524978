"""The JSON gateway client's encoding, reply parsing and HTTP/1.1 handling.

The HTTP tests run the client against a small asyncio server on loopback
that plays back canned replies, so no etcd is needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from fleetd.registry.etcd import EtcdRegistry
from fleetd.registry.gateway import (
    Endpoint,
    EtcdStatusError,
    GatewayClient,
    GatewayError,
    decode_bytes,
    decode_int,
    encode_bytes,
    parse_messages,
    prefix_range_end,
    status_error,
    stream_result,
)

# -- encoding and parsing ---------------------------------------------------


def test_bytes_round_trip_as_base64() -> None:
    assert encode_bytes(b"foo") == "Zm9v"
    assert decode_bytes("Zm9v") == b"foo"


def test_missing_bytes_field_is_empty() -> None:
    assert decode_bytes(None) == b""
    assert decode_bytes("") == b""


def test_invalid_base64_is_rejected() -> None:
    with pytest.raises(GatewayError, match="invalid base64"):
        decode_bytes("Zm9v!")


def test_int64_fields_are_strings() -> None:
    assert decode_int("9223372036854775807") == 2**63 - 1
    assert decode_int("-1") == -1
    assert decode_int(None) == 0


def test_invalid_int64_is_rejected() -> None:
    with pytest.raises(GatewayError, match="invalid integer in etcd's reply: 'x'"):
        decode_int("x")


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/fleet/", b"/fleet0"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\xff\xff", b"\0"),
        (b"", b"\0"),
    ],
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_messages_split_on_newlines() -> None:
    body = b'{"result":{"a":1}}\n{"result":{"a":2}}\n'
    assert parse_messages(body) == [{"result": {"a": 1}}, {"result": {"a": 2}}]


def test_non_json_reply_names_the_fix() -> None:
    with pytest.raises(GatewayError, match="etcd v3 client URL"):
        parse_messages(b"404 page not found\n")


def test_plain_error_reply_becomes_status_error() -> None:
    reply = {
        "error": "etcdserver: requested lease not found",
        "message": "etcdserver: requested lease not found",
        "code": 5,
    }
    error = status_error(reply, 404)
    assert error.code == 5
    assert str(error) == "NOT_FOUND: etcdserver: requested lease not found"
    assert not error.token_rejected


def test_stream_error_becomes_status_error() -> None:
    message = {
        "error": {
            "grpc_code": 16,
            "http_code": 401,
            "message": "etcdserver: invalid auth token",
            "http_status": "Unauthorized",
        }
    }
    with pytest.raises(EtcdStatusError, match="UNAUTHENTICATED") as caught:
        stream_result(message)
    assert caught.value.token_rejected


def test_error_without_body_names_http_status() -> None:
    assert str(status_error({}, 502)) == "UNKNOWN: HTTP status 502"


def test_stream_result_is_unwrapped() -> None:
    assert stream_result({"result": {"TTL": "10"}}) == {"TTL": "10"}


def test_stream_message_without_result_is_rejected() -> None:
    with pytest.raises(GatewayError, match="has no result"):
        stream_result({"header": {}})


# -- transaction operations -------------------------------------------------


def _registry() -> EtcdRegistry:
    client = GatewayClient([Endpoint("http", "127.0.0.1", 1)], 1.0)
    return EtcdRegistry(client, "/p", 1.0)


def test_op_put_encodes_key_value_and_lease() -> None:
    op = _registry().op_put("units/a", "v", lease=2**62)
    assert op == {
        "request_put": {
            "key": encode_bytes(b"/p/units/a"),
            "value": encode_bytes(b"v"),
            "lease": str(2**62),
        }
    }


def test_op_put_without_lease_omits_it() -> None:
    assert "lease" not in _registry().op_put("k", "v")["request_put"]


def test_op_delete_of_prefix_has_range_end() -> None:
    op = _registry().op_delete("units/a/", prefix=True)
    assert op == {
        "request_delete_range": {
            "key": encode_bytes(b"/p/units/a/"),
            "range_end": encode_bytes(b"/p/units/a0"),
        }
    }


def test_compares_name_target_and_operand() -> None:
    registry = _registry()
    key = encode_bytes(b"/p/k")
    assert registry.cmp_missing("k") == {
        "key": key,
        "target": "VERSION",
        "result": "EQUAL",
        "version": "0",
    }
    assert registry.cmp_exists("k")["result"] == "NOT_EQUAL"
    assert registry.cmp_value("k", "x")["value"] == encode_bytes(b"x")
    assert registry.cmp_created_at("k", 42) == {
        "key": key,
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "42",
    }


# -- HTTP/1.1 against a canned server ---------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], Any]:
    """Read one request; returns its path, headers and JSON body."""
    request_line = await reader.readline()
    if not request_line:
        raise EOFError
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return request_line.split()[1].decode(), headers, json.loads(body)


def reply(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def chunked(*chunks: bytes, trailer: str = "") -> bytes:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + b"0\r\n" + trailer.encode() + b"\r\n"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Endpoint]]]:
    """A factory: serve(handler) starts a loopback server, returns its endpoint."""
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def start(handler: Handler) -> Endpoint:
        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return Endpoint("http", "127.0.0.1", port)

    yield start
    for server in servers:
        server.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


async def closed_port() -> Endpoint:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return Endpoint("http", "127.0.0.1", port)


async def test_connection_is_reused(serve: Any) -> None:
    connections = 0

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        with pytest.raises(EOFError):
            while True:
                _, _, body = await read_request(reader)
                writer.write(reply(json.dumps({"echo": body}).encode()))
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    assert await client.call("/v3/kv/range", {"n": 1}) == {"echo": {"n": 1}}
    assert await client.call("/v3/kv/range", {"n": 2}) == {"echo": {"n": 2}}
    await client.close()
    assert connections == 1


async def test_concurrent_calls_use_own_connections(serve: Any) -> None:
    connections = 0

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        with pytest.raises(EOFError):
            while True:
                _, _, body = await read_request(reader)
                await asyncio.sleep(0.05)
                writer.write(reply(json.dumps(body).encode()))
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    results = await asyncio.gather(*(client.call("/p", {"n": n}) for n in range(5)))
    assert results == [{"n": n} for n in range(5)]
    assert connections == 5
    await client.close()


async def test_chunked_reply_with_trailer(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(
            chunked(
                b'{"result":{"ID":"7",',
                b'"TTL":"10"}}\n',
                trailer="Grpc-Trailer-Content-Type: application/grpc\r\n",
            )
        )
        await read_request(reader)
        writer.write(reply(b'{"again":true}'))
        await writer.drain()
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    assert await client.call_stream("/v3/lease/keepalive", {}) == {
        "ID": "7",
        "TTL": "10",
    }
    # The trailer was consumed, so the connection serves the next call.
    assert await client.call("/p", {}) == {"again": True}
    await client.close()


async def test_error_status_raises_etcd_error(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        body = b'{"error":"etcdserver: x","message":"etcdserver: x","code":9}'
        writer.write(reply(body, status="400 Bad Request"))
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    with pytest.raises(EtcdStatusError, match="FAILED_PRECONDITION: etcdserver: x"):
        await client.call("/p", {})
    await client.close()


async def test_idle_connection_closed_by_server_is_replaced(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(reply(b"{}"))
        await writer.drain()
        # Close after the reply, as a restarting etcd does to idle connections.
        await asyncio.sleep(0.05)
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    assert await client.call("/p", {}) == {}
    await asyncio.sleep(0.1)
    assert await client.call("/p", {}) == {}
    await client.close()


async def test_dropped_reply_is_an_error(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    with pytest.raises(GatewayError, match="closed the connection mid-reply"):
        await client.call("/p", {})
    await client.close()


async def test_unreachable_endpoint_fails_over(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(reply(b'{"ok":true}'))
        writer.close()

    dead = await closed_port()
    client = GatewayClient([dead, await serve(handler)], 2.0)
    assert await client.call("/p", {}) == {"ok": True}
    await client.close()


async def test_no_endpoint_reachable_names_each(serve: Any) -> None:
    first, second = await closed_port(), await closed_port()
    client = GatewayClient([first, second], 2.0)
    with pytest.raises(GatewayError, match="cannot connect to etcd") as caught:
        await client.call("/p", {})
    assert first.url in str(caught.value)
    assert second.url in str(caught.value)
    await client.close()


async def test_silent_server_times_out(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    client = GatewayClient([await serve(handler)], 0.2)
    with pytest.raises(TimeoutError):
        await client.call("/p", {})
    await client.close()


async def test_rejected_token_authenticates_again(serve: Any) -> None:
    tokens = iter(["first", "second"])
    seen: list[tuple[str, str]] = []

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with pytest.raises(EOFError):
            while True:
                path, headers, body = await read_request(reader)
                seen.append((path, headers.get("authorization", "")))
                if path == "/v3/auth/authenticate":
                    assert body == {"name": "root", "password": "pw"}
                    token = next(tokens)
                    writer.write(reply(json.dumps({"token": token}).encode()))
                elif headers.get("authorization") == "second":
                    writer.write(reply(b'{"ok":true}'))
                else:
                    rejected = (
                        b'{"error":"etcdserver: invalid auth token",'
                        b'"message":"etcdserver: invalid auth token","code":16}'
                    )
                    writer.write(reply(rejected, status="401 Unauthorized"))
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0, None, "root", "pw")
    assert await client.call("/v3/kv/range", {}) == {"ok": True}
    assert seen == [
        ("/v3/auth/authenticate", ""),
        ("/v3/kv/range", "first"),
        ("/v3/auth/authenticate", ""),
        ("/v3/kv/range", "second"),
    ]
    await client.close()


async def test_stream_yields_messages_across_chunks(serve: Any) -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b'{"result":{"n":1}}\n{"res', b'ult":{"n":2}}\n'):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    received: list[Any] = []
    with pytest.raises(GatewayError, match="closed the connection"):
        async for message in client.stream("/v3/watch", {}):
            received.append(message)
    assert received == [{"n": 1}, {"n": 2}]
    await client.close()


async def test_closing_stream_closes_its_connection(serve: Any) -> None:
    closed = asyncio.Event()

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        piece = b'{"result":{"created":true}}\n'
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()
        assert await reader.read() == b""
        closed.set()
        writer.close()

    client = GatewayClient([await serve(handler)], 2.0)
    stream = client.stream("/v3/watch", {})
    assert await anext(stream) == {"created": True}
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), 2.0)
    await client.close()
