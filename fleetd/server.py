"""Builds fleetd's roles from the configuration and runs them on one event loop."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import struct
from pathlib import Path

from fleetd import __version__
from fleetd.agent.agent import Agent
from fleetd.api.server import api_server_from_config
from fleetd.config import Config
from fleetd.engine.engine import Engine
from fleetd.errors import FleetError, RegistryError
from fleetd.model import Machine
from fleetd.peer import PeerServer
from fleetd.presence import MachinePresence
from fleetd.registry.etcd import EtcdRegistry, TLSFiles, open_registry
from fleetd.registry.mirror import RegistryMirror
from fleetd.systemd import SystemdManager

log = logging.getLogger(__name__)

MACHINE_ID_PATH = Path("/etc/machine-id")
_SIOCGIFADDR = 0x8915


def read_machine_id(path: Path = MACHINE_ID_PATH) -> str:
    try:
        machine_id = path.read_text().strip()
    except OSError as err:
        raise FleetError(f"cannot read machine ID from {path}: {err.strerror}") from err
    if len(machine_id) != 32 or any(c not in "0123456789abcdef" for c in machine_id):
        raise FleetError(
            f"invalid machine ID {machine_id!r} in {path}: expected 32 lowercase hex "
            "digits (run systemd-machine-id-setup)"
        )
    return machine_id


def detect_public_ip() -> str:
    """Return the IPv4 address of the default-route interface, or ""."""
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return _interface_ipv4(fields[0])
    return ""


def _interface_ipv4(interface: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("256s", interface.encode()[:15])
        try:
            reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
        except OSError:
            return ""
    address = ipaddress.IPv4Address(reply[20:24])
    return "" if address.is_loopback or address.is_link_local else str(address)


async def _cluster_secret(registry: EtcdRegistry) -> bytes:
    delay = 1.0
    while True:
        try:
            return await registry.cluster_secret()
        except RegistryError as err:
            log.warning("etcd not ready, retrying in %gs: %s", delay, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def serve(config: Config) -> None:
    """Run the agent, the engine and the peer server until SIGTERM or SIGINT."""
    machine = Machine(
        id=read_machine_id(),
        public_ip=config.public_ip or detect_public_ip(),
        metadata=dict(config.metadata),
        version=__version__,
        peer_port=config.peer_port,
    )
    tls = TLSFiles(config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async with open_registry(
        config.etcd_servers,
        config.etcd_key_prefix,
        config.etcd_request_timeout,
        tls,
        config.etcd_username,
        config.etcd_password,
    ) as registry:
        units_dir = Path(config.units_directory)
        systemd = SystemdManager(units_dir=units_dir)
        await systemd.connect()
        presence = MachinePresence(
            registry, machine, config.agent_ttl, lease_file=units_dir.parent / "lease"
        )
        mirror = RegistryMirror(registry)
        # The API returns 503 until the machine is registered and mirrored.
        api = api_server_from_config(config, registry, mirror, presence)
        await api.start()
        agent = Agent(registry, mirror, presence, systemd)
        secret = await _cluster_secret(registry)
        peer = PeerServer(secret, machine.public_ip or "127.0.0.1", config.peer_port)
        await peer.start()

        roles = [presence.run(), mirror.run(), agent.run()]
        if not config.disable_engine:
            engine = Engine(
                registry, mirror, presence, config.engine_reconcile_interval
            )
            roles.append(engine.run())
        tasks = [asyncio.create_task(role) for role in roles]
        stopped = asyncio.create_task(stop.wait())
        log.info("fleetd %s running as machine %s", __version__, machine.id)
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopped.cancel()
        failures = [
            result
            for result in results
            if isinstance(result, BaseException)
            and not isinstance(result, asyncio.CancelledError)
        ]

        await peer.close()
        await api.close()
        if failures:
            # A crashed role leaves the units running: the restarted fleetd
            # adopts them instead of moving them around the cluster.
            await systemd.close()
            raise failures[0]
        if await _restarting(systemd):
            # The next fleetd adopts this one's lease and units, so a restart
            # of fleet.service moves nothing around the cluster.
            log.info("fleetd restarting: leaving local units and the lease in place")
            await systemd.close()
            return
        log.info("fleetd stopping: unloading local units and leaving the cluster")
        try:
            await agent.purge()
            await presence.withdraw()
        except FleetError as err:
            log.error("orderly shutdown incomplete: %s", err)
        await systemd.close()


async def _restarting(systemd: SystemdManager) -> bool:
    """Tell whether systemd is restarting fleetd's own unit right now."""
    try:
        return await systemd.restart_pending(os.getpid())
    except FleetError as err:
        log.warning("cannot tell a restart from a stop, stopping: %s", err)
        return False
