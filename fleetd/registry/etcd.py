"""The registry on etcd v3, through etcd's JSON gateway (see gateway.py).

Keys are relative to the key prefix everywhere above this module; this module
adds and strips the prefix. Every etcd failure becomes a ``RegistryError`` that
names the endpoints and the operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fleetd.api import metrics
from fleetd.errors import RegistryError
from fleetd.model import DesiredState, Machine, Unit, UnitState
from fleetd.registry import view as keys
from fleetd.registry.gateway import (
    GatewayClient,
    GatewayError,
    decode_bytes,
    decode_int,
    encode_bytes,
    parse_endpoints,
    prefix_range_end,
    ssl_context,
)
from fleetd.registry.view import RegistryView

log = logging.getLogger(__name__)

# etcd rejects a transaction with more operations than --max-txn-ops (128 by
# default), compares included.
MAX_TXN_OPS = 128
# Keys per range request of read_all. The client keeps a whole reply in
# memory, as JSON with the values in base64 (4/3 of their size), while it
# parses it, so pages bound that memory. The first page of unit files has
# READ_PAGE_KEYS keys. Later pages hold as many keys as fit PAGE_VALUE_BYTES
# of base64 values at the sizes seen so far, between READ_PAGE_KEYS and
# SMALL_KEYS_PAGE. Fewer, larger pages are faster, because each request
# costs etcd time of its own: at 10,000 units, reading the unit keys 1,000
# at a time took 0.75 s and 5,000 at a time 0.46 s. Unit states and machine
# keys are a few hundred bytes, so they are read 10,000 at a time.
READ_PAGE_KEYS = 1000
SMALL_KEYS_PAGE = 10_000
PAGE_VALUE_BYTES = 4 * 1024 * 1024


def _next_page(page: int, kvs: Sequence[dict[str, Any]]) -> int:
    """Return the keys to ask for next, from the value sizes of one page."""
    if page >= SMALL_KEYS_PAGE:
        return page
    average = sum(len(kv.get("value", "")) for kv in kvs) / len(kvs)
    fitting = int(PAGE_VALUE_BYTES / max(average, 1.0))
    return max(READ_PAGE_KEYS, min(SMALL_KEYS_PAGE, fitting))


def serialized_hash(raw: str) -> str:
    """Return the unit hash of a file already in serialized form: its SHA1."""
    return hashlib.sha1(raw.encode()).hexdigest()


class Compacted(RegistryError):
    """A watch started at a revision etcd has compacted away; read everything again."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for a TLS connection to etcd; empty strings when unused."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


