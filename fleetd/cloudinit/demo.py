"""Demo: three bare test hosts become a fleet cluster through cloud-config.

Run as root with ``python -m fleetd.cloudinit.demo``. It starts a discovery
etcd on 127.0.0.1, boots three test hosts that run nothing of fleet, applies
one cloud-config on each, shows ``fleetctl list-machines``, starts a unit,
and removes everything it started at the end.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import click

from fleetd.cloudinit.discovery import DiscoveryServer, new_discovery_url
from fleetd.cluster.host import Host, HostSpec, boot_hosts
from fleetd.errors import FleetError

BIN = Path(sys.executable).parent
STATE_ROOT = Path("/var/lib/fleet-cloudinit-demo")
# The shipped etcd.service keeps each member's data under its machine ID.
ETCD_DATA_ROOT = Path("/var/lib/etcd")

CLOUD_CONFIG = """\
#cloud-config
coreos:
  etcd:
    discovery: {discovery}
    addr: $private_ipv4:4001
    peer-addr: $private_ipv4:7001
  fleet:
    public-ip: $public_ipv4
    metadata: role=web,region=test
  units:
    - name: etcd.service
      command: start
    - name: fleet.service
      command: start
"""

HELLO_UNIT = """\
[Unit]
Description=Hello from a cluster made by cloud-config

[Service]
ExecStart=/bin/sh -c 'while true; do echo hello; sleep 1; done'
"""


def provision(host: Host, config: Path) -> subprocess.CompletedProcess[str]:
    """Run fleet-cloudinit inside ``host``, its address as the metadata."""
    return host.run(
        [str(BIN / "fleet-cloudinit"), "--from-file", str(config), "--verbose"],
        check=False,
        timeout=120,
        env={
            "COREOS_PRIVATE_IPV4": host.public_ip,
            "COREOS_PUBLIC_IPV4": host.public_ip,
        },
    )


def fleetctl(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run fleetctl against the cluster's etcd."""
    return subprocess.run(
        [str(BIN / "fleetctl"), "--driver=etcd", f"--endpoint={endpoint}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``condition`` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise click.ClickException(
                f"timed out after {timeout:g} s waiting for {what}"
            )
        time.sleep(0.2)
    return time.monotonic() - started


@click.command()
def main() -> None:
    """Form a three-host cluster from bare hosts with fleet-cloudinit."""
    state = STATE_ROOT / uuid.uuid4().hex[:8]
    state.mkdir(parents=True)
    discovery = DiscoveryServer(state / "discovery")
    hosts: list[Host] = []
    try:
        discovery.start()
        url = new_discovery_url(discovery.url, size=3)
        click.echo(f"discovery URL: {url}")

        base = f"127.{random.randint(200, 249)}.{random.randint(0, 255)}"
        specs = [
            HostSpec(f"cc{n}", state / f"host{n}", f"{base}.{10 + n}")
            for n in (1, 2, 3)
        ]
        hosts = boot_hosts(specs)
        click.echo("booted bare hosts: " + ", ".join(h.public_ip for h in hosts))

        config = state / "cloud-config.yaml"
        config.write_text(CLOUD_CONFIG.format(discovery=url), encoding="utf-8")
        click.echo(f"cloud-config:\n{config.read_text()}")
        for host in hosts:
            result = provision(host, config)
            click.echo(f"--- fleet-cloudinit on {host.name} ({host.public_ip})")
            click.echo(result.stderr.rstrip())
            click.echo(result.stdout.rstrip())
            if result.returncode != 0:
                raise click.ClickException(f"fleet-cloudinit failed on {host.name}")

        endpoint = f"http://{hosts[0].public_ip}:4001"

        def three_machines() -> bool:
            listing = fleetctl(endpoint, "list-machines", "--no-legend")
            return listing.returncode == 0 and len(listing.stdout.splitlines()) == 3

        took = wait_for(three_machines, 120, "three machines")
        click.echo(f"\nthree machines registered {took:.1f} s after provisioning:")
        click.echo(fleetctl(endpoint, "list-machines", "--full").stdout)

        unit = state / "hello-cloudinit.service"
        unit.write_text(HELLO_UNIT, encoding="utf-8")
        started = fleetctl(endpoint, "start", str(unit))
        click.echo(started.stdout + started.stderr)
        click.echo(fleetctl(endpoint, "list-units").stdout)
    except FleetError as err:
        raise click.ClickException(str(err)) from err
    finally:
        for host in hosts:
            host.kill()
            shutil.rmtree(ETCD_DATA_ROOT / host.machine_id, ignore_errors=True)
        discovery.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
