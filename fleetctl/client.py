"""Opening the registry that a command talks to, from the global options."""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, cast
from urllib.parse import urlsplit

import click

from fleetd.errors import FleetError
from fleetd.registry import Registry

if TYPE_CHECKING:
    from fleetctl.api import ApiRegistry
    from fleetctl.tunnel import SSHTunnel
    from fleetd.registry.etcd import EtcdRegistry

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ENDPOINT = "http://127.0.0.1:2379,http://127.0.0.1:4001"
DEFAULT_API_ENDPOINT = "unix:///var/run/fleet.sock"
DEFAULT_KEY_PREFIX = "/_coreos.com/fleet/"
DEFAULT_REQUEST_TIMEOUT = 3.0
ETCD_PORTS = frozenset({2379, 4001})


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

    # "" means the driver's default endpoint.
    endpoint: str = ""
    # "" means API, unless every endpoint has etcd's port (2379 or 4001).
    driver: str = ""
    etcd_key_prefix: str = DEFAULT_KEY_PREFIX
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    debug: bool = False
    # SSH: --tunnel HOST[:PORT] (or "") and the options of every ssh run.
    tunnel: str = ""
    ssh_username: str = "core"
    strict_host_key_checking: bool = True
    known_hosts_file: str = "~/.fleetctl/known_hosts"
    ssh_timeout: float = 10.0

    def endpoints(self) -> list[str]:
        """Return the comma-separated --endpoint value as a list of URLs."""
        endpoint = self.endpoint
        if not endpoint:
            is_etcd = self.resolved_driver() == "etcd"
            endpoint = DEFAULT_ENDPOINT if is_etcd else DEFAULT_API_ENDPOINT
        return [url.strip() for url in endpoint.split(",") if url.strip()]

    def resolved_driver(self) -> str:
        """Return "API" or "etcd": --driver, else guessed from --endpoint.

        Without --driver, endpoints that all have etcd's client ports (2379
        or 4001) mean the etcd driver, so ``--endpoint http://HOST:2379``
        alone keeps working. The original meant to do the same but never
        did, because its --driver always had a value.
        """
        if self.driver:
            return "etcd" if self.driver.lower() == "etcd" else "API"
        urls = [url.strip() for url in self.endpoint.split(",") if url.strip()]
        if urls and all(_has_etcd_port(url) for url in urls):
            return "etcd"
        return "API"


def _has_etcd_port(url: str) -> bool:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        return parts.scheme in {"http", "https"} and parts.port in ETCD_PORTS
    except ValueError:
        return False


@contextlib.asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[ClientRegistry]:
    """Open the registry the settings name, over the API or etcd, and yield it.

    Raises ``click.ClickException`` for settings that cannot work, and
    ``FleetError`` when the API or etcd does not respond.
    """
    endpoints = settings.endpoints()
    if not endpoints:
        raise click.ClickException(
            f"--endpoint {settings.endpoint!r} names no URL; give one such as "
            f"{DEFAULT_API_ENDPOINT} or, with --driver=etcd, http://127.0.0.1:2379"
        )
    if settings.tunnel:
        # Imported here because only --tunnel needs ssh.
        from fleetctl.tunnel import SSHOptions, SSHTunnel

        with SSHTunnel(SSHOptions.from_settings(settings)) as tunnel:
            async with _open_direct(settings, endpoints, tunnel) as registry:
                yield registry
        return
    async with _open_direct(settings, endpoints, None) as registry:
        yield registry


@contextlib.asynccontextmanager
async def _open_direct(
    settings: Settings, endpoints: list[str], tunnel: SSHTunnel | None
) -> AsyncIterator[ClientRegistry]:
    if settings.resolved_driver() == "API":
        async with _open_api(settings, endpoints, tunnel) as api:
            _freeze_garbage_collector()
            yield api
        return
    if tunnel is not None:
        endpoints = [tunnel.forward_url(url) for url in endpoints]

    # Imported here because the etcd registry and its JSON gateway client
    # cost about 20 ms to import after fleetctl's own modules (measured with
    # time.perf_counter on a 2-core development VM), which --help, --version
    # and the API driver should not pay.
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
        _freeze_garbage_collector()
        yield registry


def _freeze_garbage_collector() -> None:
    # Nearly everything allocated by now (modules, the connection) lives
    # until fleetctl exits. Frozen, it is left out of the collector's full
    # passes, which the allocations of list-units at 10,000 units trigger:
    # that removed one full pass, 10 to 14 ms, over etcd.
    gc.freeze()


@contextlib.asynccontextmanager
async def _open_api(
    settings: Settings, endpoints: list[str], tunnel: SSHTunnel | None
) -> AsyncIterator[ClientRegistry]:
    # Imported here so that --help and --version skip http.client and ssl.
    from fleetctl.api import ApiRegistry, TLSClientFiles, parse_endpoint

    if len(endpoints) > 1:
        log.warning(
            "the API driver uses only the first endpoint, %s; ignoring %s",
            endpoints[0],
            ", ".join(endpoints[1:]),
        )
    tls = TLSClientFiles(settings.ca_file, settings.cert_file, settings.key_file)
    endpoint = parse_endpoint(endpoints[0])
    if tunnel is not None:
        endpoint = tunnel.api_endpoint(endpoint)
    api = ApiRegistry(endpoint, settings.request_timeout, tls)
    log.debug("using the fleet API at %s", endpoints[0])
    try:
        yield api
    finally:
        api.close()


# The two functions below look the driver's module up in sys.modules instead
# of importing it: a registry of its class exists only if its module is
# loaded, and importing the other driver's module (the etcd gateway client,
# or http.client) would slow fleetctl down.


def etcd_registry_of(registry: ClientRegistry) -> EtcdRegistry | None:
    """Return ``registry`` if the etcd driver opened it, else None."""
    module = sys.modules.get("fleetd.registry.etcd")
    if module is not None and isinstance(registry, module.EtcdRegistry):
        return cast("EtcdRegistry", registry)
    return None


def api_registry_of(registry: ClientRegistry) -> ApiRegistry | None:
    """Return ``registry`` if the API driver opened it, else None."""
    module = sys.modules.get("fleetctl.api")
    if module is not None and isinstance(registry, module.ApiRegistry):
        return cast("ApiRegistry", registry)
    return None


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

    # Imported here, about 20 ms by `python -X importtime`, so that --help and
    # --version, which reach no registry, skip it.
    import asyncio

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
