"""Unit arguments: mangling, glob patterns, selection and block attempts."""

from __future__ import annotations

import click
import pytest

from fleetctl.commands.common import attempts_from
from fleetctl.selection import (
    is_glob,
    match_glob,
    require_units,
    select_one_unit,
    select_units,
    unit_name_of,
)
from fleetd.model import DesiredState, Unit


def make_unit(name: str) -> Unit:
    return Unit(name=name, hash="", raw="", desired_state=DesiredState.INACTIVE)


UNITS = [
    make_unit(name)
    for name in (
        "db.service",
        "nginx-proxy.socket",
        "nginx.service",
        "web@1.service",
        "web@2.service",
        "web@10.service",
    )
]


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("web*", True),
        ("web@?.service", True),
        ("web@[12].service", True),
        ("web.service", False),
        ("units/web@1.service", False),
    ],
)
def test_is_glob(arg: str, expected: bool) -> None:
    assert is_glob(arg) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("nginx*", ["nginx-proxy.socket", "nginx.service"]),
        ("web@?.service", ["web@1.service", "web@2.service"]),
        ("web@[!1].service", ["web@2.service"]),
        ("*.socket", ["nginx-proxy.socket"]),
        ("units/db*", ["db.service"]),
        ("Web*", []),
    ],
)
def test_match_glob(pattern: str, expected: list[str]) -> None:
    assert match_glob(pattern, [unit.name for unit in UNITS]) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("web", "web.service"),
        ("web.socket", "web.socket"),
        ("foo.target", "foo.target.service"),
        ("units/web@1.service", "web@1.service"),
        ("/abs/path/db", "db.service"),
    ],
)
def test_unit_name_of_mangles(arg: str, expected: str) -> None:
    assert unit_name_of(arg) == expected


@pytest.mark.parametrize("arg", ["", "/", ".."])
def test_unit_name_of_rejects_empty_base(arg: str) -> None:
    with pytest.raises(click.ClickException, match="cannot take a unit name"):
        unit_name_of(arg)


def test_select_units_keeps_argument_order_once() -> None:
    selected = select_units(["web@2", "web@*", "db"], UNITS)
    names = [unit.name for unit in selected]
    assert names == ["web@2.service", "web@1.service", "web@10.service", "db.service"]


def test_select_units_names_every_missing_argument() -> None:
    with pytest.raises(click.ClickException) as raised:
        select_units(["db", "ghost", "api*"], UNITS)
    message = raised.value.message
    assert message.startswith("units ghost.service, 'api*' (no unit matches) ")
    assert "not found in the registry" in message


def test_select_one_unit_rejects_several_matches() -> None:
    with pytest.raises(click.ClickException, match="matches 3 units"):
        select_one_unit("web@*", UNITS)


def test_select_one_unit_accepts_single_match() -> None:
    assert select_one_unit("db*", UNITS).name == "db.service"


def test_require_units_is_usage_error() -> None:
    with pytest.raises(click.UsageError, match="no units given"):
        require_units([])


@pytest.mark.parametrize(
    ("no_block", "attempts", "expected"),
    [(True, 5, -1), (True, 0, -1), (False, 0, 0), (False, 3, 3)],
)
def test_attempts_from(no_block: bool, attempts: int, expected: int) -> None:
    assert attempts_from(no_block, attempts) == expected
