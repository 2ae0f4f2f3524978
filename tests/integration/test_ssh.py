"""fleetctl ssh, --tunnel and fd-forward against a real sshd inside test hosts.

Each host runs its own sshd as a transient systemd unit, listening only on
the host's public IP and a random high port. Host keys, the user key,
authorized_keys and known_hosts live in the test's state directory, and the
key reaches ssh through an ssh-agent the test starts. fleetctl runs on the
machine outside the hosts, so every machine it connects to is remote.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetd.cluster.host import Host
from tests.integration.conftest import FLEETCTL, LocalCluster

pytestmark = pytest.mark.integration

SSHD = "/usr/sbin/sshd"
SERVICE = "[Unit]\nDescription=Sleeps\n\n[Service]\nExecStart=/bin/sleep 1000\n"
VENV_BIN = str(Path(sys.executable).parent)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)


def accepts(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class SSHSetup:
    """The test's keys, agent and sshd port, and how to run fleetctl with them."""

    directory: Path
    port: int
    agent_socket: Path
    known_hosts: Path

    def environment(self) -> dict[str, str]:
        return {**os.environ, "SSH_AUTH_SOCK": str(self.agent_socket)}

    def fleetctl(
        self, fleet: LocalCluster, *args: str, driver: str = "etcd"
    ) -> subprocess.CompletedProcess[str]:
        """Run fleetctl on the machine with the test's SSH options."""
        ssh_options = [
            "--ssh-username=root",
            f"--known-hosts-file={self.known_hosts}",
            "--ssh-timeout=10",
        ]
        cluster_options = [
            f"--driver={driver}",
            f"--etcd-key-prefix={fleet.key_prefix}",
        ]
        if driver == "etcd":
            cluster_options.append(f"--endpoint={fleet.etcd_url}")
        return subprocess.run(
            [FLEETCTL, *cluster_options, *ssh_options, *args],
            capture_output=True,
            text=True,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            timeout=90,
        )


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True
    )


