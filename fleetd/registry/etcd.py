"""The registry on etcd v3, through the asyncio client etcd3aio.

Keys are relative to the key prefix everywhere above this module; this module
adds and strips the prefix. Every etcd failure becomes a ``RegistryError`` that
names the endpoints and the operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
from etcd3aio import Etcd3Client
from etcd3aio._protobuf import Compare
from etcd3aio.errors import EtcdError
from etcd3aio.kv import KVService, prefix_range_end

from fleetd.api import metrics
from fleetd.errors import RegistryError
from fleetd.model import DesiredState, Machine, Unit, UnitState
from fleetd.registry import view as keys
from fleetd.registry.view import RegistryView

log = logging.getLogger(__name__)

# etcd rejects a transaction with more operations than --max-txn-ops (128 by
# default), compares included.
MAX_TXN_OPS = 128
# Keys per range request of read_all, so one reply stays under the 64 MiB
# the channel accepts (CHANNEL_OPTIONS): a page of 1,000 unit files may
# average 64 KiB each. Unit states and machine keys are a few hundred bytes,
# so they are read 10,000 at a time.
# NOTE: a page of unit files larger than 64 KiB on average still exceeds it.
READ_PAGE_KEYS = 1000
SMALL_KEYS_PAGE = 10_000


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


# gRPC channel options added to etcd3aio's. The reconnect backoff is capped
# at 1 s (gRPC's default grows to 120 s), so after an etcd outage every fleetd
# renews its lease before it expires. Replies may be up to 64 MiB: a page of
# the registry contains many unit files, and gRPC's default limit is 4 MiB.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def _ipv4_of(host: str, url: str) -> str:
    """Return ``host`` as an IPv4 address, resolving a host name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
        except OSError as err:
            raise RegistryError(
                f"invalid etcd endpoint {url!r}: cannot resolve {host!r} to an "
                "IPv4 address; use an IP address or a resolvable name"
            ) from err
        return str(infos[0][4][0])
    if address.version != 4:
        raise RegistryError(
            f"invalid etcd endpoint {url!r}: IPv6 addresses are not supported by "
            "the etcd client yet; use an IPv4 address"
        )
    return str(address)


def parse_endpoints(urls: Sequence[str]) -> tuple[list[str], bool]:
    """Turn etcd URLs into ``address:port`` targets and whether they use TLS.

    Host names are resolved here, because the etcd client only dials IPv4
    addresses.
    """
    targets: list[str] = []
    schemes: set[str] = set()
    for url in urls:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise RegistryError(
                f"invalid etcd endpoint {url!r}: use http://HOST:PORT or "
                "https://HOST:PORT"
            )
        try:
            port = parts.port or 2379
        except ValueError as err:
            raise RegistryError(f"invalid etcd endpoint {url!r}: {err}") from err
        schemes.add(parts.scheme)
        targets.append(f"{_ipv4_of(parts.hostname, url)}:{port}")
    if not targets:
        raise RegistryError("no etcd endpoint given: set --endpoint or etcd_servers")
    if len(schemes) > 1:
        raise RegistryError(
            f"etcd endpoints {', '.join(urls)} mix http and https: use one scheme"
        )
    return targets, schemes == {"https"}


