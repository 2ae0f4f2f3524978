"""fleetctl's command line without a registry: options, env, prefixes, exit codes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import fleetctl.client
from fleetctl.cli import cli
from fleetctl.client import ClientRegistry, Settings
from fleetctl.options import rewrite_bool_values
from fleetd import __version__


class SettingsSeen(Exception):
    """Raised by the recording opener to stop a command once it has its settings."""


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Record the settings a command opens the registry with, then stop it."""
    recorded: list[Settings] = []

    @contextlib.asynccontextmanager
    async def record(settings: Settings) -> AsyncIterator[ClientRegistry]:
        recorded.append(settings)
        raise SettingsSeen
        yield  # pragma: no cover

    monkeypatch.setattr(fleetctl.client, "opener", record)
    for name in ("ENDPOINT", "DRIVER", "ETCD_KEY_PREFIX", "REQUEST_TIMEOUT", "DEBUG"):
        monkeypatch.delenv(f"FLEETCTL_{name}", raising=False)
    return recorded


def invoke(args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, args, env=env, prog_name="fleetctl")


def test_no_arguments_prints_help() -> None:
    result = invoke([])
    assert result.exit_code == 0
    assert "Usage: fleetctl" in result.output
    assert "list-unit-files" in result.output


@pytest.mark.parametrize("args", [["--version"], ["-v"], ["version"]])
def test_version(args: list[str]) -> None:
    result = invoke(args)
    assert result.exit_code == 0
    assert result.output == f"fleetctl version {__version__}\n"


def test_help_command_shows_command_help() -> None:
    result = invoke(["help", "destroy"])
    assert result.exit_code == 0
    assert "Usage: fleetctl destroy" in result.output


def test_help_lists_global_options_of_command() -> None:
    result = invoke(["list-units", "--help"])
    assert result.exit_code == 0
    assert "Global options" in result.output
    assert "--endpoint" in result.output


def test_settings_defaults(seen: list[Settings]) -> None:
    result = invoke(["list-machines"])
    assert isinstance(result.exception, SettingsSeen)
    settings = seen[0]
    assert settings.resolved_driver() == "API"
    assert settings.endpoints() == ["unix:///var/run/fleet.sock"]
    assert settings.etcd_key_prefix == "/_coreos.com/fleet/"
    assert settings.request_timeout == 3.0


def test_etcd_driver_default_endpoints(seen: list[Settings]) -> None:
    invoke(["--driver=etcd", "list-machines"])
    settings = seen[0]
    assert settings.resolved_driver() == "etcd"
    assert settings.endpoints() == ["http://127.0.0.1:2379", "http://127.0.0.1:4001"]


@pytest.mark.parametrize(
    ("endpoint", "driver"),
    [
        ("http://127.0.0.1:2379", "etcd"),
        ("http://10.0.0.1:2379,https://10.0.0.2:4001", "etcd"),
        ("http://127.0.0.1:2379,http://127.0.0.1:8080", "API"),
        ("unix:///run/fleet.sock", "API"),
        ("https://127.0.0.1:54728", "API"),
    ],
)
def test_driver_guessed_from_endpoint(
    seen: list[Settings], endpoint: str, driver: str
) -> None:
    invoke(["--endpoint", endpoint, "list-machines"])
    assert seen[0].resolved_driver() == driver


def test_explicit_driver_wins_over_port(seen: list[Settings]) -> None:
    invoke(["--driver=API", "--endpoint", "http://127.0.0.1:2379", "list-machines"])
    assert seen[0].resolved_driver() == "API"


def test_env_sets_global_options(seen: list[Settings]) -> None:
    env = {
        "FLEETCTL_ENDPOINT": "http://127.0.0.1:1",
        "FLEETCTL_ETCD_KEY_PREFIX": "/env/",
        "FLEETCTL_REQUEST_TIMEOUT": "7.5",
        "FLEETCTL_CA_FILE": "/ca.pem",
    }
    invoke(["list-machines"], env=env)
    assert seen[0].endpoint == "http://127.0.0.1:1"
    assert seen[0].etcd_key_prefix == "/env/"
    assert seen[0].request_timeout == 7.5
    assert seen[0].ca_file == "/ca.pem"


def test_command_line_wins_over_env(seen: list[Settings]) -> None:
    env = {"FLEETCTL_ENDPOINT": "http://127.0.0.1:1"}
    invoke(["--endpoint", "http://127.0.0.1:2", "list-machines"], env=env)
    assert seen[0].endpoint == "http://127.0.0.1:2"


def test_global_option_after_command(seen: list[Settings]) -> None:
    env = {"FLEETCTL_ENDPOINT": "http://127.0.0.1:1"}
    args = ["--endpoint=http://127.0.0.1:2", "list-machines"]
    invoke([*args, "--endpoint", "http://127.0.0.1:3"], env=env)
    assert seen[0].endpoint == "http://127.0.0.1:3"


def test_global_option_not_given_after_command_keeps_env(seen: list[Settings]) -> None:
    invoke(["list-machines", "--full"], env={"FLEETCTL_ETCD_KEY_PREFIX": "/env/"})
    assert seen[0].etcd_key_prefix == "/env/"