@pytest.fixture
def ssh_keys(state_root: Path) -> Iterator[SSHSetup]:
    """Throwaway host and user keys plus an ssh-agent holding the user key."""
    directory = state_root / "ssh"
    directory.mkdir(mode=0o700)
    keygen(directory / "host_key")
    keygen(directory / "user_key")
    (directory / "authorized_keys").write_text((directory / "user_key.pub").read_text())
    agent_socket = directory / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(agent_socket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(agent_socket.exists, 10, "ssh-agent's socket")
        subprocess.run(
            ["ssh-add", "-q", str(directory / "user_key")],
            check=True,
            env={**os.environ, "SSH_AUTH_SOCK": str(agent_socket)},
        )
        yield SSHSetup(
            directory=directory,
            port=random.randint(20000, 60000),
            agent_socket=agent_socket,
            known_hosts=directory / "known_hosts",
        )
    finally:
        agent.terminate()
        agent.wait(10)


def start_sshd(host: Host, setup: SSHSetup) -> None:
    """Start sshd in ``host`` on its public IP only, as the unit test-sshd."""
    config = setup.directory / f"sshd_config.{host.name}"
    config.write_text(
        f"ListenAddress {host.public_ip}:{setup.port}\n"
        f"HostKey {setup.directory / 'host_key'}\n"
        f"AuthorizedKeysFile {setup.directory / 'authorized_keys'}\n"
        "PidFile none\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        # fd-forward runs as `fleetctl` from the session's PATH.
        f"SetEnv PATH={VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin\n"
    )
    # The host's IP is random and its own, so this port is free on it unless
    # something already listens there: check, rather than talk to that.
    assert not accepts(host.public_ip, setup.port), f"port {setup.port} is taken"
    host.run(["mkdir", "-p", "-m", "0755", "/run/sshd"])
    host.run(["systemd-run", "--unit=test-sshd", SSHD, "-D", "-e", "-f", str(config)])
    wait_until(lambda: accepts(host.public_ip, setup.port), 15, f"sshd on {host.name}")
    host_key = (setup.directory / "host_key.pub").read_text().split()
    with setup.known_hosts.open("a") as known_hosts:
        known_hosts.write(f"[{host.public_ip}]:{setup.port} {' '.join(host_key[:2])}\n")


def test_ssh_and_tunnel(
    cluster: Callable[..., LocalCluster], ssh_keys: SSHSetup, tmp_path: Path
) -> None:
    fleet = cluster(3)
    first, second, third = fleet.hosts
    for host in fleet.hosts:
        start_sshd(host, ssh_keys)
    port = f"--ssh-port={ssh_keys.port}"

    # A unit on the third machine, and one named like the first machine's ID.
    prefix = first.machine_id[:8]
    (tmp_path / "web.service").write_text(
        SERVICE + f"\n[X-Fleet]\nMachineID={third.machine_id}\n"
    )
    (tmp_path / f"{prefix}.service").write_text(
        SERVICE + f"\n[X-Fleet]\nMachineID={second.machine_id}\n"
    )

    def three_machines() -> bool:
        listed = fleet.fleetctl(["list-machines", "--no-legend"], check=False)
        return listed.returncode == 0 and len(listed.stdout.splitlines()) == 3

    wait_until(three_machines, 30, "three machines listed")
    units = [str(tmp_path / "web.service"), str(tmp_path / f"{prefix}.service")]
    fleet.fleetctl(["start", "--block-attempts=30", *units])

    # A machine by ID prefix.
    by_prefix = ssh_keys.fleetctl(
        fleet, "ssh", port, second.machine_id[:6], "cat", "/etc/machine-id"
    )
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert by_prefix.stdout.strip() == second.machine_id

    # A unit's machine, with the command after "--".
    by_unit = ssh_keys.fleetctl(
        fleet, "ssh", port, "web.service", "--", "cat", "/etc/machine-id"
    )
    assert by_unit.returncode == 0, by_unit.stderr
    assert by_unit.stdout.strip() == third.machine_id

    # The remote command's exit status passes through.
    failing = ssh_keys.fleetctl(fleet, "ssh", port, "web", "--", "exit", "7")
    assert failing.returncode == 7, failing.stderr

    # An argument that is both a machine ID prefix and a running unit.
    ambiguous = ssh_keys.fleetctl(fleet, "ssh", port, prefix, "true")
    assert ambiguous.returncode == 1
    assert "ambiguous argument" in ambiguous.stderr
    as_machine = ssh_keys.fleetctl(
        fleet, "ssh", port, "--machine", prefix, "cat", "/etc/machine-id"
    )
    assert as_machine.returncode == 0, as_machine.stderr
    assert as_machine.stdout.strip() == first.machine_id
    as_unit = ssh_keys.fleetctl(
        fleet, "ssh", port, "--unit", prefix, "cat", "/etc/machine-id"
    )
    assert as_unit.returncode == 0, as_unit.stderr
    assert as_unit.stdout.strip() == second.machine_id

    # The API driver through --tunnel: fd-forward to the first host's socket.
    tunnel = f"--tunnel={first.public_ip}:{ssh_keys.port}"
    listed = ssh_keys.fleetctl(
        fleet,
        tunnel,
        "list-units",
        "--no-legend",
        "--fields=unit,machine",
        driver="API",
    )
    assert listed.returncode == 0, listed.stderr
    rows = sorted(listed.stdout.splitlines())
    assert len(rows) == 2, listed.stdout
    assert rows[0].startswith(f"{prefix}.service")
    assert second.machine_id[:8] in rows[0]
    assert rows[1].startswith("web.service")
    assert third.machine_id[:8] in rows[1]

    # The etcd driver through --tunnel: ssh -L to the etcd the hosts use.
    machines = ssh_keys.fleetctl(
        fleet, tunnel, "list-machines", "--no-legend", "--full"
    )
    assert machines.returncode == 0, machines.stderr
    listed_ids = sorted(line.split()[0] for line in machines.stdout.splitlines())
    assert listed_ids == sorted(host.machine_id for host in fleet.hosts)

    # A wrong user name makes the tunnel fail with an error, not a hang.
    refused = ssh_keys.fleetctl(
        fleet, tunnel, "--ssh-username=nobody", "list-machines", driver="API"
    )
    assert refused.returncode == 1
    assert "cannot reach the fleet API" in refused.stderr


def test_fd_forward_alone(cluster: Callable[..., LocalCluster]) -> None:
    fleet = cluster(1)
    (host,) = fleet.hosts
    request = "GET /fleet/v1/machines HTTP/1.0\r\nHost: localhost\r\n\r\n"

    def answered() -> bool:
        result = host.run(
            [FLEETCTL, "fd-forward", "/var/run/fleet.sock"],
            input=request,
            check=False,
            timeout=30,
        )
        return result.returncode == 0 and " 200 " in result.stdout.splitlines()[0]

    wait_until(answered, 30, "a 200 reply through fd-forward")
    result = host.run(
        [FLEETCTL, "fd-forward", "/var/run/fleet.sock"], input=request, timeout=30
    )
    # Text mode turns the reply's CRLF line ends into newlines.
    status_line = result.stdout.splitlines()[0]
    assert status_line == "HTTP/1.0 200 OK"
    body = result.stdout.splitlines()[-1]
    assert host.machine_id in body

    missing = host.run(
        [FLEETCTL, "fd-forward", "/run/no-such.sock"], input="", check=False
    )
    assert missing.returncode == 1
    assert "cannot connect to the unix socket /run/no-such.sock" in missing.stderr
