"""SSH for fleetctl through the system OpenSSH client: options and --tunnel.

``ssh_argv`` turns the global SSH options into an ``ssh`` command line.
``SSHTunnel`` carries the driver's traffic to a fleetd or etcd that is only
reachable from the --tunnel host. The API driver's unix socket endpoint is
reached by running ``fleetctl fd-forward SOCKET`` on that host and speaking
HTTP over the ssh process's stdin and stdout. A TCP endpoint (etcd, or the
API over http or https) is reached through ``ssh -L`` from a free local port.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from fleetd.errors import FleetError

if TYPE_CHECKING:
    from fleetctl.api import ApiEndpoint
    from fleetctl.client import Settings

log = logging.getLogger(__name__)

SSH_BINARY = "ssh"
DEFAULT_SSH_PORT = 22
DEFAULT_KNOWN_HOSTS_FILE = "~/.fleetctl/known_hosts"
# The command run on the --tunnel host for a unix socket endpoint; fleetctl
# must be on that host's PATH for ssh sessions, as with the original.
REMOTE_FD_FORWARD = ("fleetctl", "fd-forward")
# Seconds ssh may take to exit after its stdin closes, before it is killed.
SSH_EXIT_WAIT = 5.0


@dataclass(frozen=True)
class SSHOptions:
    """The global options that shape every ssh command fleetctl runs."""

    username: str = "core"
    strict_host_key_checking: bool = True
    known_hosts_file: str = DEFAULT_KNOWN_HOSTS_FILE
    # Seconds allowed to set the connection up; 0 leaves ssh's default.
    timeout: float = 10.0
    forward_agent: bool = False
    # Jump host "HOST:PORT" that every connection goes through, or "".
    tunnel: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> SSHOptions:
        """Build the options from fleetctl's global settings."""
        return cls(
            username=settings.ssh_username,
            strict_host_key_checking=settings.strict_host_key_checking,
            known_hosts_file=settings.known_hosts_file,
            timeout=settings.ssh_timeout,
            tunnel=settings.tunnel,
        )


def split_host_port(
    address: str, default_port: int = DEFAULT_SSH_PORT
) -> tuple[str, int]:
    """Split ``HOST[:PORT]`` (``[V6]:PORT`` for IPv6) into host and port.

    The port defaults to 22, as the original's --tunnel did. Raises
    FleetError for an empty host or a port that is not a number in range.
    """
    host, port_text = address, ""
    if address.startswith("["):
        closing = address.find("]")
        if closing < 0:
            raise FleetError(
                f"invalid address {address!r}: missing ']' after the IPv6 host"
            )
        host = address[1:closing]
        port_text = address[closing + 1 :].removeprefix(":")
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    if not host:
        raise FleetError(f"invalid address {address!r}: give HOST or HOST:PORT")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise FleetError(
            f"invalid port {port_text!r} in {address!r}: use a number from 1 to 65535"
        )
    return host, int(port_text)


