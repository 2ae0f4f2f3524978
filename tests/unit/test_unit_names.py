"""Unit name validation, fleetctl's name mangling and template names."""

from __future__ import annotations

import pytest

from fleetd.errors import UnitNameError
from fleetd.unit import UnitNameInfo, mangle_unit_name, validate_unit_name


@pytest.mark.parametrize(
    "name",
    [
        "foo.service",
        "foo.socket",
        "foo.timer",
        "foo.path",
        "foo.device",
        "foo.mount",
        "foo.automount",
        "foo.busname",
        "foo.scope",
        "foo.slice",
        "foo.snapshot",
        "foo.swap",
        "foo.target",
        "foo@.service",
        "foo@bar.service",
        "foo@bar@baz.socket",
        "foo.1@2.timer",
        "web-1_a:b.service",
        "back\\slash.service",
        "a.b.c.service",
        "x" * 247 + ".service",
    ],
)
def test_valid_unit_name(name: str) -> None:
    validate_unit_name(name)


INVALID_NAMES = [
    pytest.param(
        "",
        r"^unit name cannot be empty\. Give a name such as web\.service$",
        id="empty",
    ),
    pytest.param(
        "x" * 248 + ".service",
        r"^unit name exceeds maximum length \(255\): 'x{57}\.\.\.' is 256 bytes\. "
        r"Shorten it$",
        id="too long",
    ),
    pytest.param(
        "\u00e9" * 125 + ".service",
        r"^unit name exceeds maximum length \(255\): .* is 258 bytes",
        id="too long in bytes",
    ),
    pytest.param(
        "foo",
        r"^unit name must contain \"\.\": 'foo' has no unit type\. Add one, for "
        r"example 'foo\.service'$",
        id="no dot",
    ),
    pytest.param(
        "foo.",
        r"^unit name cannot end in \"\.\": add a unit type to 'foo\.', for example "
        r"'foo\.service'$",
        id="ends in dot",
    ),
    pytest.param(
        "foo.bar",
        r"^invalid unit type: 'bar' in unit name 'foo\.bar'\. Use one of automount, "
        r"busname, device, mount, path, scope, service, slice, snapshot, socket, "
        r"swap, target, timer$",
        id="unknown type",
    ),
    pytest.param(
        "foo.Service",
        r"^invalid unit type: 'Service'",
        id="type is case sensitive",
    ),
    pytest.param(
        "foo@bar.mount",
        r"^invalid unit type for template: 'mount' in unit name 'foo@bar\.mount'\. "
        r"Templates and their instances must be one of path, service, socket, "
        r"target, timer$",
        id="template of wrong type",
    ),
    pytest.param(
        "foo@.device",
        r"^invalid unit type for template: 'device'",
        id="template device",
    ),
    pytest.param(
        "foo bar.service",
        r"^invalid character ' ' in unit name 'foo bar\.service'\. Use only letters, "
        r"digits and the characters : - _ \. \\ @$",
        id="space",
    ),
    pytest.param("a/b.service", r"^invalid character '/'", id="slash"),
    pytest.param("a%i.service", r"^invalid character '%'", id="percent"),
    pytest.param("caf\u00e9.service", r"^invalid character '\u00e9'", id="non-ASCII"),
    pytest.param(
        "@foo.service",
        r"^unit name cannot start in \"@\": put the template name before the \"@\" "
        r"in '@foo\.service', for example 'web@foo\.service'$",
        id="leading at",
    ),
]


@pytest.mark.parametrize(("name", "message"), INVALID_NAMES)
def test_invalid_unit_name(name: str, message: str) -> None:
    with pytest.raises(UnitNameError, match=message):
        validate_unit_name(name)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("foo", "foo.service"),
        ("foo.service", "foo.service"),
        ("foo.socket", "foo.socket"),
        ("foo.timer", "foo.timer"),
        ("foo.path", "foo.path"),
        ("foo.device", "foo.device"),
        ("foo.mount", "foo.mount"),
        ("foo.automount", "foo.automount"),
        ("foo.target", "foo.target.service"),
        ("foo.slice", "foo.slice.service"),
        ("foo@1", "foo@1.service"),
        ("foo@.service", "foo@.service"),
        ("web.1", "web.1.service"),
        ("service", "service.service"),
        ("units/foo.service", "foo.service"),
        ("/abs/path/foo", "foo.service"),
        ("./foo.service", "foo.service"),
        ("dir/foo.service/", "foo.service"),
        ("dir//foo//", "foo.service"),
    ],
)
def test_mangle_unit_name(arg: str, expected: str) -> None:
    assert mangle_unit_name(arg) == expected


@pytest.mark.parametrize("arg", ["", "/", "//", ".", "..", "dir/..", "dir/./"])
def test_mangle_rejects_path_without_name(arg: str) -> None:
    with pytest.raises(UnitNameError, match=r"^cannot take a unit name from .*\. Give"):
        mangle_unit_name(arg)


@pytest.mark.parametrize(
    ("full_name", "name", "prefix", "instance", "template", "suffix"),
    [
        ("foo.service", "foo", "foo", "", "", "service"),
        ("foo@.service", "foo@", "foo", "", "foo@.service", "service"),
        ("foo@bar.service", "foo@bar", "foo", "bar", "foo@.service", "service"),
        (
            "foo@bar@baz.service",
            "foo@bar@baz",
            "foo",
            "bar@baz",
            "foo@.service",
            "service",
        ),
        ("foo.1@2.socket", "foo.1@2", "foo.1", "2", "foo.1@.socket", "socket"),
        ("a.b.c.timer", "a.b.c", "a.b.c", "", "", "timer"),
        ("foo.", "foo", "foo", "", "", ""),
    ],
)
def test_unit_name_info(
    full_name: str, name: str, prefix: str, instance: str, template: str, suffix: str
) -> None:
    info = UnitNameInfo.from_name(full_name)

    assert info == UnitNameInfo(full_name, name, prefix, instance, template, suffix)


def test_unit_name_info_without_dot() -> None:
    assert UnitNameInfo.from_name("foo") is None
    assert UnitNameInfo.from_name("foo@bar") is None


@pytest.mark.parametrize(
    ("full_name", "is_template", "is_instance"),
    [
        ("foo.service", False, False),
        ("foo@.service", True, False),
        ("foo@1.service", False, True),
        ("foo@bar@baz.service", False, True),
    ],
)
def test_template_and_instance(
    full_name: str, is_template: bool, is_instance: bool
) -> None:
    info = UnitNameInfo.from_name(full_name)

    assert info is not None
    assert info.is_template is is_template
    assert info.is_instance is is_instance
