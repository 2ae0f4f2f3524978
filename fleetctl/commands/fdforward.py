"""fd-forward: copy stdin to a unix socket and the socket's replies to stdout.

``fleetctl --tunnel`` runs this on the tunnel host over ssh, so that the
fleetctl on the user's machine can speak HTTP to that host's fleet socket.
"""

from __future__ import annotations

import os
import selectors
import socket

import click

from fleetctl.options import FleetCommand

CHUNK = 65536
# Seconds to keep copying replies after stdin ends, counted from the last reply.
DRAIN_SECONDS = 5.0


@click.command(cls=FleetCommand)
@click.argument("socket_path", metavar="SOCKET")
def fd_forward(socket_path: str) -> None:
    """Proxy stdin and stdout to the unix socket SOCKET.

    After end-of-file on stdin, replies are still copied to stdout until
    the socket closes or stays quiet for a few seconds.
    """
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(socket_path)
    except OSError as err:
        raise click.ClickException(
            f"cannot connect to the unix socket {socket_path}: {err}; check the "
            "path and that fleetd runs on this machine"
        ) from err
    with connection:
        proxy(os.dup(0), os.dup(1), connection)


def proxy(
    stdin: int, stdout: int, connection: socket.socket, drain: float = DRAIN_SECONDS
) -> None:
    """Copy ``stdin`` to ``connection`` and ``connection`` to ``stdout``.

    Returns when the connection closes, or ``drain`` seconds after stdin
    ends once no reply data has come for that long. Takes ownership of both
    file descriptors and closes them.
    """
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(connection, selectors.EVENT_READ)
    stdin_open = True
    try:
        while True:
            events = selector.select(None if stdin_open else drain)
            if not events:
                return  # stdin ended and the server had nothing more to send.
            for key, _ in events:
                if key.fileobj == stdin:
                    data = os.read(stdin, CHUNK)
                    if data:
                        connection.sendall(data)
                        continue
                    # No half-close: some HTTP servers drop a connection
                    # whose client shuts its sending side down.
                    selector.unregister(stdin)
                    stdin_open = False
                else:
                    data = connection.recv(CHUNK)
                    if not data:
                        return
                    _write_all(stdout, data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        selector.close()
        os.close(stdin)
        os.close(stdout)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