def _ssh_destination(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def known_hosts_path(options: SSHOptions) -> Path:
    """Return the expanded known_hosts path, creating its directory (mode 0700)."""
    path = Path(options.known_hosts_file).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ssh_argv(
    options: SSHOptions,
    host: str,
    port: int,
    extra: Sequence[str] = (),
    command: Sequence[str] = (),
) -> list[str]:
    """Build the ssh command line that runs ``command`` on ``host``.

    An empty ``command`` opens a login shell, and ssh then allocates a
    terminal when its stdin is one. ``extra`` options go before the host.
    """
    argv = [SSH_BINARY, "-p", str(port), "-l", options.username]
    # Quiet "Permanently added ..." notices, which would mix into the output.
    argv += ["-o", "LogLevel=ERROR"]
    if options.timeout > 0:
        argv += ["-o", f"ConnectTimeout={math.ceil(options.timeout)}"]
    if options.strict_host_key_checking:
        # "ask" is ssh's own default: prompt for an unknown host key, refuse
        # a changed one. The original fleetctl behaved the same way.
        known_hosts = known_hosts_path(options)
        argv += ["-o", "StrictHostKeyChecking=ask"]
        argv += ["-o", f"UserKnownHostsFile={known_hosts}"]
    else:
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    if options.forward_agent:
        argv.append("-A")
    if options.tunnel:
        jump_host, jump_port = split_host_port(options.tunnel)
        jump = _ssh_destination(jump_host, jump_port)
        argv += ["-J", f"{options.username}@{jump}"]
    argv += list(extra)
    argv.append(host)
    if command:
        argv.append("--")
        argv += list(command)
    return argv


def free_local_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SSHTunnel:
    """The ssh processes that carry one fleetctl run's traffic to --tunnel's host.

    Use it as a context manager: leaving it ends every ssh process it started.
    """

    def __init__(self, options: SSHOptions) -> None:
        self.host, self.port = split_host_port(options.tunnel)
        # The tunnel host is the destination itself, not a jump host.
        self.options = replace(options, tunnel="")
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> SSHTunnel:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """End every ssh process of this tunnel, waiting for each to exit."""
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(SSH_EXIT_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(
        self, argv: list[str], stdin: int, stdout: int
    ) -> subprocess.Popen[bytes]:
        log.debug("running %s", " ".join(argv))
        try:
            process = subprocess.Popen(argv, stdin=stdin, stdout=stdout)
        except OSError as err:
            raise FleetError(
                f"cannot run {argv[0]} for --tunnel: {err}; install the OpenSSH "
                "client (Debian: apt-get install openssh-client)"
            ) from err
        self._processes.append(process)
        return process

    # -- unix socket endpoints ---------------------------------------------

    def socket_opener(
        self, socket_path: str
    ) -> Callable[[float | None], socket.socket]:
        """Return a function that opens a stream to ``socket_path`` on the tunnel host.

        Each call starts ``ssh HOST fleetctl fd-forward SOCKET`` and returns
        one end of a socket pair whose other end is that ssh's stdin and
        stdout. When ssh fails, its messages go to fleetctl's stderr and the
        returned socket reads end-of-file.
        """

        def open_socket(timeout: float | None) -> socket.socket:
            ours, theirs = socket.socketpair()
            command = [*REMOTE_FD_FORWARD, socket_path]
            argv = ssh_argv(self.options, self.host, self.port, command=command)
            try:
                self._start(argv, theirs.fileno(), theirs.fileno())
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            ours.settimeout(timeout)
            return ours

        return open_socket

    # -- TCP endpoints -----------------------------------------------------

    def forward(self, host: str, port: int) -> int:
        """Forward a free local port to ``host:port`` as seen from the tunnel host.

        Returns the local port once ssh listens on it. Raises FleetError when
        ssh exits first (authentication failed, host unreachable) or does not
        listen within --ssh-timeout plus a few seconds.
        """
        local_port = free_local_port()
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        extra = [
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            f"127.0.0.1:{local_port}:{target}",
        ]
        argv = ssh_argv(self.options, self.host, self.port, extra=extra)
        process = self._start(argv, subprocess.DEVNULL, subprocess.DEVNULL)
        deadline = time.monotonic() + max(self.options.timeout, 1.0) + 5.0
        while not _accepts(local_port):
            code = process.poll()
            if code is not None:
                raise FleetError(
                    f"ssh to --tunnel {self.host}:{self.port} exited with status "
                    f"{code} before forwarding to {target} (its message is above); "
                    "check --ssh-username, ssh-agent and the host's address"
                )
            if time.monotonic() > deadline:
                raise FleetError(
                    f"ssh to --tunnel {self.host}:{self.port} did not forward to "
                    f"{target} in time; check that the host runs sshd"
                )
            time.sleep(0.05)
        log.debug("forwarding 127.0.0.1:%d to %s through ssh", local_port, target)
        return local_port

    def forward_url(self, url: str) -> str:
        """Return ``url`` with its host and port replaced by a forwarded local port."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            port = parts.port
        except ValueError as err:
            raise FleetError(f"invalid endpoint {url!r}: {err}") from err
        if not parts.hostname:
            raise FleetError(f"invalid endpoint {url!r}: no host to tunnel to")
        default = 443 if parts.scheme == "https" else 80
        local_port = self.forward(parts.hostname, port or default)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{local_port}"))

    def api_endpoint(self, endpoint: ApiEndpoint) -> ApiEndpoint:
        """Return ``endpoint`` reached through this tunnel instead of directly."""
        if endpoint.socket_path:
            return replace(endpoint, opener=self.socket_opener(endpoint.socket_path))
        # NOTE: an https endpoint is then checked against the name 127.0.0.1,
        # so its certificate must carry that name for TLS verification to pass.
        local_port = self.forward(endpoint.host, endpoint.port)
        return replace(endpoint, host="127.0.0.1", port=local_port)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def local_shell(command: Sequence[str]) -> list[str]:
    """Return the argv that runs ``command`` here the way sshd would run it.

    sshd joins the words with spaces and gives them to the user's shell, so
    the same happens here. No command means an interactive login shell.
    """
    shell = os.environ.get("SHELL") or "/bin/sh"
    if not command:
        return [shell, "-l"]
    return [shell, "-c", " ".join(command)]
