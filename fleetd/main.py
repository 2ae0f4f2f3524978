"""The fleetd command: ``fleetd [--config PATH] [--version]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from fleetd import __version__
from fleetd.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from fleetd.errors import FleetError

log = logging.getLogger("fleetd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetd",
        description="fleetd runs the fleet agent and engine on this machine.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"path to the configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--version", action="store_true", help="print the version")
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    return parser


def _etcd_reachable(config: Config) -> bool:
    from fleetd.registry.etcd import open_registry

    async def probe() -> bool:
        try:
            async with open_registry(config.etcd_servers, "/", 1.0) as registry:
                await registry.get("health-probe")
        except FleetError:
            return False
        return True

    return asyncio.run(probe())


@contextlib.contextmanager
def _local_etcd(config: Config) -> Iterator[Config]:
    """Start an etcd of our own when none is configured and none responds."""
    if config.etcd_servers_set or _etcd_reachable(config):
        yield config
        return
    from fleetd.etcdserver import EtcdServer

    if EtcdServer.binary() is None:
        yield config
        return
    data_dir = Path(config.local_etcd_dir)
    server = EtcdServer(data_dir, client_port=2379, peer_port=2380)
    log.info("no etcd configured or reachable: starting one in %s", data_dir)
    server.start()
    try:
        yield dataclasses.replace(config, etcd_servers=(server.client_url,))
    finally:
        server.stop()


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard limit.

    API clients, etcd connections, journal streams and D-Bus share the soft
    limit, which is often 1,024. The hard limit is what the system allows
    this process: systemd 240 and later set it to 524,288 for services.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as err:
        log.warning("cannot raise the open files limit from %d: %s", soft, err)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version or args.command == ["version"]:
        print(f"fleetd version {__version__}")
        return 0
    if args.command:
        print(
            f"fleetd takes no arguments (got {' '.join(args.command)!r}). "
            "Did you mean to invoke fleetctl instead?",
            file=sys.stderr,
        )
        return 1

    try:
        config = load_config(
            args.config or DEFAULT_CONFIG_PATH,
            os.environ,
            path_given=args.config is not None,
        )
    except ConfigError as err:
        print(f"fleetd: {err}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.DEBUG if config.verbosity > 0 else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _raise_open_files_limit()
    from fleetd.server import serve

    try:
        with _local_etcd(config) as effective:
            asyncio.run(serve(effective))
    except FleetError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
