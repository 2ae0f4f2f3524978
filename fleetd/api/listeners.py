"""The sockets the API is served on: a unix socket, TLS over TCP, systemd's.

Plain TCP is never served: a TCP listener needs a certificate, a key and a
CA, and the TLS handshake requires a client certificate signed by that CA.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import stat
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from fleetd.errors import FleetError

log = logging.getLogger(__name__)

# The first file descriptor systemd passes (sd_listen_fds(3)).
LISTEN_FDS_START = 3


class ListenerError(FleetError):
    """An API listener could not be opened; the message names it and the cause."""


@dataclass(frozen=True)
class TLSOptions:
    """The PEM files of the TLS listener: its certificate chain, key and client CA."""

    certfile: str
    keyfile: str
    cafile: str


def server_tls_context(options: TLSOptions) -> ssl.SSLContext:
    """Build a server context that requires client certificates signed by the CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.certfile, options.keyfile)
        context.load_verify_locations(cafile=options.cafile)
    except (OSError, ssl.SSLError) as err:
        raise ListenerError(
            f"cannot load the API TLS files (api_tls_certfile {options.certfile}, "
            f"api_tls_keyfile {options.keyfile}, api_tls_cafile {options.cafile}): "
            f"{err}"
        ) from err
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _socket_in_use(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind a unix stream socket at ``path`` that only its owner may connect to.

    A stale socket file from an earlier run is removed. Raises ListenerError
    when a server still accepts connections there or the path is not a socket.
    """
    if path.is_symlink() or path.exists():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ListenerError(
                f"api_socket {path} exists and is not a socket: remove it or set "
                "api_socket to another path"
            )
        if _socket_in_use(path):
            raise ListenerError(
                f"api_socket {path} is in use by another server: stop it or set "
                "api_socket to another path"
            )
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Connections are refused until listen(), so no client connects
        # before the mode is owner-only.
        os.chmod(path, 0o600)
    except OSError as err:
        sock.close()
        raise ListenerError(f"cannot bind api_socket {path}: {err.strerror}") from err
    return sock


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``; raise ListenerError if malformed."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ListenerError(
            f"invalid api_tls_address {address!r}: use HOST:PORT, such as "
            "127.0.0.1:54728 (port 0 picks a free port)"
        )
    return host, int(port_text)


def activation_sockets(environ: MutableMapping[str, str]) -> list[socket.socket]:
    """Take the listening sockets systemd passed to this process, if any.

    Reads and removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, as
    sd_listen_fds(1) does, so child processes do not see them.
    """
    pid = environ.pop("LISTEN_PID", "")
    count = environ.pop("LISTEN_FDS", "")
    environ.pop("LISTEN_FDNAMES", None)
    if not pid or not count or pid != str(os.getpid()):
        return []
    try:
        total = int(count)
    except ValueError:
        log.error("ignoring LISTEN_FDS=%r: not a number", count)
        return []
    sockets: list[socket.socket] = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + total):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def is_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def describe(sock: socket.socket) -> str:
    with contextlib.suppress(OSError):
        name = sock.getsockname()
        if isinstance(name, tuple):
            return f"{name[0]}:{name[1]}"
        return str(name) or "an unnamed unix socket"
    return "a socket"
