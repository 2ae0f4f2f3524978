"""Start and stop a real single-member etcd server on this machine.

Used by the local cluster command, by the tests, and by a lone fleetd that was
given no etcd to talk to.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from fleetd.cluster import process
from fleetd.errors import ClusterError

log = logging.getLogger(__name__)

# etcd 3.4 refuses to start on architectures other than amd64 and ppc64le
# unless ETCD_UNSUPPORTED_ARCH names the Go architecture it runs on.
_GO_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
}

_STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL


class EtcdServer:
    """One etcd process serving a single-member cluster from `data_dir`.

    A port of 0 picks a free port at construction time. The log goes to
    `<data_dir>.log` next to the data directory.
    """

    def __init__(
        self,
        data_dir: Path,
        client_port: int = 0,
        peer_port: int = 0,
        host: str = "127.0.0.1",
        name: str = "default",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.name = name
        self.client_port = client_port or free_port(host)
        self.peer_port = peer_port or free_port(host, exclude={self.client_port})
        self.log_path = self.data_dir.parent / (self.data_dir.name + ".log")
        self.start_time: int | None = None
        self._pid: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def adopt(
        cls, data_dir: Path, client_url: str, pid: int, start_time: int
    ) -> EtcdServer:
        """Return a handle on an etcd started earlier, by another process.

        stop() on the handle signals `pid` only while it is still the process
        that started at `start_time`.
        """
        host, _, port = client_url.removeprefix("http://").rpartition(":")
        server = cls(data_dir, client_port=int(port), host=host)
        server._pid = pid
        server.start_time = start_time
        return server

    @property
    def client_url(self) -> str:
        """The URL clients connect to, e.g. "http://127.0.0.1:23790"."""
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """The URL of the member's peer listener."""
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int:
        """The PID of the etcd process; ClusterError before start()."""
        if self._pid is None:
            raise ClusterError("etcd server has not been started: call start()")
        return self._pid

    @staticmethod
    def binary() -> str | None:
        """Return the path of the `etcd` executable, or None if not installed."""
        return shutil.which("etcd")

    def start(self, timeout: float = 10.0) -> None:
        """Start etcd and wait up to `timeout` seconds until /health reports ok.

        Raises ClusterError if etcd is not installed, a port is in use, etcd
        exits, or it does not become healthy in time.
        """
        binary = self.binary()
        if binary is None:
            raise ClusterError(
                "etcd not found in PATH: install it (Debian: apt-get install "
                "etcd-server)"
            )
        for port in (self.client_port, self.peer_port):
            check_port_free(self.host, port)

        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        with open(self.log_path, "ab") as log_file:
            # A new session lets etcd outlive the command that started it, as
            # `fleet-cluster up` needs.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_etcd_environment(),
                start_new_session=True,
            )
        self._pid = self._process.pid
        self.start_time = process.start_time(self._pid)
        log.info("started etcd, PID %d, at %s", self._pid, self.client_url)

        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop etcd: SIGTERM, then SIGKILL if it has not exited in 10 s."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    log.warning("etcd PID %d ignored SIGTERM; killing it", self.pid)
                    self._process.kill()
                    self._process.wait()
            log.info("stopped etcd, PID %d", self._process.pid)
            self._process = None
        elif self._pid is not None and self.start_time is not None:
            process.terminate(self._pid, self.start_time, _STOP_TIMEOUT)
            log.info("stopped etcd, PID %d", self._pid)

    def running(self) -> bool:
        """Return True while the etcd process started by this handle runs."""
        if self._pid is None or self.start_time is None:
            return False
        return process.is_running(self._pid, self.start_time)

    def healthy(self) -> bool:
        """Return True if GET /health returns {"health": "true"}."""
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1.0) as r:
                body = json.loads(r.read())
        except (OSError, ValueError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise ClusterError(
                    f"etcd exited during start-up; read its log {self.log_path}"
                )
            # Checked after the liveness test so that some other server on
            # the port cannot pass for ours.
            if self.healthy() and self.running():
                return
            time.sleep(0.05)
        raise ClusterError(
            f"etcd at {self.client_url} not healthy after {timeout} s; "
            f"read its log {self.log_path}"
        )

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1", exclude: set[int] | None = None) -> int:
    """Return a TCP port on `host` that nothing listens on right now.

    NOTE: another process may take the port before the caller binds it, so
    callers still check with check_port_free() right before use.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if not exclude or port not in exclude:
            return port
    raise ClusterError(f"no free TCP port found on {host}")


def check_port_free(host: str, port: int) -> None:
    """Raise ClusterError if a TCP port on `host` cannot be bound.

    etcd sets SO_REUSEADDR, so the check does too: a port held only by
    connections in TIME_WAIT counts as free, a listening socket does not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ClusterError(
                    f"port {port} on {host} is already in use: choose another "
                    "port, or 0 to pick a free one"
                ) from err
            raise ClusterError(f"cannot bind {host}:{port}: {err.strerror}") from err


def _etcd_environment() -> dict[str, str]:
    """Build etcd's environment: ours without ETCD_* settings, plus the arch.

    etcd reads every ETCD_* variable as a flag, and one left in the caller's
    environment would change or conflict with the flags given here.
    """
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("ETCD")
    }
    arch = _GO_ARCH.get(platform.machine())
    if arch is not None:
        environment["ETCD_UNSUPPORTED_ARCH"] = arch
    return environment