def test_deprecated_tls_aliases(seen: list[Settings]) -> None:
    invoke(["--etcd-cafile", "/ca.pem", "list-machines", "--etcd-keyfile", "/k.pem"])
    assert seen[0].ca_file == "/ca.pem"
    assert seen[0].key_file == "/k.pem"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--debug", "list-machines"], {}, True),
        (["--debug=true", "list-machines"], {}, True),
        (["list-machines", "--debug=1"], {}, True),
        (["--debug=false", "list-machines"], {"FLEETCTL_DEBUG": "true"}, False),
        (["list-machines"], {"FLEETCTL_DEBUG": "1"}, True),
        (["list-machines"], {}, False),
    ],
)
def test_debug_flag_forms(
    seen: list[Settings], args: list[str], env: dict[str, str], expected: bool
) -> None:
    invoke(args, env=env)
    assert seen[0].debug is expected


def test_ssh_options_accepted(seen: list[Settings]) -> None:
    args = [
        "--strict-host-key-checking=false",
        "--ssh-username=admin",
        "--known-hosts-file=/dev/null",
        "--ssh-timeout=3",
        "list-machines",
    ]
    result = invoke(args)
    assert isinstance(result.exception, SettingsSeen), result.output
    assert len(seen) == 1


def test_bool_flag_with_bad_value() -> None:
    result = invoke(["--debug=maybe", "list-machines"])
    assert result.exit_code == 2
    assert "invalid value 'maybe' for --debug" in result.output


def test_unambiguous_prefix_runs_command() -> None:
    result = invoke(["vers"])
    assert result.exit_code == 0
    assert result.output == f"fleetctl version {__version__}\n"


def test_ambiguous_prefix_is_usage_error() -> None:
    result = invoke(["list-unit"])
    assert result.exit_code == 2
    assert "ambiguous" in result.output
    assert "list-unit-files, list-units" in result.output


def test_unknown_command_is_usage_error() -> None:
    result = invoke(["frobnicate"])
    assert result.exit_code == 2


def test_api_driver_without_fleetd(tmp_path: Path) -> None:
    endpoint = f"unix://{tmp_path}/missing.sock"
    result = invoke(["--driver=API", "--endpoint", endpoint, "list-machines"])
    assert result.exit_code == 1
    assert f"cannot reach the fleet API at {endpoint}" in result.output


def test_unix_endpoint_with_host_rejected() -> None:
    result = invoke(["--endpoint", "unix://var/run/fleet.sock", "list-machines"])
    assert result.exit_code == 1
    assert "unable to connect to host 'var' with scheme 'unix'" in result.output


def test_empty_endpoint_rejected() -> None:
    result = invoke(["--endpoint", " , ", "list-machines"])
    assert result.exit_code == 1
    assert "names no URL" in result.output


@pytest.mark.parametrize(
    "command", ["submit", "load", "start", "stop", "unload", "destroy"]
)
def test_no_units_given_is_usage_error(command: str) -> None:
    result = invoke([command])
    assert result.exit_code == 2
    assert "no units given" in result.output


@pytest.mark.parametrize("command", ["cat", "journal"])
@pytest.mark.parametrize("units", [[], ["a.service", "b.service"]])
def test_one_unit_commands_need_exactly_one(command: str, units: list[str]) -> None:
    result = invoke([command, *units])
    assert result.exit_code == 2
    assert "One unit file must be provided" in result.output


@pytest.mark.parametrize("command", ["submit", "load", "start"])
def test_sign_is_deprecated_exit_2(command: str) -> None:
    result = invoke([command, "--sign", "web.service"])
    assert result.exit_code == 2
    assert "DEPRECATED" in result.output


def test_verify_is_deprecated_exit_2() -> None:
    result = invoke(["verify", "web.service"])
    assert result.exit_code == 2
    assert "DEPRECATED" in result.output


def test_bad_fields_exit_1_before_connecting(seen: list[Settings]) -> None:
    result = invoke(["list-units", "--fields", "unit,nope"])
    assert result.exit_code == 1
    assert 'Invalid key in output format: "nope"' in result.output
    assert seen == []


def test_empty_fields_exit_1(seen: list[Settings]) -> None:
    result = invoke(["list-machines", "--fields="])
    assert result.exit_code == 1
    assert "Must define output format" in result.output
    assert seen == []


def test_block_attempts_must_not_be_negative() -> None:
    result = invoke(["start", "--block-attempts=-1", "web.service"])
    assert result.exit_code == 2


def test_rewrite_bool_values_stops_at_double_dash() -> None:
    command = cli.get_command(click.Context(cli), "list-units")
    assert command is not None
    args = ["--full=true", "--no-legend=false", "--", "--full=false"]
    assert rewrite_bool_values(args, command) == ["--full", "--", "--full=false"]


def test_rewrite_bool_values_uses_negative_form() -> None:
    command = cli.get_command(click.Context(cli), "list-units")
    assert command is not None
    assert rewrite_bool_values(["--debug=off"], command) == ["--no-debug"]


HEAVY_PACKAGES = (
    "dbus_fast",
    "aiohttp",
    "fleetd.registry.etcd",
    "fleetd.registry.gateway",
)

IMPORT_PROBE = """
import sys
from fleetctl.cli import main
sys.argv = ["fleetctl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted(
    name for name in sys.modules
    if any(name == p or name.startswith(p + ".") for p in {packages!r})
)
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["list-units", "--help"]])
def test_startup_skips_heavy_imports(args: list[str]) -> None:
    probe = IMPORT_PROBE.format(packages=HEAVY_PACKAGES)
    result = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "HEAVY []" in result.stderr
