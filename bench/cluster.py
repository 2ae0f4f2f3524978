"""Clusters the benchmarks run on: their own etcd and their own test hosts.

Every benchmark cluster starts an etcd on a free loopback port with its data
under STATE_ROOT, boots hosts named ``bench<hex>-<n>`` on a random block of
loopback addresses, and kills both when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

from fleetd.cluster.cluster import boot_fleet_hosts
from fleetd.cluster.fleet import FleetOptions
from fleetd.cluster.host import Host
from fleetd.etcdserver import EtcdServer
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.registry.view import RegistryView

# Outside every host's private /tmp and /run, so the hosts can read it.
STATE_ROOT = Path(os.environ.get("FLEET_BENCH_STATE_ROOT", "/var/lib/fleet-bench"))
KEY_PREFIX = "/_coreos.com/fleet/"
FLEETCTL = str(Path(sys.executable).parent / "fleetctl")


async def time_fleetctl(
    args: Sequence[str], environment: dict[str, str], runs: int
) -> tuple[list[float], str]:
    """Run ``fleetctl args`` once unmeasured, then ``runs`` times measured.

    Returns the wall times in seconds and the last output. The command runs
    without blocking the event loop, which may be serving fleetd's API.
    """
    times: list[float] = []
    output = b""
    for run in range(runs + 1):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            FLEETCTL,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
        output, errors = await process.communicate()
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"fleetctl {' '.join(args)} failed: {errors.decode()}")
        if run > 0:
            times.append(elapsed)
    return times, output.decode()


@asynccontextmanager
async def api_socket(registry: EtcdRegistry, machine_id: str) -> AsyncIterator[str]:
    """Serve fleetd's API from ``registry`` in this process; yield its socket path.

    The API serves reads from a registry mirror, as in fleetd, and this
    machine need not be registered. The socket is in a fresh directory
    under STATE_ROOT.
    """
    # Imported here, because only the list scenario serves the API.
    from fleetd.api.backend import ApiBackend
    from fleetd.api.server import ApiServer
    from fleetd.registry.mirror import RegistryMirror

    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    directory = STATE_ROOT / f"api-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    socket_path = directory / "fleet.sock"
    mirror = RegistryMirror(registry)
    following = asyncio.create_task(mirror.run())
    server = ApiServer(
        ApiBackend(registry, mirror, lambda: True, machine_id),
        unix_socket=str(socket_path),
        environ={},
    )
    try:
        await mirror.synced.wait()
        await server.start()
        yield str(socket_path)
    finally:
        await server.close()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        shutil.rmtree(directory, ignore_errors=True)


class BenchCluster:
    """An etcd plus ``hosts`` test hosts running fleetd with ``agent_ttl``.

    Use it as a context manager: it boots on entry, and kills every host and
    stops etcd on exit, whatever happened.
    """

    def __init__(self, hosts: int = 3, agent_ttl: str = "10s") -> None:
        self.name = f"bench{uuid.uuid4().hex[:6]}"
        self.state_dir = STATE_ROOT / self.name
        self.host_count = hosts
        self.agent_ttl = agent_ttl
        self.etcd = EtcdServer(self.state_dir / "etcd")
        self.hosts: list[Host] = []

    @property
    def etcd_url(self) -> str:
        return self.etcd.client_url

    def __enter__(self) -> BenchCluster:
        self.state_dir.mkdir(parents=True)
        try:
            self.etcd.start()
            if self.host_count:
                options = FleetOptions(
                    etcd_url=self.etcd_url,
                    key_prefix=KEY_PREFIX,
                    agent_ttl=self.agent_ttl,
                )
                ip_base = f"127.{random.randint(200, 249)}.{random.randint(0, 255)}.11"
                self.hosts = boot_fleet_hosts(
                    self.name, self.host_count, self.state_dir, options, ip_base
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts:
            host.kill()
        self.etcd.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def fleetctl_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLEETCTL_DRIVER": "etcd",
            "FLEETCTL_ENDPOINT": self.etcd_url,
            "FLEETCTL_ETCD_KEY_PREFIX": KEY_PREFIX,
        }

    def fleetctl(
        self, args: Sequence[str], *, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run fleetctl on this machine against the cluster; raise on failure."""
        return subprocess.run(
            [FLEETCTL, *args],
            check=True,
            capture_output=True,
            text=True,
            env=self.fleetctl_env(),
            cwd=cwd,
            timeout=600,
        )

    def host_of(self, machine_id: str) -> Host:
        for host in self.hosts:
            if host.machine_id == machine_id:
                return host
        raise LookupError(f"no host of this cluster has machine ID {machine_id}")

    def _fleetd_pid(self, host: Host) -> str:
        return host.run(
            ["systemctl", "show", "fleet.service", "--property=MainPID", "--value"],
            timeout=30,
        ).stdout.strip()

    def fleetd_cpu_seconds(self, host: Host) -> float:
        """Return the CPU time fleetd on ``host`` has used, user and system."""
        stat = host.run(["cat", f"/proc/{self._fleetd_pid(host)}/stat"], timeout=30)
        # Fields after the command name, which is in parentheses: utime and
        # stime are the 12th and 13th, in clock ticks.
        fields = stat.stdout.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fleetd_rss_kib(self, host: Host) -> int:
        """Return the resident set size of fleetd on ``host``, in KiB."""
        main_pid = self._fleetd_pid(host)
        status = host.run(["cat", f"/proc/{main_pid}/status"], timeout=30).stdout
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise LookupError(f"no VmRSS in /proc/{main_pid}/status on {host.name}")


@asynccontextmanager
async def registry_at(url: str, timeout: float = 10.0) -> AsyncIterator[EtcdRegistry]:
    """Open the registry of a benchmark etcd under the default key prefix."""
    async with open_registry([url], KEY_PREFIX, timeout) as registry:
        yield registry


class Follower:
    """A view of the registry kept current by one watch, with waits on it.

    ``wait(condition)`` returns the ``time.monotonic()`` at which the watch
    response that made ``condition(view)`` true arrived. Conditions are
    checked after every watch response, so they must be cheap.
    """

    def __init__(self, registry: EtcdRegistry) -> None:
        self.registry = registry
        self.view = RegistryView()
        self._changed = asyncio.Condition()
        self._changed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Follower:
        revision, pairs = await self.registry.read_all()
        self.view.load(pairs)
        self._changed_at = time.monotonic()
        self._task = asyncio.create_task(self._follow(revision + 1))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, revision: int) -> None:
        async for _revision, changes in self.registry.watch(revision):
            for key, value in changes:
                self.view.apply(key, value)
            async with self._changed:
                self._changed_at = time.monotonic()
                self._changed.notify_all()

    async def wait(
        self, condition: Callable[[RegistryView], bool], timeout: float, what: str
    ) -> float:
        """Wait until ``condition(view)`` holds; raise TimeoutError naming ``what``."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while not condition(self.view):
                    if self._task is not None and self._task.done():
                        self._task.result()
                        raise RuntimeError("the registry watch ended")
                    await self._changed.wait()
                return self._changed_at
        except TimeoutError:
            raise TimeoutError(f"{what} did not happen within {timeout:g}s") from None


def active_count(view: RegistryView, names: Sequence[str] | None = None) -> int:
    """Count units whose placed machine published systemd state active."""
    count = 0
    for name in names if names is not None else list(view.files):
        machine_id = view.placements.get(name)
        if not machine_id:
            continue
        state = view.states.get(name, {}).get(machine_id)
        if state is not None and state.active_state == "active":
            count += 1
    return count
