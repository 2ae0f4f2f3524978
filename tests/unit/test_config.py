from pathlib import Path

import pytest

from fleetd.config import (
    DEFAULT_ETCD_SERVERS,
    ConfigError,
    load_config,
    parse_duration,
    parse_metadata,
)


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing.conf", {})
    assert config.etcd_servers == DEFAULT_ETCD_SERVERS
    assert config.etcd_key_prefix == "/_coreos.com/fleet/"
    assert config.agent_ttl == 10.0
    assert config.engine_reconcile_interval == 2.0
    assert config.units_directory == "/run/fleet/units/"
    assert config.token_limit == 100
    assert not config.etcd_servers_set


def test_file_options_use_original_names(tmp_path: Path) -> None:
    path = tmp_path / "fleet.conf"
    path.write_text(
        "# comment\n"
        'etcd_servers=["http://127.0.0.1:4001", "http://127.0.0.2:4001"]\n'
        "metadata=region=us-west,az=2\n"
        'public_ip="127.0.0.7"\n'
        "agent_ttl=30s\n"
        "verbosity=2\n"
        "disable_engine=true\n"
    )
    config = load_config(path, {}, path_given=True)
    assert config.etcd_servers == ("http://127.0.0.1:4001", "http://127.0.0.2:4001")
    assert dict(config.metadata) == {"region": "us-west", "az": "2"}
    assert config.public_ip == "127.0.0.7"
    assert config.agent_ttl == 30.0
    assert config.verbosity == 2
    assert config.disable_engine
    assert config.etcd_servers_set


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.conf"
    path.write_text("public_ip=127.0.0.7\n")
    config = load_config(path, {"FLEET_PUBLIC_IP": "127.0.0.8"})
    assert config.public_ip == "127.0.0.8"


def test_named_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.conf", {}, path_given=True)


def test_directory_as_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, {}, path_given=True)


def test_bad_value_names_the_option() -> None:
    with pytest.raises(ConfigError, match="invalid value for agent_ttl"):
        load_config(None, {"FLEET_AGENT_TTL": "soon"})


def test_bad_metadata_names_the_pair() -> None:
    with pytest.raises(ConfigError, match="'region'"):
        load_config(None, {"FLEET_METADATA": "region"})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("3", 3.0), ("1h", 3600.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_junk() -> None:
    with pytest.raises(ValueError, match="10s"):
        parse_duration("10 parsecs")


def test_metadata_later_keys_win_and_quotes_trim() -> None:
    assert parse_metadata("a=1, b='x', a=2") == {"a": "2", "b": "x"}


def test_too_short_ttl_is_rejected() -> None:
    with pytest.raises(ConfigError, match="agent_ttl"):
        load_config(None, {"FLEET_AGENT_TTL": "500ms"})


def test_quoted_metadata_in_file_is_unquoted(tmp_path: Path) -> None:
    path = tmp_path / "fleet.conf"
    path.write_text('metadata="region=us-west,az=us-west-1"\n')
    config = load_config(path, {}, path_given=True)
    assert dict(config.metadata) == {"region": "us-west", "az": "us-west-1"}


def test_quoted_metadata_in_environment_is_unquoted() -> None:
    config = load_config(None, {"FLEET_METADATA": "'region=eu'"})
    assert dict(config.metadata) == {"region": "eu"}
