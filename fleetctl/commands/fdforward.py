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


@click.command(cls=FleetCommand)
@click.argument("socket_path", metavar="SOCKET")
def fd_forward(socket_path: str) -> None:
    """Proxy stdin and stdout to the unix socket SOCKET.

    End-of-file on stdin shuts the socket's sending side down, and the
    command exits once the socket has no more to send.
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


def proxy(stdin: int, stdout: int, connection: socket.socket) -> None:
    """Copy ``stdin`` to ``connection`` and ``connection`` to ``stdout`` until both end.

    Takes ownership of both file descriptors and closes them.
    """
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(connection, selectors.EVENT_READ)
    try:
        while len(selector.get_map()) > 0:
            for key, _ in selector.select():
                if key.fileobj == stdin:
                    data = os.read(stdin, CHUNK)
                    if data:
                        connection.sendall(data)
                        continue
                    selector.unregister(stdin)
                    connection.shutdown(socket.SHUT_WR)
                else:
                    data = connection.recv(CHUNK)
                    if data:
                        _write_all(stdout, data)
                        continue
                    # The server finished: the client gets end-of-file too.
                    selector.unregister(connection)
                    if stdin in selector.get_map():
                        selector.unregister(stdin)
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
