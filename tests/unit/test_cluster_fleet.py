"""fleetd settings on cluster hosts: unit file, metadata, TTL and addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetd.cluster import fleet
from fleetd.cluster.cluster import check_up_arguments, host_ips
from fleetd.cluster.fleet import FleetOptions
from fleetd.cluster.host import Host
from fleetd.errors import ClusterError


def make_host(name: str = "demo-2", ip: str = "127.0.0.12") -> Host:
    return Host(
        name=name,
        machine_id="0" * 32,
        public_ip=ip,
        pid=1,
        state_dir=Path("/var/lib/fleet-cluster/demo") / name,
        start_time=0,
    )


def test_environment_of_host() -> None:
    options = FleetOptions(etcd_url="http://127.0.0.1:40001", metadata="rack=r{n}")
    assert options.environment(make_host(), 2) == {
        "FLEET_ETCD_SERVERS": "http://127.0.0.1:40001",
        "FLEET_ETCD_KEY_PREFIX": "/_coreos.com/fleet/",
        "FLEET_PUBLIC_IP": "127.0.0.12",
        "FLEET_AGENT_TTL": "10s",
        "FLEET_METADATA": "rack=r2",
    }


def test_default_metadata_names_host() -> None:
    options = FleetOptions(etcd_url="http://127.0.0.1:40001")
    assert options.environment(make_host(), 2)["FLEET_METADATA"] == "host=demo-2"


def test_unit_text_quotes_and_escapes() -> None:
    text = fleet.unit_text(
        Path("/opt/fleet 1/bin/fleetd"),
        {"FLEET_METADATA": 'note=100%,say="hi"', "FLEET_PUBLIC_IP": "127.0.0.12"},
    )
    lines = text.splitlines()
    assert "ExecStart=/opt/fleet 1/bin/fleetd" in lines
    assert 'Environment="FLEET_METADATA=note=100%%,say=\\"hi\\""' in lines
    assert 'Environment="FLEET_PUBLIC_IP=127.0.0.12"' in lines
    assert "[Service]" in lines
    assert "Restart=on-failure" in lines


@pytest.mark.parametrize("ttl", ["10s", "500ms", "1m", "1.5h", "30"])
def test_agent_ttl_valid(ttl: str) -> None:
    fleet.check_agent_ttl(ttl)


@pytest.mark.parametrize("ttl", ["", "ten", "10 s", "-1s", "10d", "1e3s"])
def test_agent_ttl_invalid(ttl: str) -> None:
    with pytest.raises(ClusterError, match="invalid agent TTL"):
        fleet.check_agent_ttl(ttl)


@pytest.mark.parametrize("template", ["zone={zone}", "a={0}", "a={n", "a={n!x}"])
def test_metadata_template_invalid(template: str) -> None:
    with pytest.raises(ClusterError, match="invalid metadata template"):
        fleet.render_metadata(template, 1, "demo-1")


def test_key_prefix_must_be_absolute() -> None:
    with pytest.raises(ClusterError, match="must start with /"):
        FleetOptions(etcd_url="http://127.0.0.1:40001", key_prefix="fleet/")


def test_host_ips_consecutive() -> None:
    assert host_ips("127.0.0.11", 3) == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    assert host_ips("127.0.0.255", 2) == ["127.0.0.255", "127.0.1.0"]


def test_host_ips_leave_loopback() -> None:
    with pytest.raises(ClusterError, match="leaves no room for 2 hosts"):
        host_ips("127.255.255.255", 2)


def test_host_ips_invalid_base() -> None:
    with pytest.raises(ClusterError, match="invalid IP base 'localhost'"):
        host_ips("localhost", 1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("Demo", 3, "10s", "host={name}", "/p/", "127.0.0.11"), "cluster name"),
        (("demo", 0, "10s", "host={name}", "/p/", "127.0.0.11"), "host count 0"),
        (("demo", 3, "soon", "host={name}", "/p/", "127.0.0.11"), "agent TTL"),
        (("demo", 3, "10s", "host={x}", "/p/", "127.0.0.11"), "metadata template"),
        (("demo", 3, "10s", "host={name}", "p/", "127.0.0.11"), "key prefix"),
        (("demo", 3, "10s", "host={name}", "/p/", "127.0.0"), "IP base"),
    ],
)
def test_check_up_arguments(
    arguments: tuple[str, int, str, str, str, str], message: str
) -> None:
    with pytest.raises(ClusterError, match=message):
        check_up_arguments(*arguments)
