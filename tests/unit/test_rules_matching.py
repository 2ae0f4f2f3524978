"""Glob patterns, conflicts, Replaces, MachineID and metadata matching."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetd.rules import (
    MetadataCondition,
    Requirements,
    conflicts,
    glob_match,
    machine_id_matches,
    metadata_matches,
    parse_metadata_condition,
    replaces,
)

GLOB_CASES = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-\u03b6]*", "\u03b1", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[z-a]", "m", False),
    ("[^z-a]", "m", True),
    ("[*]", "*", True),
    ("[*]", "a", False),
    ("*x", "xxx", True),
    ("", "", True),
    ("", "a", False),
    ("?", "", False),
    ("deis-router@*.service", "deis-router@1.service", True),
    ("deis-router@*.service", "deis-router@.service", True),
    ("deis-router@*.service", "deis-builder@1.service", False),
    ("registry*.service", "registry.1.service", True),
    ("mysql.slave.mysql-master.*", "mysql.slave.mysql-master.1.service", True),
    ("conflict.*.service", "conflict.0.service", True),
    ("conflict.*.service", "conflict.service", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), GLOB_CASES)
def test_glob_match(pattern: str, name: str, expected: bool) -> None:
    assert glob_match(pattern, name) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "[",
        "[^",
        "[^bc",
        "a[",
        "[]a]",
        "[]",
        "[-]",
        "[x-]",
        "[-x]",
        "[a-",
        "[a-b",
        "\\",
        "a\\",
        "[\\",
        "[a\\",
        "[a-\\",
        "[^]",
        "*[",
        "a[b",
    ],
)
def test_malformed_glob_never_matches(pattern: str) -> None:
    candidates = ["", "a", "[", "]", "-", "\\", "x", "b", "ab", pattern]

    assert not any(glob_match(pattern, name) for name in candidates)


def test_class_matches_slash_as_go_does() -> None:
    assert glob_match("a[/]b", "a/b")
    assert glob_match("a[^x]b", "a/b")


def test_stepwise_match_for_names_with_slash() -> None:
    # Go's path.Match takes the first place where "[^x]" fits after the star
    # and does not try again, so this never matches although a regular
    # expression would.
    assert not glob_match("*[^x]*c", "a/c")
    assert glob_match("*[^x]*c", "ac")


GLOB_ALPHABET = "ab/*?[]^-\\"
NAME_ALPHABET = "ab/-*?[]\\"


def reference_match(pattern: str, name: str) -> bool:
    """Backtracking matcher for '/'-free names, written only for these tests."""
    tokens = tokenize(pattern)
    if tokens is None:
        return False

    def match(t: int, n: int) -> bool:
        if t == len(tokens):
            return n == len(name)
        kind, payload = tokens[t]
        if kind == "star":
            return any(match(t + 1, end) for end in range(n, len(name) + 1))
        if n == len(name):
            return False
        char = name[n]
        if kind == "any":
            ok = char != "/"
        elif kind == "lit":
            ok = char == payload
        else:
            negated, ranges = payload
            ok = any(low <= char <= high for low, high in ranges) != negated
        return ok and match(t + 1, n + 1)

    return match(0, 0)


def tokenize(pattern: str) -> list[tuple[str, object]] | None:
    tokens: list[tuple[str, object]] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            tokens.append(("star", None))
            i += 1
        elif char == "?":
            tokens.append(("any", None))
            i += 1
        elif char == "\\":
            if i + 1 == len(pattern):
                return None
            tokens.append(("lit", pattern[i + 1]))
            i += 2
        elif char == "[":
            found = re.match(
                r"\[(\^?)((?:[^\\\-\]]|\\.)(?:-(?:[^\\\-\]]|\\.))?)+\]", pattern[i:]
            )
            if found is None:
                return None
            body = found.group(0)[1 + len(found.group(1)) : -1]
            items = re.findall(r"((?:[^\\\-\]]|\\.))(?:-((?:[^\\\-\]]|\\.)))?", body)
            ranges = [(low[-1], (high or low)[-1]) for low, high in items]
            tokens.append(("class", (bool(found.group(1)), ranges)))
            i += found.end()
        else:
            tokens.append(("lit", char))
            i += 1
    return tokens


@given(
    st.text(alphabet=GLOB_ALPHABET, max_size=8),
    st.text(alphabet=NAME_ALPHABET.replace("/", ""), max_size=8),
)
def test_glob_agrees_with_reference(pattern: str, name: str) -> None:
    assert glob_match(pattern, name) is reference_match(pattern, name)


@given(st.text(alphabet="ab.-@_:", max_size=12))
def test_glob_without_wildcards_is_equality(name: str) -> None:
    assert glob_match(name, name)
    assert not glob_match(name, name + "x")


@given(st.text(alphabet="ab.-@", max_size=10), st.text(alphabet="ab.-@", max_size=10))
def test_glob_star_matches_any_slash_free_suffix(prefix: str, suffix: str) -> None:
    assert glob_match(prefix.replace("\\", "") + "*", prefix + suffix)


# conflicts and replaces ---------------------------------------------------


def test_conflicts_both_directions() -> None:
    web = Requirements(conflicts=("db*.service",))
    db = Requirements()

    assert conflicts("web.service", web, "db.1.service", db)
    assert conflicts("db.1.service", db, "web.service", web)
    assert not conflicts("web.service", web, "cache.service", db)


def test_conflicts_with_same_template() -> None:
    req = Requirements(conflicts=("galera@*.service",))

    assert conflicts("galera@1.service", req, "galera@2.service", req)
    assert not conflicts("galera@1.service", req, "galera@1.service", req)


def test_conflicts_exact_and_glob_patterns() -> None:
    req = Requirements(conflicts=("a.service", "b*.service", "c[12].service"))

    assert conflicts("x.service", req, "a.service", Requirements())
    assert conflicts("x.service", req, "b7.service", Requirements())
    assert conflicts("x.service", req, "c2.service", Requirements())
    assert not conflicts("x.service", req, "c3.service", Requirements())


def test_conflicts_ignores_malformed_pattern() -> None:
    req = Requirements(conflicts=("a[.service", "b.service"))

    assert not conflicts("x.service", req, "a[.service", Requirements())
    assert conflicts("x.service", req, "b.service", Requirements())


def test_no_conflicts() -> None:
    assert not conflicts("a.service", Requirements(), "b.service", Requirements())


def test_replaces() -> None:
    req = Requirements(replaces=("old*.service",))

    assert replaces("new.service", req, "old.1.service")
    assert not replaces("new.service", req, "other.service")
    assert not replaces("old.2.service", req, "old.2.service")
    assert not replaces("old.1.service", Requirements(), "new.service")


def test_requirements_equal_regardless_of_compiled_state() -> None:
    assert Requirements(conflicts=("a*",)) == Requirements(conflicts=("a*",))
    assert hash(Requirements(conflicts=("a*",))) == hash(
        Requirements(conflicts=("a*",))
    )


# MachineID -------------------------------------------------------------------

MACHINE = "2c1e3f8a9b7d4e6f8a1b2c3d4e5f6a7b"


@pytest.mark.parametrize(
    ("required", "machine_id", "expected"),
    [
        ("", MACHINE, True),
        (MACHINE, MACHINE, True),
        (MACHINE[:8], MACHINE, True),
        (MACHINE[:7], MACHINE, False),
        (MACHINE[:9], MACHINE, False),
        ("other", MACHINE, False),
        ("short", "short", True),
        (MACHINE.upper(), MACHINE, False),
    ],
)
def test_machine_id_matches(required: str, machine_id: str, expected: bool) -> None:
    assert machine_id_matches(Requirements(machine_id=required), machine_id) is expected


# Metadata ----------------------------------------------------------------------


def conditions(*items: str) -> Requirements:
    parsed = [parse_metadata_condition(item) for item in items]
    assert None not in parsed
    return Requirements(metadata=tuple(c for c in parsed if c is not None))


METADATA_CASES = [
    ((), {}, True),
    ((), {"region": "us"}, True),
    (("region=us",), {"region": "us"}, True),
    (("region=us",), {"region": "eu"}, False),
    (("region=us",), {}, False),
    (("region=us", "region=eu"), {"region": "eu"}, True),
    (("region=us", "region=eu"), {"region": "ap"}, False),
    (("region=us", "disk=ssd"), {"region": "us", "disk": "ssd"}, True),
    (("region=us", "disk=ssd"), {"region": "us", "disk": "hdd"}, False),
    (("region=us", "disk=ssd"), {"region": "us"}, False),
    (("region!=us",), {"region": "eu"}, True),
    (("region!=us",), {"region": "us"}, False),
    (("region!=us",), {}, False),
    (("region!=us", "region!=eu"), {"region": "ap"}, True),
    (("region!=us", "region!=eu"), {"region": "eu"}, False),
    (("region=us", "region=eu", "region!=eu"), {"region": "eu"}, False),
    (("region=us", "region=eu", "region!=eu"), {"region": "us"}, True),
    (("cores>=4",), {"cores": "4"}, True),
    (("cores>=4",), {"cores": "16"}, True),
    (("cores>=4",), {"cores": "2"}, False),
    (("cores>4",), {"cores": "4"}, False),
    (("cores<4",), {"cores": "3.5"}, True),
    (("cores<=4",), {"cores": "4.0"}, True),
    (("cores>=4", "cores<16"), {"cores": "8"}, True),
    (("cores>=4", "cores<16"), {"cores": "16"}, False),
    (("cores>=10",), {"cores": "9"}, False),
    (("cores>=-1",), {"cores": "-2"}, False),
    (("mem>1e3",), {"mem": "2000"}, True),
    (("cores>=4",), {"cores": "many"}, True),
    (("cores>=4",), {"cores": "1many"}, False),
    (("version>=1.10",), {"version": "1.9"}, True),  # decimals, not versions
    (("tier>b",), {"tier": "c"}, True),
    (("tier>b",), {"tier": "a"}, False),
    (("tier<=b",), {"tier": "b"}, True),
    (("cores>=4",), {}, False),
    (("cores=4",), {"cores": "4.0"}, False),
    (("cores!=4",), {"cores": "4.0"}, True),
    (("url=http://x/?a=b",), {"url": "http://x/?a=b"}, True),
]


@pytest.mark.parametrize(("items", "metadata", "expected"), METADATA_CASES)
def test_metadata_matches(
    items: tuple[str, ...], metadata: dict[str, str], expected: bool
) -> None:
    assert metadata_matches(conditions(*items), metadata) is expected


@pytest.mark.parametrize(
    ("condition", "actual", "expected"),
    [
        (MetadataCondition("k", "=", "a"), "a", True),
        (MetadataCondition("k", "!=", "a"), "a", False),
        (MetadataCondition("k", "<", "10"), "9", True),
        (MetadataCondition("k", "<", "10"), "10", False),
        (MetadataCondition("k", "<", "abc"), "abd", False),
        (MetadataCondition("k", ">", "+5"), "5.5", True),
        (MetadataCondition("k", ">=", ".5"), "0.5", True),
        (MetadataCondition("k", "<=", "nan"), "1", True),
        (MetadataCondition("k", ">", "1_000"), "2", True),
    ],
)
def test_metadata_condition_holds_for(
    condition: MetadataCondition, actual: str, expected: bool
) -> None:
    assert condition.holds_for(actual) is expected


@given(
    st.lists(st.sampled_from(["us", "eu", "ap"]), min_size=1, max_size=3),
    st.sampled_from(["us", "eu", "ap", "sa"]),
)
def test_metadata_equals_is_or_within_key(allowed: list[str], actual: str) -> None:
    req = conditions(*(f"region={value}" for value in allowed))

    assert metadata_matches(req, {"region": actual}) is (actual in allowed)


@given(st.integers(-100, 100), st.integers(-100, 100))
def test_metadata_numeric_order(required: int, actual: int) -> None:
    assert metadata_matches(conditions(f"n>={required}"), {"n": str(actual)}) is (
        actual >= required
    )
    assert metadata_matches(conditions(f"n<{required}"), {"n": str(actual)}) is (
        actual < required
    )
