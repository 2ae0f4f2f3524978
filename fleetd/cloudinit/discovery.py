"""Tokens for etcd's discovery protocol, on a discovery service of your own.

etcd 3.4 bootstraps from a discovery URL through etcd's v2 keys API: it reads
``<URL>/_config/size`` for the cluster size and registers each member under
``<URL>/<member ID>``. Any etcd started with ``--enable-v2`` serves that API,
so a discovery URL is ``http://HOST:PORT/v2/keys/discovery/<token>`` once
the size key is set.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from fleetd.errors import CloudConfigError, ClusterError
from fleetd.etcdserver import check_port_free, free_port

KEY_DIRECTORY = "discovery"


def new_discovery_url(
    endpoint: str, size: int, token: str | None = None, timeout: float = 5.0
) -> str:
    """Create a token for ``size`` members on the etcd at ``endpoint``.

    Returns the discovery URL to put in ``coreos.etcd.discovery``. Raises
    CloudConfigError if the etcd cannot be reached or does not serve v2.
    """
    if size < 1:
        raise CloudConfigError(f"invalid cluster size {size}: use 1 or more")
    token = token or secrets.token_hex(16)
    url = f"{endpoint.rstrip('/')}/v2/keys/{KEY_DIRECTORY}/{token}"
    body = urllib.parse.urlencode({"value": str(size)}).encode()
    request = urllib.request.Request(f"{url}/_config/size", data=body, method="PUT")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise CloudConfigError(
            f"creating a discovery token on {endpoint} failed with HTTP {err.code}: "
            "start that etcd with --enable-v2"
        ) from err
    except (OSError, ValueError) as err:
        raise CloudConfigError(
            f"creating a discovery token on {endpoint} failed: {err}; check that "
            "an etcd with --enable-v2 listens there"
        ) from err
    if reply.get("node", {}).get("value") != str(size):
        raise CloudConfigError(f"unexpected reply from {endpoint}: {reply}")
    return url


class DiscoveryServer:
    """An etcd with the v2 API on this machine, serving as discovery service.

    The data directory and the log ``<data_dir>.log`` are the caller's to
    remove. Ports of 0 pick free ports on ``host``.
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        client_port: int = 0,
        peer_port: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.client_port = client_port or free_port(host)
        self.peer_port = peer_port or free_port(host, exclude={self.client_port})
        self.log_path = data_dir.parent / (data_dir.name + ".log")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL, the endpoint for new_discovery_url()."""
        return f"http://{self.host}:{self.client_port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start etcd and wait until its /health endpoint reports healthy.

        Raises CloudConfigError if etcd is missing, a port is taken, or it
        does not become healthy within ``timeout`` seconds.
        """
        binary = shutil.which("etcd")
        if binary is None:
            raise CloudConfigError(
                "etcd not found in PATH: install it (Debian: apt-get install "
                "etcd-server)"
            )
        try:
            for port in (self.client_port, self.peer_port):
                check_port_free(self.host, port)
        except ClusterError as err:
            raise CloudConfigError(str(err)) from err

        peer = f"http://{self.host}:{self.peer_port}"
        argv = [
            binary,
            "--name=discovery",
            f"--data-dir={self.data_dir}",
            "--enable-v2",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=discovery={peer}",
        ]
        # etcd reads every ETCD_* variable as a flag; none may leak in.
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("ETCD")
        }
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=environment,
            )

        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CloudConfigError(
                    f"discovery etcd at {self.url} did not start; read {self.log_path}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop etcd: SIGTERM, then SIGKILL after 10 s."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1.0) as reply:
                body = json.loads(reply.read())
        except (OSError, ValueError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"