class EtcdRegistry:
    """The cluster state under one key prefix of one etcd cluster."""

    def __init__(
        self,
        client: Etcd3Client,
        prefix: str,
        timeout: float,
        endpoints: Sequence[str] = (),
    ) -> None:
        self._client = client
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.timeout = timeout
        self._where = ", ".join(endpoints) or "etcd"

    # -- plumbing ---------------------------------------------------------

    @property
    def _kv(self) -> KVService:
        assert self._client.kv is not None, "registry used after close"
        return self._client.kv

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _strip(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) :]

    def _failure(self, operation: str, err: BaseException) -> RegistryError:
        detail = str(err) or type(err).__name__
        if isinstance(err, grpc.aio.AioRpcError):
            detail = f"{err.code().name}: {err.details()}"
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
        except (EtcdError, grpc.aio.AioRpcError, TimeoutError, OSError) as err:
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
        could exceed the size of message gRPC accepts.
        """
        small = under in (keys.STATES, keys.MACHINES)
        page = SMALL_KEYS_PAGE if small else READ_PAGE_KEYS
        start = self._key(under)
        end = prefix_range_end(start)
        pairs: list[tuple[str, bytes]] = []
        while True:
            async with self._call("read"):
                response = await self._kv.get(
                    start,
                    end,
                    revision=revision,
                    limit=page,
                    timeout=self.timeout,
                )
            revision = revision or response.header.revision
            pairs.extend((self._strip(kv.key), kv.value) for kv in response.kvs)
            if not response.more or not response.kvs:
                return revision, pairs
            start = response.kvs[-1].key + b"\0"

    async def read_view(self, *under: str) -> RegistryView:
        """Read the keys under each of ``under`` (all keys if none) at one revision."""
        registry_view = RegistryView()
        revision = 0
        for part in under or ("",):
            revision, pairs = await self.read_all(part, revision)
            registry_view.load(pairs)
        return registry_view

    async def watch(
        self, start_revision: int
    ) -> AsyncIterator[tuple[int, list[tuple[str, bytes | None]]]]:
        """Yield (revision, changes) for every change under the prefix.

        A deleted key comes with the value None. Raises ``Compacted`` when
        etcd no longer has the history from ``start_revision``.
        """
        assert self._client.watch is not None, "registry used after close"
        start = self._key("")
        stream = self._client.watch.watch(
            start, prefix_range_end(start), start_revision=start_revision
        )
        try:
            async for response in stream:
                if response.compact_revision > 0:
                    raise Compacted(
                        f"watch from revision {start_revision} compacted at "
                        f"{response.compact_revision}"
                    )
                if response.canceled:
                    raise RegistryError(
                        f"etcd canceled the watch: {response.cancel_reason}"
                    )
                if not response.events:
                    continue
                changes = [
                    (
                        self._strip(event.kv.key),
                        None if event.type == event.DELETE else event.kv.value,
                    )
                    for event in response.events
                ]
                yield response.header.revision, changes
        except (EtcdError, grpc.aio.AioRpcError) as err:
            raise self._failure("watch", err) from err
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def changes(self) -> AsyncIterator[None]:
        """Yield once after every change under the prefix, from now on."""
        start = self._key("")
        async with self._call("read"):
            response = await self._kv.get(
                start, prefix_range_end(start), count_only=True, timeout=self.timeout
            )
        async for _revision, _changes in self.watch(response.header.revision + 1):
            yield None

    async def put(self, key: str, value: str, lease: int = 0) -> None:
        async with self._call(f"put {key}"):
            await self._kv.put(self._key(key), value, lease, timeout=self.timeout)

    async def delete(self, key: str) -> None:
        async with self._call(f"delete {key}"):
            await self._kv.delete(self._key(key), timeout=self.timeout)

    async def txn(
        self, compare: Sequence[Any], success: Sequence[Any], operation: str
    ) -> bool:
        """Run one transaction; True if the compares held and ``success`` ran."""
        async with self._call(operation, kind="txn"):
            response = await self._kv.txn(compare, success, timeout=self.timeout)
        return bool(response.succeeded)

    def op_put(self, key: str, value: str, lease: int = 0) -> Any:
        return KVService.txn_op_put(self._key(key), value, lease=lease)

    def op_delete(self, key: str, *, prefix: bool = False) -> Any:
        full = self._key(key)
        end = prefix_range_end(full) if prefix else None
        return KVService.txn_op_delete(full, range_end=end)

    def cmp_missing(self, key: str) -> Any:
        return KVService.txn_compare_version(self._key(key), 0)

    def cmp_exists(self, key: str) -> Any:
        return KVService.txn_compare_version(
            self._key(key), 0, result=Compare.NOT_EQUAL
        )

    def cmp_value(self, key: str, value: str) -> Any:
        return KVService.txn_compare_value(self._key(key), value)

    def cmp_created_at(self, key: str, revision: int) -> Any:
        return KVService.txn_compare_create_revision(self._key(key), revision)

    async def get(self, key: str) -> tuple[bytes, int, int] | None:
        """Return (value, create revision, lease) of ``key``, or None."""
        async with self._call(f"get {key}"):
            response = await self._kv.get(self._key(key), timeout=self.timeout)
        if not response.kvs:
            return None
        kv = response.kvs[0]
        return kv.value, kv.create_revision, kv.lease

    # -- leases -----------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        assert self._client.lease is not None, "registry used after close"
        async with self._call("lease grant"):
            response = await self._client.lease.grant(ttl, timeout=self.timeout)
        return int(response.ID)

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease`` once; returns its new TTL, 0 if it has expired."""
        assert self._client.lease is not None, "registry used after close"
        async with self._call("lease keep-alive"):
            stream = self._client.lease.keep_alive(lease)
            try:
                async with asyncio.timeout(self.timeout):
                    async for response in stream:
                        return max(0, int(response.TTL))
            finally:
                stream.cancel()
        return 0

    async def lease_ttl(self, lease: int) -> int:
        """Return the remaining TTL of ``lease``, -1 if it does not exist."""
        assert self._client.lease is not None, "registry used after close"
        async with self._call("lease time-to-live"):
            response = await self._client.lease.time_to_live(
                lease, timeout=self.timeout
            )
        return int(response.TTL)

    async def revoke_lease(self, lease: int) -> None:
        assert self._client.lease is not None, "registry used after close"
        async with self._call("lease revoke"):
            await self._client.lease.revoke(lease, timeout=self.timeout)

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


def _read_pem(path: str, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise RegistryError(f"cannot read {what} {path}: {err.strerror}") from err


@contextlib.asynccontextmanager
async def open_registry(
    endpoints: Sequence[str],
    prefix: str,
    timeout: float,
    tls: TLSFiles | None = None,
    username: str = "",
    password: str = "",
) -> AsyncIterator[EtcdRegistry]:
    """Connect to etcd and yield the registry under ``prefix``.

    Raises ``RegistryError`` naming the endpoints when etcd does not respond.
    """
    targets, use_tls = parse_endpoints(endpoints)
    tls = tls or TLSFiles()
    if use_tls or tls.ca_file:
        # Certificates name the host, not the address it resolved to.
        host = urlsplit(endpoints[0] if "://" in endpoints[0] else "//" + endpoints[0])
        client = Etcd3Client(
            targets,
            tls_server_name=host.hostname,
            ca_cert=_read_pem(tls.ca_file, "CA file") or b"",
            cert_chain=_read_pem(tls.cert_file, "certificate file"),
            cert_key=_read_pem(tls.key_file, "key file"),
        )
    else:
        client = Etcd3Client(targets)
    # NOTE: etcd3aio 0.3 takes no channel options; its connection manager
    # keeps them in a list read when connect() builds the channel.
    client._manager.grpc_options.extend(CHANNEL_OPTIONS)
    await client.connect()
    registry = EtcdRegistry(client, prefix, timeout, endpoints)
    try:
        if username:
            assert client.auth is not None
            async with registry._call("authenticate"):
                response = await client.auth.authenticate(username, password)
            client.set_token(response.token)
        yield registry
    finally:
        await client.close()
