"""The API's pure parts: page tokens, request bodies, metrics, listener options."""

from __future__ import annotations

import pytest

from fleetd.api.listeners import ListenerError, parse_address
from fleetd.api.metrics import MetricsRegistry
from fleetd.api.pagination import (
    PageToken,
    PageTokenError,
    decode_token,
    page_of,
    token_from_query,
)
from fleetd.api.schema import (
    SchemaError,
    parse_metadata_patch,
    parse_unit_request,
)
from fleetd.config import ConfigError, load_config
from fleetd.unit import UnitOption


@pytest.mark.parametrize(
    ("limit", "page", "token"),
    [(100, 2, "ZAACAA=="), (2, 2, "AgACAA=="), (19, 11852, "EwBMLg==")],
)
def test_token_wire_format(limit: int, page: int, token: str) -> None:
    assert PageToken(limit, page).encode() == token
    assert decode_token(token) == PageToken(limit, page)


def test_no_token_is_first_page() -> None:
    assert token_from_query([], 100) == PageToken(100, 1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["ZAACAA==", "ZAACAA=="], "too many values for page token"),
        (["EwBMLg=="], "token limit must be 100"),
        (["ZAAAAA=="], "page number must be greater than 0"),
        (["%%"], "not base64"),
        ([""], "decodes to 0 bytes"),
        (["ZAACAAAA"], "decodes to 6 bytes"),
    ],
)
def test_bad_tokens(values: list[str], message: str) -> None:
    with pytest.raises(PageTokenError, match=message):
        token_from_query(values, 100)


def test_pages() -> None:
    items = list(range(5))
    assert page_of(items, PageToken(2, 1)) == ([0, 1], "AgACAA==")
    assert page_of(items, PageToken(2, 3)) == ([4], None)
    assert page_of(items, PageToken(2, 9)) == ([], None)
    assert page_of(items[:4], PageToken(2, 2)) == ([2, 3], "AgADAA==")


def test_unit_request_fields() -> None:
    request = parse_unit_request(
        {
            "name": "web.service",
            "desiredState": "launched",
            "currentState": "ignored",
            "options": [
                {"section": "Service", "name": "ExecStart", "value": "/bin/true"}
            ],
        }
    )
    assert request.name == "web.service"
    assert request.desired_state == "launched"
    assert request.options == (UnitOption("Service", "ExecStart", "/bin/true"),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({"name": 3}, "name must be a string"),
        ({"options": {}}, "options must be a list"),
        ({"options": ["x"]}, r"options\[0\] must be a UnitOption"),
        ({"options": [{"section": "Service"}]}, "needs a section and a name"),
        ({"options": [{"section": "A]", "name": "B"}]}, "contains a newline"),
        ({"options": [{"section": "A", "name": "B", "value": 1}]}, "value must be"),
        ({"options": [{"section": "A", "name": "B", "value": "\udc80"}]}, "surrogate"),
    ],
)
def test_bad_unit_requests(body: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_unit_request(body)


def test_metadata_patch_operations() -> None:
    operations = parse_metadata_patch(
        [
            {"op": "add", "path": "/m1/metadata/disk", "value": {"value": "ssd"}},
            {"op": "remove", "path": "/m1/metadata/role", "value": {"value": "x"}},
        ]
    )
    assert [(o.op, o.machine_id, o.key, o.value) for o in operations] == [
        ("add", "m1", "disk", "ssd"),
        ("remove", "m1", "role", ""),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "must be a JSON array"),
        ([{"op": "move", "path": "/m/metadata/k"}], "invalid op 'move'"),
        ([{"op": "add", "path": "/m/metadata/k/x"}], "invalid path"),
        ([{"op": "add", "path": "m/metadata/k"}], "invalid path"),
        ([{"op": "add", "path": "/m/metadata/k"}], "add needs a non-empty value"),
        ([{"op": "add", "path": "/m/metadata/k", "value": "v"}], "must be an object"),
    ],
)
def test_bad_metadata_patches(body: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_metadata_patch(body)


def test_metrics_exposition() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("things_total", "Things done.", ("kind",))
    counter.inc(kind='a"b')
    counter.inc(2, kind="c")
    registry.gauge("level", "A level.", function=lambda: 1.5)
    summary = registry.summary("wait_seconds", "Waits.", ())
    summary.observe(0.25)
    assert registry.render() == (
        "# HELP fleet_things_total Things done.\n"
        "# TYPE fleet_things_total counter\n"
        'fleet_things_total{kind="a\\"b"} 1\n'
        'fleet_things_total{kind="c"} 2\n'
        "# HELP fleet_level A level.\n"
        "# TYPE fleet_level gauge\n"
        "fleet_level 1.5\n"
        "# HELP fleet_wait_seconds Waits.\n"
        "# TYPE fleet_wait_seconds summary\n"
        "fleet_wait_seconds_sum 0.25\n"
        "fleet_wait_seconds_count 1\n"
    )


def test_metric_labels_must_match() -> None:
    counter = MetricsRegistry().counter("x_total", "X.", ("kind",))
    with pytest.raises(ValueError, match="takes the labels"):
        counter.inc(other="a")


def test_tls_address_needs_tls_files() -> None:
    environ = {"FLEET_API_TLS_ADDRESS": "127.0.0.1:54728"}
    with pytest.raises(ConfigError, match="needs api_tls_certfile"):
        load_config(None, environ)


def test_api_options_from_environment() -> None:
    config = load_config(
        None,
        {
            "FLEET_API_SOCKET": "/run/other.sock",
            "FLEET_API_TLS_ADDRESS": "127.0.0.1:54728",
            "FLEET_API_TLS_CERTFILE": "/c.pem",
            "FLEET_API_TLS_KEYFILE": "/k.pem",
            "FLEET_API_TLS_CAFILE": "/ca.pem",
        },
    )
    assert config.api_socket == "/run/other.sock"
    assert config.api_tls_address == "127.0.0.1:54728"


def test_default_api_socket() -> None:
    assert load_config(None, {}).api_socket == "/var/run/fleet.sock"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:http", ":99999"])
def test_bad_tls_address(address: str) -> None:
    with pytest.raises(ListenerError, match="invalid api_tls_address"):
        parse_address(address)


def test_tls_address_forms() -> None:
    assert parse_address("127.0.0.1:54728") == ("127.0.0.1", 54728)
    assert parse_address("[::1]:0") == ("::1", 0)
