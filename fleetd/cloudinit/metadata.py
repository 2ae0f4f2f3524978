"""``$private_ipv4`` and ``$public_ipv4``: where their values come from.

Each value is taken from the first source that has it: a metadata file of
``COREOS_PRIVATE_IPV4=...`` lines (the format CoreOS wrote to
/etc/environment), then the process environment under the same names, then the
host's own interface addresses. No metadata service is ever contacted, so on
a cloud the file or the environment must carry the values.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetd.cloudinit.report import Report

log = logging.getLogger(__name__)

# Variable as written in a cloud-config -> its name in a metadata file.
VARIABLES = {
    "$private_ipv4": "COREOS_PRIVATE_IPV4",
    "$public_ipv4": "COREOS_PUBLIC_IPV4",
}

# Used by --validate for a variable with no known value: TEST-NET-1
# (RFC 5737), an address that never belongs to a real host.
STAND_IN_ADDRESS = "192.0.2.1"

Detector = Callable[[], dict[str, str]]


@dataclass(frozen=True)
class Metadata:
    """The known values by variable name, and where each came from."""

    values: Mapping[str, str]
    sources: Mapping[str, str]


def read_metadata_file(path: Path) -> dict[str, str]:
    """Read ``NAME=value`` lines; blank lines and ``#`` comments are skipped."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip().strip("\"'")
    return values


def detect_addresses() -> dict[str, str]:
    """Return the first private and public global IPv4 addresses of this host.

    Reads ``ip -json -4 addr show scope global`` (iproute2), so only local
    interfaces are looked at. A host with only private addresses gets its
    private address as ``$public_ipv4`` as well, as a host behind NAT would
    be reached from the cluster.
    """
    ip = shutil.which("ip")
    if ip is None:
        return {}
    try:
        result = subprocess.run(
            [ip, "-json", "-4", "addr", "show", "scope", "global"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        interfaces = json.loads(result.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        log.warning("reading interface addresses failed: %s", err)
        return {}

    private: str | None = None
    public: str | None = None
    for interface in interfaces:
        for info in interface.get("addr_info", []):
            address = ipaddress.ip_address(info.get("local", "0.0.0.0"))
            if address.is_loopback or address.is_link_local:
                continue
            if address.is_private and private is None:
                private = str(address)
            elif not address.is_private and public is None:
                public = str(address)

    found: dict[str, str] = {}
    if private is not None:
        found["$private_ipv4"] = private
    if public is not None or private is not None:
        found["$public_ipv4"] = public or str(private)
    return found


def resolve(
    metadata_file: Path | None,
    environ: Mapping[str, str],
    detect: Detector = detect_addresses,
) -> Metadata:
    """Collect the values from the file, the environment, then detection."""
    from_file = read_metadata_file(metadata_file) if metadata_file else {}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for variable, name in VARIABLES.items():
        if from_file.get(name):
            values[variable] = from_file[name]
            sources[variable] = str(metadata_file)
        elif environ.get(name):
            values[variable] = environ[name]
            sources[variable] = f"environment variable {name}"

    if len(values) < len(VARIABLES):
        for variable, value in detect().items():
            if variable not in values:
                values[variable] = value
                sources[variable] = "interface addresses"
    return Metadata(values, sources)


def check_values(metadata: Metadata, report: Report) -> None:
    """Report a value that is not an IPv4 address, naming its source."""
    for variable, value in metadata.values.items():
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            report.error(
                0,
                f"invalid {variable} {value!r} from {metadata.sources[variable]}: "
                "give an IPv4 address",
            )


def substitute(text: str, metadata: Metadata, report: Report, *, stand_in: bool) -> str:
    """Replace every variable in ``text``, line by line so lines keep numbers.

    A variable with no known value is an error, unless ``stand_in`` is set
    (for --validate). Either way it becomes STAND_IN_ADDRESS, so the rest of
    the file can still be checked.
    """
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        for variable, name in VARIABLES.items():
            if variable not in line:
                continue
            value = metadata.values.get(variable)
            if value is None:
                if not stand_in:
                    report.error(
                        number,
                        f"no value for {variable}: pass --metadata-file with "
                        f"{name}=<address> or set {name} in the environment",
                    )
                value = STAND_IN_ADDRESS
            line = line.replace(variable, value)
        lines[number - 1] = line
    return "\n".join(lines)
