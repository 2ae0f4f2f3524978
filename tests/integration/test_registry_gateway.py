"""The etcd registry's JSON gateway client against a real etcd.

Tests that restart etcd, compact its history or turn on authentication get
an etcd of their own, so the session's etcd stays untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fleetd.errors import RegistryError
from fleetd.etcdserver import EtcdServer, free_port
from fleetd.registry import view as keys
from fleetd.registry.etcd import Compacted, TLSFiles, open_registry
from fleetd.registry.mirror import RegistryMirror

pytestmark = pytest.mark.integration

PREFIX = "/gateway-test/"


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of this test's own, which it may stop, restart or compact."""
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def restart(server: EtcdServer) -> EtcdServer:
    """Start etcd again on the same data and ports; returns the new handle."""
    again = EtcdServer(
        server.data_dir, client_port=server.client_port, peer_port=server.peer_port
    )
    again.start()
    return again


def gateway_post(url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5.0) as response:
        reply: dict[str, object] = json.loads(response.read())
    return reply


async def next_change(
    watch: AsyncIterator[tuple[int, list[tuple[str, bytes | None]]]],
) -> list[tuple[str, bytes | None]]:
    _revision, changes = await asyncio.wait_for(anext(watch), 5.0)
    return changes


async def test_reads_a_page_larger_than_4_mib(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    # gRPC clients accept 4 MiB replies by default; the gateway's reply here
    # contains 6 MiB of values (8 MiB as base64).
    value = "x" * (1024 * 1024)
    async with open_registry([etcd_server.client_url], etcd_prefix, 10.0) as registry:
        for index in range(6):
            await registry.put(f"units/big{index}/object", value)
        _revision, pairs = await registry.read_all()
    assert len(pairs) == 6
    assert all(data == value.encode() for _key, data in pairs)


async def test_watch_reports_puts_and_deletes(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    async with open_registry([etcd_server.client_url], etcd_prefix, 3.0) as registry:
        revision, _ = await registry.read_all()
        watch = registry.watch(revision + 1)
        try:
            await registry.put("units/a/target", "m1")
            assert await next_change(watch) == [("units/a/target", b"m1")]
            await registry.delete("units/a/target")
            assert await next_change(watch) == [("units/a/target", None)]
        finally:
            await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_fails_when_etcd_stops_and_calls_recover(
    own_etcd: EtcdServer,
) -> None:
    async with open_registry([own_etcd.client_url], PREFIX, 2.0) as registry:
        lease = await registry.grant_lease(30)
        revision, _ = await registry.read_all()
        watch = registry.watch(revision + 1)
        await registry.put("machines/m1/object", "{}", lease)
        assert await next_change(watch) == [("machines/m1/object", b"{}")]

        own_etcd.stop()
        with pytest.raises(RegistryError, match="watch"):
            await asyncio.wait_for(anext(watch), 5.0)
        with pytest.raises(RegistryError, match=r"failed on lease keep-alive"):
            await registry.keep_alive(lease)

        server = restart(own_etcd)
        try:
            returned = time.monotonic()
            # The pool still contains connections to the old etcd process.
            assert await registry.keep_alive(lease) > 0
            assert await registry.get("machines/m1/object") is not None
            assert time.monotonic() - returned < 1.0
            revision, _ = await registry.read_all()
            watch = registry.watch(revision + 1)
            await registry.put("units/a/target", "m1")
            assert await next_change(watch) == [("units/a/target", b"m1")]
            await watch.aclose()  # type: ignore[attr-defined]
        finally:
            server.stop()


async def test_calls_during_outage_recover_within_a_second(
    own_etcd: EtcdServer,
) -> None:
    async with open_registry([own_etcd.client_url], PREFIX, 1.0) as registry:
        await registry.put("k", "v")
        own_etcd.stop()
        failures = 0

        async def poll() -> float:
            nonlocal failures
            while True:
                try:
                    await registry.get("k")
                    return time.monotonic()
                except RegistryError:
                    failures += 1
                    await asyncio.sleep(0.1)

        polling = asyncio.create_task(poll())
        await asyncio.sleep(1.0)
        server = await asyncio.to_thread(restart, own_etcd)
        try:
            healthy = time.monotonic()
            recovered = await asyncio.wait_for(polling, 5.0)
        finally:
            server.stop()
    assert failures > 0
    assert recovered - healthy < 1.0


async def test_mirror_resyncs_after_etcd_restart(own_etcd: EtcdServer) -> None:
    async with open_registry([own_etcd.client_url], PREFIX, 2.0) as registry:
        mirror = RegistryMirror(registry, retry_interval=0.2)
        task = asyncio.create_task(mirror.run())
        try:
            await asyncio.wait_for(mirror.synced.wait(), 10)
            own_etcd.stop()
            server = await asyncio.to_thread(restart, own_etcd)
            try:
                await registry.put(keys.placement_key("after.service"), "m1")
                async with asyncio.timeout(10):
                    while "after.service" not in mirror.view.placements:
                        await asyncio.sleep(0.05)
            finally:
                server.stop()
        finally:
            task.cancel()


async def test_watch_from_compacted_revision_raises(own_etcd: EtcdServer) -> None:
    async with open_registry([own_etcd.client_url], PREFIX, 3.0) as registry:
        first, _ = await registry.read_all()
        for index in range(3):
            await registry.put("units/a/target", f"m{index}")
        current, _ = await registry.read_all()
        gateway_post(own_etcd.client_url, "/v3/kv/compaction", {"revision": current})
        watch = registry.watch(first + 1)
        with pytest.raises(Compacted, match=f"compacted at {current}"):
            await asyncio.wait_for(anext(watch), 5.0)
        with pytest.raises(RegistryError, match="compacted"):
            await registry.read_all(revision=first + 1)


async def test_mirror_follows_changes_across_compaction(own_etcd: EtcdServer) -> None:
    async with open_registry([own_etcd.client_url], PREFIX, 3.0) as registry:
        key = keys.placement_key("a.service")
        mirror = RegistryMirror(registry, retry_interval=0.2)
        task = asyncio.create_task(mirror.run())
        try:
            await asyncio.wait_for(mirror.synced.wait(), 10)
            # Compact while the watch runs: etcd cancels watches only when
            # they start below the compacted revision, so this one goes on.
            for index in range(3):
                await registry.put(key, f"m{index}")
            current, _ = await registry.read_all()
            gateway_post(
                own_etcd.client_url, "/v3/kv/compaction", {"revision": current}
            )
            await registry.put(key, "m9")
            async with asyncio.timeout(10):
                while mirror.view.placements.get("a.service") != "m9":
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()


# -- authentication ---------------------------------------------------------


def enable_auth(url: str, password: str) -> None:
    gateway_post(url, "/v3/auth/user/add", {"name": "root", "password": password})
    gateway_post(url, "/v3/auth/role/add", {"name": "root"})
    gateway_post(url, "/v3/auth/user/grant", {"user": "root", "role": "root"})
    gateway_post(url, "/v3/auth/enable", {})


async def test_authenticated_calls_survive_restart(own_etcd: EtcdServer) -> None:
    enable_auth(own_etcd.client_url, "secret")
    async with open_registry(
        [own_etcd.client_url], PREFIX, 3.0, username="root", password="secret"
    ) as registry:
        await registry.put("k", "v")
        revision, pairs = await registry.read_all()
        assert pairs == [("k", b"v")]
        # etcd may reject the token after a restart, and the client must
        # then authenticate again.
        own_etcd.stop()
        server = restart(own_etcd)
        try:
            assert await registry.get("k") is not None
            server.stop()
            server = restart(server)
            watch = registry.watch(revision + 1)
            await registry.put("k", "w")
            assert await next_change(watch) == [("k", b"w")]
            await watch.aclose()  # type: ignore[attr-defined]
        finally:
            server.stop()


async def test_rejected_token_is_renewed_for_watch(
    own_etcd: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetd.registry.gateway")
    enable_auth(own_etcd.client_url, "secret")
    async with open_registry(
        [own_etcd.client_url], PREFIX, 3.0, username="root", password="secret"
    ) as registry:
        revision, _ = await registry.read_all()
        # A token etcd does not know, as after --auth-token-ttl of disuse.
        registry._client._token = "expired.1"
        watch = registry.watch(revision + 1)
        change = asyncio.create_task(next_change(watch))
        async with asyncio.timeout(5):
            while "for a watch" not in caplog.text:
                await asyncio.sleep(0.05)
        await registry.put("k", "w")
        assert await change == [("k", b"w")]
        await watch.aclose()  # type: ignore[attr-defined]


async def test_wrong_password_fails_at_open(own_etcd: EtcdServer) -> None:
    enable_auth(own_etcd.client_url, "secret")
    with pytest.raises(RegistryError, match=r"failed on authenticate: .*invalid"):
        async with open_registry(
            [own_etcd.client_url], PREFIX, 3.0, username="root", password="wrong"
        ):
            pass


async def test_no_credentials_with_auth_on_names_the_cause(
    own_etcd: EtcdServer,
) -> None:
    enable_auth(own_etcd.client_url, "secret")
    async with open_registry([own_etcd.client_url], PREFIX, 3.0) as registry:
        with pytest.raises(RegistryError, match="user name is empty"):
            await registry.get("k")


# -- several endpoints ------------------------------------------------------


async def test_unreachable_first_endpoint_is_skipped(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with open_registry(
        [dead, etcd_server.client_url], etcd_prefix, 3.0
    ) as registry:
        await registry.put("k", "v")
        assert await registry.get("k") is not None


async def test_hung_first_endpoint_is_skipped(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    # The kernel accepts connections to a listening socket that is never
    # read, like an etcd stopped with SIGSTOP: connecting works, replies never come.
    with socket.create_server(("127.0.0.1", 0)) as hung:
        hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        async with open_registry(
            [hung_url, etcd_server.client_url], etcd_prefix, 0.5
        ) as registry:
            with pytest.raises(RegistryError, match="no answer within"):
                await registry.put("k", "v")

            await registry.put("k", "v")
            assert await registry.get("k") is not None


class FreezingProxy:
    """A loopback TCP proxy to etcd that can stop passing bytes, like a stopped etcd."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter
        ) -> None:
            while data := await source.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()
                sink.write(data)
                await sink.drain()

        try:
            await asyncio.gather(
                pipe(reader, upstream_writer), pipe(upstream_reader, writer)
            )
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            upstream_writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.connections:
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)


async def test_watch_on_stalled_endpoint_fails_after_call_timeout(
    etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    port = int(etcd_server.client_url.rsplit(":", 1)[1])
    proxy = FreezingProxy(port)
    proxy_url = await proxy.start()
    try:
        async with open_registry(
            [proxy_url, etcd_server.client_url], etcd_prefix, 0.5
        ) as registry:
            revision, _ = await registry.read_all()
            watch = registry.watch(revision + 1)
            await registry.put("k", "1")
            first_revision, _ = await anext(watch)

            proxy.frozen.set()
            with pytest.raises(RegistryError, match="no answer within"):
                await registry.put("k", "2")

            async with asyncio.timeout(5):
                with pytest.raises(RegistryError):
                    await anext(watch)
            assert first_revision > revision
            await registry.put("k", "3")
    finally:
        await proxy.close()


async def test_no_reachable_endpoint_names_each(etcd_prefix: str) -> None:
    first = f"http://127.0.0.1:{free_port()}"
    second = f"http://127.0.0.1:{free_port()}"
    async with open_registry([first, second], etcd_prefix, 1.0) as registry:
        with pytest.raises(RegistryError) as caught:
            await registry.get("k")
    message = str(caught.value)
    assert "failed on get k" in message
    assert f"{first}: Connection refused" in message
    assert f"{second}: Connection refused" in message


# -- TLS --------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """Write a CA, a server certificate for 127.0.0.1 and a client certificate."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-x509", "-subj", "/CN=fleet test CA", "-days", "1"]
    openssl("req", *ca, *key, "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    # etcd's gateway presents the server certificate as a client certificate
    # to etcd itself, so the server certificate has no extended key usage.
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{name}.ext").write_text(extension + "\n")
        request = ["-subj", f"/CN={name}", "-keyout", f"{name}.key"]
        openssl("req", *key, *request, "-out", f"{name}.csr", cwd=directory)
        sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
        openssl(
            "x509",
            "-req",
            *sign,
            "-in",
            f"{name}.csr",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
            cwd=directory,
        )


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An etcd serving https with client certificates; yields its URL and files."""
    binary = EtcdServer.binary()
    assert binary is not None
    make_certificates(tmp_path)

    client_port = free_port()
    peer_port = free_port(exclude={client_port})
    url = f"https://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    argv = [
        binary,
        "--name=tls",
        f"--data-dir={tmp_path / 'data'}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=tls={peer}",
        f"--cert-file={tmp_path / 'server.crt'}",
        f"--key-file={tmp_path / 'server.key'}",
        f"--trusted-ca-file={tmp_path / 'ca.crt'}",
        "--client-cert-auth",
    ]

    environment = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    with open(tmp_path / "etcd.log", "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=environment
        )
    try:
        yield url, tmp_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_tls_with_client_certificate(tls_etcd: tuple[str, Path]) -> None:
    url, files = tls_etcd
    tls = TLSFiles(
        ca_file=str(files / "ca.crt"),
        cert_file=str(files / "client.crt"),
        key_file=str(files / "client.key"),
    )
    async with open_registry([url], PREFIX, 2.0, tls) as registry:
        async with asyncio.timeout(10):
            while True:
                try:
                    await registry.put("k", "v")
                    break
                except RegistryError:
                    await asyncio.sleep(0.1)
        revision, pairs = await registry.read_all()
        assert pairs == [("k", b"v")]
        watch = registry.watch(revision + 1)
        await registry.put("k", "w")
        assert await next_change(watch) == [("k", b"w")]
        await watch.aclose()  # type: ignore[attr-defined]


async def test_tls_rejects_unknown_server_certificate(
    tls_etcd: tuple[str, Path],
) -> None:
    url, files = tls_etcd
    # Trusting only the client certificate, not the CA that signed the server's.
    tls = TLSFiles(
        ca_file=str(files / "client.crt"),
        cert_file=str(files / "client.crt"),
        key_file=str(files / "client.key"),
    )
    async with open_registry([url], PREFIX, 2.0, tls) as registry:
        with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
            async with asyncio.timeout(10):
                while True:
                    try:
                        await registry.get("k")
                    except RegistryError as err:
                        if "Connection refused" not in str(err):
                            raise
                        await asyncio.sleep(0.1)


def test_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"

    async def open_it() -> None:
        async with open_registry(
            ["https://127.0.0.1:2379"], PREFIX, 1.0, TLSFiles(ca_file=str(missing))
        ):
            pass

    with pytest.raises(RegistryError, match=f"cannot load the CA file {missing}"):
        asyncio.run(open_it())
