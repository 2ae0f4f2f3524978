import pytest

from fleetd.errors import RegistryError
from fleetd.registry.etcd import parse_endpoints


def test_http_urls_become_ipv4_targets() -> None:
    targets, tls = parse_endpoints(["http://127.0.0.1:2379", "http://127.0.0.2:4001"])
    assert targets == ["127.0.0.1:2379", "127.0.0.2:4001"]
    assert not tls


def test_localhost_is_resolved() -> None:
    targets, _ = parse_endpoints(["http://localhost:2379"])
    assert targets == ["127.0.0.1:2379"]


def test_https_selects_tls() -> None:
    _, tls = parse_endpoints(["https://127.0.0.1:2379"])
    assert tls


def test_missing_port_defaults_to_2379() -> None:
    targets, _ = parse_endpoints(["http://127.0.0.1"])
    assert targets == ["127.0.0.1:2379"]


def test_ipv6_endpoint_is_rejected_with_fix() -> None:
    with pytest.raises(RegistryError, match="use an IPv4 address"):
        parse_endpoints(["http://[::1]:2379"])


def test_mixed_schemes_are_rejected() -> None:
    with pytest.raises(RegistryError, match="mix http and https"):
        parse_endpoints(["http://127.0.0.1:2379", "https://127.0.0.1:2380"])


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(RegistryError, match="invalid etcd endpoint 'ftp://"):
        parse_endpoints(["ftp://127.0.0.1:2379"])
