"""Opening the registry that a command talks to, from the global options."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import click

from fleetd.errors import FleetError
from fleetd.registry import Registry

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ENDPOINT = "http://127.0.0.1:2379,http://127.0.0.1:4001"
DEFAULT_KEY_PREFIX = "/_coreos.com/fleet/"
DEFAULT_REQUEST_TIMEOUT = 3.0


class ClientRegistry(Registry, Protocol):
    """The registry operations fleetctl uses beyond the shared ``Registry``."""

    def changes(self) -> AsyncIterator[None]:
        """Yield once after every change under the key prefix, from now on."""
        ...

    async def cluster_secret(self) -> bytes:
        """Return the secret the fleetd instances share for peer requests."""
        ...


@dataclass
class Settings:
    """The global options, after FLEETCTL_* variables and the command line."""

    endpoint: str = DEFAULT_ENDPOINT
    driver: str = "etcd"
    etcd_key_prefix: str = DEFAULT_KEY_PREFIX
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    debug: bool = False
    tunnel: str = ""

    def endpoints(self) -> list[str]:
        """Return the comma-separated --endpoint value as a list of URLs."""
        return [url.strip() for url in self.endpoint.split(",") if url.strip()]


@contextlib.asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[ClientRegistry]:
    """Connect to the registry the settings name and yield it.

    Raises ``click.ClickException`` for settings that cannot work, and
    ``RegistryError`` when etcd does not respond.
    """
    if settings.driver.lower() != "etcd":
        # TODO: the HTTP API driver (fleetd's API on a unix socket or TCP) is
        # not written yet, so only the etcd driver works.
        raise click.ClickException(
            f"--driver={settings.driver} is not supported yet; use --driver=etcd "
            "with --endpoint set to the etcd URLs"
        )
    if settings.tunnel:
        click.echo(
            f"WARNING: --tunnel {settings.tunnel} is not supported and is ignored; "
            "connecting to --endpoint directly",
            err=True,
        )
    endpoints = settings.endpoints()
    if not endpoints:
        raise click.ClickException(
            f"--endpoint {settings.endpoint!r} names no etcd URL; give one such as "
            "http://127.0.0.1:2379"
        )

    # Imported here because the etcd registry loads etcd3aio and grpc, about
    # 0.1 s by `python -X importtime` on the development machine, which
    # --help and --version should not pay.
    from fleetd.registry.etcd import TLSFiles, open_registry

    tls = TLSFiles(
        ca_file=settings.ca_file,
        cert_file=settings.cert_file,
        key_file=settings.key_file,
    )
    log.debug(
        "opening the registry at %s under %s", endpoints, settings.etcd_key_prefix
    )
    async with open_registry(
        endpoints, settings.etcd_key_prefix, settings.request_timeout, tls
    ) as registry:
        yield registry


ClientOpener = Callable[
    [Settings], contextlib.AbstractAsyncContextManager[ClientRegistry]
]

# Tests replace this to run commands against an in-memory registry.
opener: ClientOpener = open_client


def run_with_registry(
    settings: Settings, action: Callable[[ClientRegistry], Awaitable[T]]
) -> T:
    """Run ``action`` with an open registry; turn fleet errors into exit 1.

    Every ``FleetError`` (etcd unreachable, invalid unit file, ...) becomes a
    one-line ``click.ClickException``, so the user sees "Error: <message>".
    """

    async def run() -> T:
        async with opener(settings) as registry:
            return await action(registry)

    try:
        return asyncio.run(run())
    except FleetError as err:
        raise click.ClickException(one_line(str(err))) from err


def one_line(message: str) -> str:
    """Collapse a message onto one line, since scripts read errors line by line."""
    return re.sub(r"\s*\n\s*", "; ", message.strip())
