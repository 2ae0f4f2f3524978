import pytest

from fleetd.registry.etcd import READ_PAGE_KEYS, SMALL_KEYS_PAGE, _next_page
from fleetd.registry.gateway import Endpoint, GatewayError, parse_endpoints


def test_http_urls_become_endpoints() -> None:
    endpoints, tls = parse_endpoints(["http://127.0.0.1:2379", "http://127.0.0.2:4001"])
    assert endpoints == [
        Endpoint("http", "127.0.0.1", 2379),
        Endpoint("http", "127.0.0.2", 4001),
    ]
    assert not tls


def test_host_name_is_kept_for_tls_checks() -> None:
    endpoints, _ = parse_endpoints(["https://etcd.example:2379"])
    assert endpoints == [Endpoint("https", "etcd.example", 2379)]


def test_https_selects_tls() -> None:
    endpoints, tls = parse_endpoints(["https://127.0.0.1:2379"])
    assert tls
    assert endpoints[0].tls


def test_missing_port_defaults_to_2379() -> None:
    endpoints, _ = parse_endpoints(["http://127.0.0.1"])
    assert endpoints[0].port == 2379


def test_missing_scheme_means_http() -> None:
    endpoints, _ = parse_endpoints(["127.0.0.1:4001"])
    assert endpoints == [Endpoint("http", "127.0.0.1", 4001)]


def test_ipv6_endpoint_is_accepted() -> None:
    endpoints, _ = parse_endpoints(["http://[::1]:2379"])
    assert endpoints == [Endpoint("http", "::1", 2379)]
    assert endpoints[0].authority == "[::1]:2379"
    assert endpoints[0].url == "http://[::1]:2379"


def test_invalid_ipv6_endpoint_is_rejected() -> None:
    with pytest.raises(GatewayError, match=r"invalid etcd endpoint 'http://\[::g\]"):
        parse_endpoints(["http://[::g]:2379"])


def test_unbracketed_ipv6_endpoint_is_rejected() -> None:
    with pytest.raises(GatewayError, match="invalid etcd endpoint"):
        parse_endpoints(["http://::1:2379"])


def test_mixed_schemes_are_rejected() -> None:
    with pytest.raises(GatewayError, match="mix http and https"):
        parse_endpoints(["http://127.0.0.1:2379", "https://127.0.0.1:2380"])


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(GatewayError, match="invalid etcd endpoint 'ftp://"):
        parse_endpoints(["ftp://127.0.0.1:2379"])


def test_port_out_of_range_is_rejected() -> None:
    with pytest.raises(GatewayError, match="invalid etcd endpoint 'http://h:99999'"):
        parse_endpoints(["http://h:99999"])


def test_path_is_rejected() -> None:
    with pytest.raises(GatewayError, match="remove the path"):
        parse_endpoints(["http://127.0.0.1:2379/v2/keys"])


def test_no_endpoint_is_rejected() -> None:
    with pytest.raises(GatewayError, match="no etcd endpoint given"):
        parse_endpoints([])


def test_next_page_fits_value_bytes() -> None:
    small = [{"value": "x" * 400}] * 10
    large = [{"value": "x" * 40_000}] * 10

    assert _next_page(READ_PAGE_KEYS, small) == SMALL_KEYS_PAGE
    assert _next_page(READ_PAGE_KEYS, large) == READ_PAGE_KEYS
    assert _next_page(READ_PAGE_KEYS, [{"value": "x" * 2000}]) == 2097
    assert _next_page(SMALL_KEYS_PAGE, large) == SMALL_KEYS_PAGE