class EtcdRegistry:
    """The cluster state under one key prefix of one etcd cluster."""

    def __init__(
        self,
        client: GatewayClient,
        prefix: str,
        timeout: float,
        endpoints: Sequence[str] = (),
    ) -> None:
        self._client = client
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.timeout = timeout
        self._where = ", ".join(endpoints) or "etcd"

    # -- plumbing ---------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _strip(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) :]

    def _failure(self, operation: str, err: BaseException) -> RegistryError:
        detail = str(err) or type(err).__name__
        if isinstance(err, TimeoutError):
            detail = f"no answer within {self.timeout:g}s"
        return RegistryError(
            f"etcd at {self._where} failed on {operation}: {detail}; check that "
            "etcd is running and the endpoint is right"
        )

    @contextlib.asynccontextmanager
    async def _call(self, operation: str, kind: str = "") -> AsyncIterator[None]:
        """Turn etcd failures into RegistryError and count the operation.

        ``kind`` is the ops label of the metrics. It defaults to one derived
        from ``operation``, which may name a key.
        """
        started = time.monotonic()
        failed = False
        try:
            yield
        except (GatewayError, TimeoutError, OSError) as err:
            failed = True
            raise self._failure(operation, err) from err
        finally:
            metrics.record_registry_operation(
                kind or metrics.registry_operation_kind(operation),
                time.monotonic() - started,
                failed=failed,
            )

    async def read_all(
        self, under: str = "", revision: int = 0
    ) -> tuple[int, list[tuple[str, bytes]]]:
        """Read every key under the prefix; returns the revision and the pairs.

        ``under`` narrows the read to keys that start with it, such as
        ``states/``. ``revision`` reads the keys as they were then, and 0
        reads the latest. The keys are read in pages, all at the revision of
        the first page, because one reply with every key of a large cluster
        would hold all of them in memory at once.
        """
        pairs: list[tuple[str, bytes]] = []
        async for page_revision, page in self._pages(under, revision):
            revision = page_revision
            pairs.extend(page)
        return revision, pairs

    async def _pages(
        self, under: str, revision: int
    ) -> AsyncIterator[tuple[int, list[tuple[str, bytes]]]]:
        """Yield (revision, pairs) for each page of the keys under ``under``.

        The request for the next page is sent before this page's keys and
        values are decoded, so etcd encodes one page while this process
        decodes the one before.
        """
        small = under in (keys.STATES, keys.MACHINES)
        page = SMALL_KEYS_PAGE if small else READ_PAGE_KEYS
        end = encode_bytes(prefix_range_end(self._key(under)))

        async def fetch(start: bytes, limit: int, revision: int) -> dict[str, Any]:
            request: dict[str, Any] = {
                "key": encode_bytes(start),
                "range_end": end,
                "limit": str(limit),
            }
            if revision:
                request["revision"] = str(revision)
            async with self._call("read"):
                return await self._client.call("/v3/kv/range", request)

        pending: asyncio.Task[dict[str, Any]] | None = asyncio.ensure_future(
            fetch(self._key(under), page, revision)
        )
        try:
            while pending is not None:
                response = await pending
                pending = None
                revision = revision or _header_revision(response)
                kvs = response.get("kvs", ())
                if response.get("more") and kvs:
                    after = decode_bytes(kvs[-1].get("key")) + b"\0"
                    page = _next_page(page, kvs)
                    pending = asyncio.ensure_future(fetch(after, page, revision))
                try:
                    pairs = [
                        (
                            self._strip(decode_bytes(kv.get("key"))),
                            decode_bytes(kv.get("value")),
                        )
                        for kv in kvs
                    ]
                except GatewayError as err:
                    raise self._failure("read", err) from err
                yield revision, pairs
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, RegistryError):
                    await pending

    async def read_view(self, *under: str) -> RegistryView:
        """Read the keys under each of ``under`` (all keys if none) at one revision.

        The first page of the first part sets the revision; the other parts
        are then read at the same time as the rest of it.
        """
        registry_view = RegistryView()
        first, *others = under or ("",)
        pages = self._pages(first, 0)
        try:
            revision, pairs = await anext(pages)
            registry_view.load(pairs)
            reads = [
                asyncio.ensure_future(self.read_all(part, revision)) for part in others
            ]
            try:
                async for _, pairs in pages:
                    registry_view.load(pairs)
                for read in reads:
                    _, pairs = await read
                    registry_view.load(pairs)
            finally:
                for read in reads:
                    read.cancel()
                # Collected, so a part that failed too logs no "exception
                # never retrieved" when this read fails first.
                await asyncio.gather(*reads, return_exceptions=True)
        finally:
            await pages.aclose()  # type: ignore[attr-defined]
        return registry_view

    async def watch(
        self, start_revision: int
    ) -> AsyncIterator[tuple[int, list[tuple[str, bytes | None]]]]:
        """Yield (revision, changes) for every change under the prefix.

        A deleted key comes with the value None. Raises ``Compacted`` when
        etcd no longer has the history from ``start_revision``, and
        ``RegistryError`` when the watch fails or its stream ends for any
        other reason, such as etcd restarting: it never ends quietly.
        """
        start = self._key("")
        stream = self._client.watch(
            {
                "key": encode_bytes(start),
                "range_end": encode_bytes(prefix_range_end(start)),
                "start_revision": str(start_revision),
            }
        )
        try:
            async for response in stream:
                compact_revision = decode_int(response.get("compact_revision"))
                if compact_revision > 0:
                    raise Compacted(
                        f"watch from revision {start_revision} compacted at "
                        f"{compact_revision}"
                    )
                if response.get("canceled"):
                    raise RegistryError(
                        f"etcd at {self._where} canceled the watch: "
                        f"{response.get('cancel_reason') or 'no reason given'}"
                    )
                events = response.get("events")
                if not events:
                    continue
                yield _header_revision(response), [self._change(e) for e in events]
        except (GatewayError, TimeoutError, OSError) as err:
            raise self._failure("watch", err) from err
        finally:
            await stream.aclose()
        raise RegistryError(
            f"etcd at {self._where} ended the watch stream; watch again from the "
            "last revision seen"
        )

    def _change(self, event: dict[str, Any]) -> tuple[str, bytes | None]:
        """Return the (key, value or None if deleted) of one watch event."""
        kv = event.get("kv") or {}
        key = self._strip(decode_bytes(kv.get("key")))
        if event.get("type") == "DELETE":
            return key, None
        return key, decode_bytes(kv.get("value"))

    async def changes(self) -> AsyncIterator[None]:
        """Yield once after every change under the prefix, from now on."""
        start = self._key("")
        async with self._call("read"):
            response = await self._client.call(
                "/v3/kv/range",
                {
                    "key": encode_bytes(start),
                    "range_end": encode_bytes(prefix_range_end(start)),
                    "count_only": True,
                },
            )
            revision = _header_revision(response)
        async for _revision, _changes in self.watch(revision + 1):
            yield None

    async def put(self, key: str, value: str, lease: int = 0) -> None:
        async with self._call(f"put {key}"):
            await self._client.call(
                "/v3/kv/put", self.op_put(key, value, lease)["request_put"]
            )

    async def delete(self, key: str) -> None:
        async with self._call(f"delete {key}"):
            await self._client.call(
                "/v3/kv/deleterange", {"key": encode_bytes(self._key(key))}
            )

    async def txn(
        self, compare: Sequence[Any], success: Sequence[Any], operation: str
    ) -> bool:
        """Run one transaction; True if the compares held and ``success`` ran.

        ``compare`` holds the results of the cmp_* methods and ``success``
        those of op_put and op_delete.
        """
        async with self._call(operation, kind="txn"):
            response = await self._client.call(
                "/v3/kv/txn", {"compare": list(compare), "success": list(success)}
            )
        return bool(response.get("succeeded"))

    # The operations and compares of a transaction, as the gateway's JSON.

    def op_put(self, key: str, value: str, lease: int = 0) -> dict[str, Any]:
        request: dict[str, Any] = {
            "key": encode_bytes(self._key(key)),
            "value": encode_bytes(value.encode()),
        }
        if lease:
            request["lease"] = str(lease)
        return {"request_put": request}

    def op_delete(self, key: str, *, prefix: bool = False) -> dict[str, Any]:
        full = self._key(key)
        request = {"key": encode_bytes(full)}
        if prefix:
            request["range_end"] = encode_bytes(prefix_range_end(full))
        return {"request_delete_range": request}

    def cmp_missing(self, key: str) -> dict[str, Any]:
        return self._compare(key, "VERSION", "EQUAL", version="0")

    def cmp_exists(self, key: str) -> dict[str, Any]:
        return self._compare(key, "VERSION", "NOT_EQUAL", version="0")

    def cmp_value(self, key: str, value: str) -> dict[str, Any]:
        return self._compare(key, "VALUE", "EQUAL", value=encode_bytes(value.encode()))

    def cmp_created_at(self, key: str, revision: int) -> dict[str, Any]:
        return self._compare(key, "CREATE", "EQUAL", create_revision=str(revision))

    def _compare(
        self, key: str, target: str, result: str, **operand: str
    ) -> dict[str, Any]:
        # int64 operands go as strings, the gateway's JSON form of int64.
        return {
            "key": encode_bytes(self._key(key)),
            "target": target,
            "result": result,
            **operand,
        }

    async def get(self, key: str) -> tuple[bytes, int, int] | None:
        """Return (value, create revision, lease) of ``key``, or None."""
        async with self._call(f"get {key}"):
            response = await self._client.call(
                "/v3/kv/range", {"key": encode_bytes(self._key(key))}
            )
            kvs = response.get("kvs")
            if not kvs:
                return None
            kv = kvs[0]
            return (
                decode_bytes(kv.get("value")),
                decode_int(kv.get("create_revision")),
                decode_int(kv.get("lease")),
            )

    # -- leases -----------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        async with self._call("lease grant"):
            response = await self._client.call("/v3/lease/grant", {"TTL": str(ttl)})
            if response.get("error"):
                raise GatewayError(f"lease grant failed: {response['error']}")
            return decode_int(response.get("ID"))

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease`` once; returns its new TTL, 0 if it has expired."""
        async with self._call("lease keep-alive"):
            result = await self._client.call_stream(
                "/v3/lease/keepalive", {"ID": str(lease)}
            )
            return max(0, decode_int(result.get("TTL")))

    async def lease_ttl(self, lease: int) -> int:
        """Return the remaining TTL of ``lease``, -1 if it does not exist."""
        async with self._call("lease time-to-live"):
            response = await self._client.call(
                "/v3/lease/timetolive", {"ID": str(lease)}
            )
            return decode_int(response.get("TTL"))

    async def revoke_lease(self, lease: int) -> None:
        async with self._call("lease revoke"):
            await self._client.call("/v3/lease/revoke", {"ID": str(lease)})

    # -- the Registry protocol used by fleetctl ---------------------------

    # Each reads only the keys its result depends on: at 10,000 units the
    # unit files are most of the registry's bytes.

    async def units(self) -> list[Unit]:
        view = await self.read_view(keys.UNITS, keys.STATES, keys.MACHINES)
        return view.units()

    async def unit(self, name: str) -> Unit | None:
        view = await self.read_view(
            keys.unit_prefix(name), f"{keys.STATES}{name}/", keys.MACHINES
        )
        return view.unit(name)

    async def machines(self) -> list[Machine]:
        return (await self.read_view(keys.MACHINES)).machine_list()

    async def unit_states(self) -> list[UnitState]:
        return (await self.read_view(keys.STATES)).unit_states()

    async def create_unit(self, name: str, raw: str, desired: DesiredState) -> bool:
        unit_hash = serialized_hash(raw)
        return await self.txn(
            [self.cmp_missing(keys.unit_file_key(name))],
            [
                self.op_put(
                    keys.unit_file_key(name),
                    keys.encode_unit_file(name, unit_hash, raw),
                ),
                self.op_put(keys.desired_key(name), desired.value),
            ],
            f"create unit {name}",
        )

    async def replace_unit(self, name: str, raw: str, desired: DesiredState) -> None:
        unit_hash = serialized_hash(raw)
        await self.txn(
            [],
            [
                self.op_put(
                    keys.unit_file_key(name),
                    keys.encode_unit_file(name, unit_hash, raw),
                ),
                self.op_put(keys.desired_key(name), desired.value),
            ],
            f"replace unit {name}",
        )

    async def set_desired_state(self, name: str, desired: DesiredState) -> bool:
        return await self.txn(
            [self.cmp_exists(keys.unit_file_key(name))],
            [self.op_put(keys.desired_key(name), desired.value)],
            f"set desired state of {name}",
        )

    async def destroy_unit(self, name: str) -> bool:
        return await self.txn(
            [self.cmp_exists(keys.unit_file_key(name))],
            [self.op_delete(keys.unit_prefix(name), prefix=True)],
            f"destroy unit {name}",
        )

    async def cluster_secret(self) -> bytes:
        """Return the secret fleetd instances share, creating it on first use."""
        candidate = secrets.token_hex(32)
        await self.txn(
            [self.cmp_missing(keys.SECRET)],
            [self.op_put(keys.SECRET, candidate)],
            "create cluster secret",
        )
        found = await self.get(keys.SECRET)
        if found is None:
            raise RegistryError(f"etcd at {self._where} lost the cluster secret")
        return bytes.fromhex(found[0].decode())


def _header_revision(response: dict[str, Any]) -> int:
    header = response.get("header") or {}
    return decode_int(header.get("revision"))


@contextlib.asynccontextmanager
async def open_registry(
    endpoints: Sequence[str],
    prefix: str,
    timeout: float,
    tls: TLSFiles | None = None,
    username: str = "",
    password: str = "",
) -> AsyncIterator[EtcdRegistry]:
    """Open a client for etcd and yield the registry under ``prefix``.

    TLS is used when the URLs are https, or when a CA file is given. Raises
    ``RegistryError`` for an invalid endpoint URL, an unreadable TLS file or
    failed authentication. Connections open on the first call, so an etcd
    that does not respond shows as a ``RegistryError`` on that call.
    """
    tls = tls or TLSFiles()
    try:
        parsed, use_tls = parse_endpoints(endpoints)
        context = None
        if use_tls or tls.ca_file:
            context = ssl_context(tls.ca_file, tls.cert_file, tls.key_file)
    except GatewayError as err:
        raise RegistryError(str(err)) from err
    client = GatewayClient(parsed, timeout, context, username, password)
    registry = EtcdRegistry(client, prefix, timeout, endpoints)
    try:
        if username:
            async with registry._call("authenticate"):
                await client.authenticate()
        yield registry
    finally:
        await client.close()
