"""fleetd configuration: fleet.conf plus FLEET_* environment variables.

The option names, types and defaults are the original fleet's, so existing
fleet.conf files and cloud-configs keep working. The environment overrides the
file. Two defaults differ on purpose: ``agent_ttl`` is 10s (30s in the
original), so a dead machine's units move within seconds, and ``peer_port`` is
new (the port fleetd serves journals to other fleetd instances on).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetd.errors import FleetError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/fleet/fleet.conf")
DEFAULT_ETCD_SERVERS = ("http://127.0.0.1:2379", "http://127.0.0.1:4001")
DEFAULT_KEY_PREFIX = "/_coreos.com/fleet/"

# Options that fleet once had and that are still accepted, but ignored.
_DEPRECATED = {"verify_units", "authorized_keys_file", "enable_grpc"}


class ConfigError(FleetError):
    """An option in fleet.conf or the environment has an invalid value."""


@dataclass(frozen=True)
class Config:
    """Every fleetd option after parsing, with the original's names."""

    verbosity: int = 0
    etcd_servers: tuple[str, ...] = DEFAULT_ETCD_SERVERS
    etcd_username: str = ""
    etcd_password: str = ""
    etcd_keyfile: str = ""
    etcd_certfile: str = ""
    etcd_cafile: str = ""
    etcd_key_prefix: str = DEFAULT_KEY_PREFIX
    etcd_request_timeout: float = 1.0
    engine_reconcile_interval: float = 2.0
    public_ip: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    agent_ttl: float = 10.0
    units_directory: str = "/run/fleet/units/"
    systemd_user: bool = False
    token_limit: int = 100
    disable_engine: bool = False
    disable_watches: bool = False
    peer_port: int = 54729
    # The HTTP API: a unix socket ("" for none) and an optional TCP address
    # that is served only with TLS and client certificates.
    api_socket: str = "/var/run/fleet.sock"
    api_tls_address: str = ""
    api_tls_certfile: str = ""
    api_tls_keyfile: str = ""
    api_tls_cafile: str = ""
    # Data directory of the etcd a lone fleetd starts when none is configured.
    local_etcd_dir: str = "/var/lib/fleet/etcd"
    # True when etcd_servers came from the file or the environment, so a lone
    # fleetd can decide whether to start an etcd of its own.
    etcd_servers_set: bool = False


def parse_duration(value: str) -> float:
    """Parse a Go-style duration ("30s", "1m30s", "500ms") or bare seconds."""
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}: use a form like 10s or 1m30s")
    return sum(float(number) * units[unit] for number, unit in parts)


def parse_metadata(value: str) -> dict[str, str]:
    """Parse ``k=v[,k=v...]``; later keys win, and a pair without "=" is invalid."""
    metadata: dict[str, str] = {}
    for pair in _unquote(value.strip()).split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, sep, val = pair.partition("=")
        key, val = key.strip(), val.strip().strip("\"'")
        if not sep or not key:
            raise ValueError(
                f"invalid metadata pair {pair!r}: write key=value, separated by commas"
            )
        metadata[key] = val
    return metadata


def parse_list(value: str) -> tuple[str, ...]:
    """Parse a comma-separated list; brackets, quotes and spaces are trimmed."""
    items = (item.strip(" []\"'") for item in value.split(","))
    return tuple(item for item in items if item)


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "t", "true", "yes", "on"}:
        return True
    if lowered in {"0", "f", "false", "no", "off", ""}:
        return False
    raise ValueError(f"invalid boolean {value!r}: use true or false")


def _convert(name: str, raw: str) -> object:
    kind = Config.__dataclass_fields__[name].type
    if name == "metadata":
        return parse_metadata(raw)
    if name == "etcd_servers":
        servers = parse_list(raw)
        if not servers:
            raise ValueError("no etcd server given: list at least one URL")
        return servers
    if name in {"agent_ttl"}:
        return parse_duration(raw)
    if kind == "int":
        return int(raw.strip())
    if kind == "float":
        return float(raw.strip())
    if kind == "bool":
        return _parse_bool(raw)
    return raw.strip().strip("\"'")


def read_config_file(path: Path) -> dict[str, str]:
    """Read ``name = value`` lines; ``#`` and ``;`` start comments."""
    options: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            # Sections are not used by fleet.conf; their options still count.
            continue
        name, sep, value = stripped.partition("=")
        if not sep:
            raise ConfigError(
                f"{path} line {number}: expected name = value, got {stripped!r}"
            )
        options[name.strip()] = _unquote(value.strip())
    return options


def _unquote(value: str) -> str:
    """Remove one pair of quotes around a whole value, as fleet's docs write
    ``metadata="region=us-west,az=us-west-1"``."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def load_config(
    path: Path | None, environ: Mapping[str, str], *, path_given: bool = False
) -> Config:
    """Build the configuration from the file at ``path`` and ``environ``.

    A missing file is fine at the default path and an error when the user
    named it (``path_given``), as with the original fleetd.
    """
    raw: dict[str, str] = {}
    from_file: set[str] = set()
    if path is not None:
        if path.is_dir():
            raise ConfigError(f"config file {path} is a directory: name a file")
        if path.exists():
            raw.update(read_config_file(path))
            from_file.update(raw)
        elif path_given:
            raise ConfigError(f"config file {path} does not exist: check --config")

    for key, value in environ.items():
        if key.startswith("FLEET_"):
            raw[key[len("FLEET_") :].lower()] = value

    fields = {f.name for f in dataclasses.fields(Config)} - {"etcd_servers_set"}
    values: dict[str, object] = {}
    for name, value in raw.items():
        if name in _DEPRECATED:
            log.error("option %s is deprecated and ignored", name)
            continue
        if name not in fields:
            if name in from_file:
                log.warning("unknown option %s in %s ignored", name, path)
            continue
        try:
            values[name] = _convert(name, value)
        except ValueError as err:
            raise ConfigError(f"invalid value for {name}: {err}") from err

    values["etcd_servers_set"] = "etcd_servers" in values
    config = Config(**values)  # type: ignore[arg-type]
    _check(config)
    return config


def _check(config: Config) -> None:
    if config.agent_ttl < 1:
        raise ConfigError(
            f"invalid value for agent_ttl: {config.agent_ttl}s is below 1s; use 3s "
            "or more"
        )
    if config.engine_reconcile_interval <= 0:
        raise ConfigError("invalid value for engine_reconcile_interval: must be > 0")
    if not 0 <= config.peer_port <= 65535:
        raise ConfigError(f"invalid value for peer_port: {config.peer_port}")
    if not 1 <= config.token_limit <= 65535:
        raise ConfigError(
            f"invalid value for token_limit: {config.token_limit}; use 1 to 65535"
        )
    tls_files = (config.api_tls_certfile, config.api_tls_keyfile, config.api_tls_cafile)
    if config.api_tls_address and not all(tls_files):
        raise ConfigError(
            f"api_tls_address {config.api_tls_address} needs api_tls_certfile, "
            "api_tls_keyfile and api_tls_cafile: the TCP API serves only TLS "
            "clients with a certificate signed by that CA"
        )
    if not config.etcd_key_prefix.startswith("/"):
        raise ConfigError(
            f"invalid value for etcd_key_prefix: {config.etcd_key_prefix!r} must "
            "start with /"
        )
