"""fleetd on a test host: its unit file, installation and start-up check."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetd.cluster.host import Host
from fleetd.errors import ClusterError

FLEET_UNIT = "fleet.service"
UNIT_PATH = f"/run/systemd/system/{FLEET_UNIT}"
DEFAULT_KEY_PREFIX = "/_coreos.com/fleet/"
DEFAULT_AGENT_TTL = "10s"
DEFAULT_METADATA = "host={name}"

# The durations fleet.conf accepts for agent_ttl, such as "10s" or "1.5m".
_DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)?$")


def default_fleetd() -> Path:
    """Return the fleetd executable of the virtualenv running this code."""
    return Path(sys.executable).parent / "fleetd"


@dataclass(frozen=True)
class FleetOptions:
    """The configuration shared by every fleetd of a cluster.

    `metadata` is a template: "{n}" becomes the host's number and "{name}" its
    name, so "region=r{n}" gives each host a different region.
    """

    etcd_url: str
    key_prefix: str = DEFAULT_KEY_PREFIX
    agent_ttl: str = DEFAULT_AGENT_TTL
    metadata: str = DEFAULT_METADATA
    fleetd: Path | None = None

    def __post_init__(self) -> None:
        check_agent_ttl(self.agent_ttl)
        if not self.key_prefix.startswith("/"):
            raise ClusterError(
                f"invalid etcd key prefix {self.key_prefix!r}: it must start with /"
            )
        render_metadata(self.metadata, 1, "check")

    def environment(self, host: Host, number: int) -> dict[str, str]:
        """Return the FLEET_* settings of fleetd on `host`, the `number`-th."""
        return {
            "FLEET_ETCD_SERVERS": self.etcd_url,
            "FLEET_ETCD_KEY_PREFIX": self.key_prefix,
            "FLEET_PUBLIC_IP": host.public_ip,
            "FLEET_AGENT_TTL": self.agent_ttl,
            "FLEET_METADATA": render_metadata(self.metadata, number, host.name),
        }


def check_agent_ttl(value: str) -> None:
    if not _DURATION.match(value):
        raise ClusterError(
            f"invalid agent TTL {value!r}: use a duration such as 10s, 500ms or 1m"
        )


def render_metadata(template: str, number: int, name: str) -> str:
    """Fill in "{n}" and "{name}" in a metadata template."""
    try:
        return template.format(n=number, name=name)
    except (KeyError, IndexError, ValueError) as err:
        raise ClusterError(
            f"invalid metadata template {template!r}: only {{n}} and {{name}} "
            "may appear in braces"
        ) from err


def unit_text(fleetd: Path, environment: dict[str, str]) -> str:
    """Return the fleet.service unit file that runs `fleetd` with `environment`."""
    lines = [
        "[Unit]",
        "Description=fleet daemon (local cluster host)",
        "After=dbus.socket",
        "Wants=dbus.socket",
        "",
        "[Service]",
        f"ExecStart={_escape(str(fleetd))}",
    ]
    for key, value in sorted(environment.items()):
        lines.append(f"Environment={_quote(f'{key}={value}')}")
    lines += [
        "Restart=on-failure",
        "RestartSec=1s",
        "",
    ]
    return "\n".join(lines)


def _escape(text: str) -> str:
    """Escape "%" specifiers and backslashes for a unit file value."""
    return text.replace("\\", "\\\\").replace("%", "%%")


def _quote(text: str) -> str:
    return '"' + _escape(text).replace('"', '\\"') + '"'


def install(host: Host, options: FleetOptions, number: int) -> None:
    """Write fleet.service into the host's private /run and start it."""
    fleetd = options.fleetd or default_fleetd()
    text = unit_text(fleetd, options.environment(host, number))
    _run(host, ["sh", "-c", 'cat > "$1"', "sh", UNIT_PATH], input=text)
    _run(host, ["systemctl", "daemon-reload"])
    _run(host, ["systemctl", "start", FLEET_UNIT])


def _run(host: Host, argv: Sequence[str], input: str | None = None) -> None:
    result = host.run(argv, check=False, input=input, timeout=30)
    if result.returncode != 0:
        raise ClusterError(
            f"{' '.join(argv)} failed on host {host.name} with status "
            f"{result.returncode}: {result.stderr.strip()}\n{journal_tail(host)}"
        )


def service_state(host: Host) -> dict[str, str]:
    """Return ActiveState, SubState, Result and NRestarts of fleet.service."""
    result = host.run(
        [
            "systemctl",
            "show",
            FLEET_UNIT,
            "--property=ActiveState,SubState,Result,NRestarts",
        ],
        check=False,
        timeout=30,
    )
    state: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        state[key] = value
    return state


def wait_active(hosts: Sequence[Host], timeout: float) -> None:
    """Wait until fleet.service is active on every host.

    A service that failed or restarted (fleetd exited) raises ClusterError at
    once, with the last journal lines of that host, and so does a timeout.
    """
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    while pending:
        for host in list(pending):
            state = service_state(host)
            if state.get("NRestarts", "0") != "0" or state.get("ActiveState") in {
                "failed",
                "inactive",
            }:
                raise ClusterError(
                    f"fleet.service failed on host {host.name} "
                    f"({_describe(state)}); its journal ends with:\n"
                    f"{journal_tail(host)}"
                )
            if state.get("ActiveState") == "active":
                pending.remove(host)
        if not pending:
            return
        if time.monotonic() > deadline:
            host = pending[0]
            raise ClusterError(
                f"fleet.service on host {host.name} not active after {timeout} s "
                f"({_describe(service_state(host))}); its journal ends with:\n"
                f"{journal_tail(host)}"
            )
        time.sleep(0.1)


def _describe(state: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(state.items()))


def journal_tail(host: Host, lines: int = 30) -> str:
    """Return the last `lines` journal lines of fleet.service on `host`."""
    if not host.alive():
        return f"(host {host.name} is not running; no journal)"
    try:
        result = host.run(
            ["journalctl", "--unit", FLEET_UNIT, "--no-pager", "--lines", str(lines)],
            check=False,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "(journalctl timed out)"
    return result.stdout.rstrip() or result.stderr.rstrip()
