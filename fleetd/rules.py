"""The [X-Fleet] section of a unit file, and which machines and units fit it.

``requirements_of`` reads a unit's [X-Fleet] options once into a
``Requirements``. The matching functions below take that record, and they are
cheap enough for the scheduler to call for every unit and machine pair.
Glob patterns are compiled once per distinct pattern.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fleetd.errors import UnitFileError, UnitNameError
from fleetd.unit import (
    GO_WHITESPACE,
    LINE_MAX,
    UnitFile,
    UnitNameInfo,
    encode_utf8,
    validate_unit_name,
)

SECTION = "X-Fleet"

# Option names as the user writes them. The X- names, deprecated since fleet
# v0.8.0, mean the same as the name they map to.
MACHINE_ID = "MachineID"
MACHINE_OF = "MachineOf"
CONFLICTS = "Conflicts"
MACHINE_METADATA = "MachineMetadata"
GLOBAL = "Global"
REPLACES = "Replaces"
DEPRECATED_NAMES: Mapping[str, str] = {
    "X-ConditionMachineID": MACHINE_ID,
    "X-ConditionMachineBootID": MACHINE_ID,
    "X-ConditionMachineOf": MACHINE_OF,
    "X-Conflicts": CONFLICTS,
    "X-ConditionMachineMetadata": MACHINE_METADATA,
}
KNOWN_OPTIONS = frozenset(
    {MACHINE_ID, MACHINE_OF, CONFLICTS, MACHINE_METADATA, GLOBAL, REPLACES}
    | DEPRECATED_NAMES.keys()
)

OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
_TRUE_VALUES = frozenset({"true", "yes", "1", "on", "t"})
_FALSE_VALUES = frozenset({"false", "no", "0", "off", "f", ""})
_SPECIFIER = re.compile(r"%[nNpi]")
_FIELD_SEPARATOR = re.compile(f"[{re.escape(GO_WHITESPACE)}]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_OPERATOR_START = re.compile(r"[=!<>]")
_ORDERINGS: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


_COMPARISONS: Mapping[str, Callable[[Any, Any], bool]] = {
    "!=": operator.ne,
    **_ORDERINGS,
}


@lru_cache(maxsize=4096)
def _parse_number(text: str) -> int | float | None:
    """Return text as a number if it is a plain decimal one, else None."""
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    return None


@dataclass(frozen=True)
class MetadataCondition:
    """One ``key<op>value`` requirement on a machine's metadata.

    ``=`` and ``!=`` compare strings exactly. ``<``, ``<=``, ``>`` and ``>=``
    compare as numbers when both sides are decimal numbers, else as strings
    (by code point).
    """

    key: str
    op: str
    value: str
    _number: int | float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown metadata operator {self.op!r}")
        object.__setattr__(self, "_number", _parse_number(self.value))

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    def holds_for(self, actual: str) -> bool:
        """Return whether a machine whose metadata ``key`` is ``actual`` meets this."""
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        compare = _ORDERINGS[self.op]
        if self._number is not None:
            number = _parse_number(actual)
            if number is not None:
                return compare(number, self._number)
        return compare(actual, self.value)


# The conditions on one metadata key. First the "=" values, any one of which
# will do (None without "="). Then the other conditions as (comparison, number
# or None, value), which must all hold.
_MetadataGroup = tuple[
    str,
    frozenset[str] | None,
    tuple[tuple[Callable[[Any, Any], bool], int | float | None, str], ...],
]
_NameMatcher = Callable[[str], bool]


def _build_matcher(patterns: Iterable[str]) -> _NameMatcher | None:
    """Compile glob patterns into one test of a name; None if none can match.

    Plain names go in a set, the other patterns into one regular expression,
    so a test costs a set lookup and at most one regex match.
    """
    exact: set[str] = set()
    globs: list[_Glob] = []
    for pattern in patterns:
        compiled = _compile_glob(pattern)
        if compiled is None:
            continue
        if compiled.literal is not None:
            exact.add(compiled.literal)
        else:
            globs.append(compiled)

    exact_names = frozenset(exact)
    if not globs:
        return exact_names.__contains__ if exact_names else None
    combined = "|".join(f"(?:{glob.regex})" for glob in globs)
    fullmatch = re.compile(combined, re.DOTALL).fullmatch
    glob_tuple = tuple(globs)

    def matches(name: str) -> bool:
        if name in exact_names:
            return True
        if "/" in name:
            return any(glob.matches(name) for glob in glob_tuple)
        return fullmatch(name) is not None

    return matches


@dataclass(frozen=True)
class Requirements:
    """The requirements of a unit's [X-Fleet] section on its machine.

    Every field is final: deprecated names are merged in, ``%n``, ``%N``,
    ``%p`` and ``%i`` are substituted and empty values are dropped.
    """

    machine_id: str = ""  # a full or 8-character machine ID, "" for any machine
    peers: tuple[str, ...] = ()  # units that must already be on the machine
    conflicts: tuple[str, ...] = ()  # globs of units that must not be there
    metadata: tuple[MetadataCondition, ...] = ()
    is_global: bool = False
    replaces: tuple[str, ...] = ()  # globs of units this unit displaces
    unknown_keys: tuple[str, ...] = ()
    _conflict_matcher: _NameMatcher | None = field(
        init=False, repr=False, compare=False
    )
    _replace_matcher: _NameMatcher | None = field(init=False, repr=False, compare=False)
    _metadata_groups: tuple[_MetadataGroup, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        matcher = _build_matcher(self.conflicts)
        object.__setattr__(self, "_conflict_matcher", matcher)
        object.__setattr__(self, "_replace_matcher", _build_matcher(self.replaces))
        object.__setattr__(self, "_metadata_groups", _group_metadata(self.metadata))


def _group_metadata(
    conditions: Iterable[MetadataCondition],
) -> tuple[_MetadataGroup, ...]:
    allowed: dict[str, set[str]] = {}
    others: dict[str, list[MetadataCondition]] = {}
    for condition in conditions:
        others.setdefault(condition.key, [])
        if condition.op == "=":
            allowed.setdefault(condition.key, set()).add(condition.value)
        else:
            others[condition.key].append(condition)
    return tuple(
        (
            key,
            frozenset(allowed[key]) if key in allowed else None,
            tuple(
                # "!=" compares strings exactly, like "=".
                (_COMPARISONS[c.op], None if c.op == "!=" else c._number, c.value)
                for c in key_others
            ),
        )
        for key, key_others in others.items()
    )


NO_REQUIREMENTS = Requirements()

# Requirements by the [X-Fleet] options they were read from, for options
# without "%" (specifiers make them depend on the unit's name). Units started
# from one template or script often share their [X-Fleet] lines, and sharing
# the record also shares its compiled globs.
_SHARED_LIMIT = 4096
_shared: dict[tuple[tuple[str, str], ...], Requirements] = {}


def requirements_of_text(name: str, text: str) -> Requirements:
    """Read the requirements of the unit ``name`` straight from its file's text.

    A file without an [X-Fleet] header has no requirements and is not parsed
    at all, so it is not checked either: the engine and the agents call this
    for every unit file they have not seen before.
    """
    if f"[{SECTION}]" not in text:
        return NO_REQUIREMENTS
    return requirements_of(name, UnitFile.parse(text))


def requirements_of(name: str, unit_file: UnitFile) -> Requirements:
    """Read the [X-Fleet] section of the unit ``name`` into a Requirements."""
    options = tuple(
        (option.name, option.value)
        for option in unit_file.options
        if option.section == SECTION
    )
    if not options:
        return NO_REQUIREMENTS
    if any("%" in value for _, value in options):
        return _read_requirements(name, unit_file)
    found = _shared.get(options)
    if found is None:
        if len(_shared) >= _SHARED_LIMIT:
            _shared.clear()
        found = _shared[options] = _read_requirements(name, unit_file)
    return found


def _read_requirements(name: str, unit_file: UnitFile) -> Requirements:
    values = _fleet_values(name, unit_file)

    source = _machine_id_source(values)
    global_values = values.get(GLOBAL, [])
    return Requirements(
        machine_id=source[1][0] if source else "",
        peers=_collect(values, (MACHINE_OF, "X-ConditionMachineOf")),
        conflicts=_collect(values, (CONFLICTS, "X-Conflicts"), split=True),
        metadata=tuple(
            condition
            for item in _collect(
                values, (MACHINE_METADATA, "X-ConditionMachineMetadata")
            )
            if (condition := parse_metadata_condition(item)) is not None
        ),
        is_global=bool(global_values) and global_values[-1].lower() in _TRUE_VALUES,
        replaces=_collect(values, (REPLACES,)),
        unknown_keys=tuple(key for key in values if key not in KNOWN_OPTIONS),
    )


def _fleet_values(name: str, unit_file: UnitFile) -> dict[str, list[str]]:
    """Return each [X-Fleet] key's values, multi-value lines split, specifiers done.

    A template has no instance yet, so ``%i`` stays as it is there (the
    original put "" in its place, which made ``MachineID=%i`` look empty).
    """
    info = UnitNameInfo.from_name(name)
    specifiers: dict[str, str] = {}
    if info is not None:
        specifiers = {
            "%n": info.full_name,
            "%N": info.name,
            "%p": info.prefix,
            "%i": "%i" if info.is_template else info.instance,
        }

    values: dict[str, list[str]] = {}
    for option in unit_file.options:
        if option.section != SECTION:
            continue
        items = split_multivalue(option.value)
        if specifiers:
            items = [
                _SPECIFIER.sub(lambda match: specifiers[match.group()], item)
                for item in items
            ]
        values.setdefault(option.name, []).extend(items)
    return values


_MACHINE_ID_KEYS = (MACHINE_ID, "X-ConditionMachineID", "X-ConditionMachineBootID")
# Options whose empty values are dropped (Global keeps them: an empty last
# Global value means false).
_LIST_OPTIONS = (
    *_MACHINE_ID_KEYS,
    MACHINE_OF,
    "X-ConditionMachineOf",
    CONFLICTS,
    "X-Conflicts",
    MACHINE_METADATA,
    "X-ConditionMachineMetadata",
    REPLACES,
)


def _machine_id_source(values: Mapping[str, list[str]]) -> tuple[str, list[str]] | None:
    """Return the first MachineID-like key with a non-empty value, and those values."""
    for key in _MACHINE_ID_KEYS:
        found = [value for value in values.get(key, ()) if value]
        if found:
            return key, found
    return None


def _collect(
    values: Mapping[str, list[str]], keys: tuple[str, ...], *, split: bool = False
) -> tuple[str, ...]:
    """Join the values of ``keys`` in that order, without empties or repeats."""
    collected: dict[str, None] = {}
    for key in keys:
        for value in values.get(key, ()):
            parts = _FIELD_SEPARATOR.split(value) if split else [value]
            for part in parts:
                if part:
                    collected[part] = None
    return tuple(collected)


def split_multivalue(value: str) -> list[str]:
    """Split an [X-Fleet] value into items, as fleet did.

    Only a value that starts and ends with a double quote is split: at spaces
    outside quotes, with every quote removed and no escapes, so
    ``"a=b" "c=d"`` gives ``a=b`` and ``c=d``. Any other value is one item.
    """
    if not (value.startswith('"') and value.endswith('"')):
        return [value]
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == " " and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def parse_metadata_condition(item: str) -> MetadataCondition | None:
    """Parse ``key<op>value``; return None without an operator or with an empty side.

    The operator is the first of ``= != < <= > >=`` in the item, so values
    may contain "=". Spaces around the key and the value are dropped.
    """
    match = _OPERATOR_START.search(item)
    if match is None:
        return None
    start = match.start()
    operator = item[start : start + 2]
    if operator not in ("!=", "<=", ">="):
        operator = item[start]
        if operator == "!":
            return None
    key = item[:start].strip(GO_WHITESPACE)
    value = item[start + len(operator) :].strip(GO_WHITESPACE)
    if not key or not value:
        return None
    return MetadataCondition(key, operator, value)


def glob_match(pattern: str, name: str) -> bool:
    """Return whether ``name`` matches the glob ``pattern`` as Go's path.Match does.

    ``*`` matches any run of characters other than "/", ``?`` one character
    other than "/", ``[...]`` one character from a set of characters and
    ``lo-hi`` ranges (``[^...]`` negates it), and ``\\`` makes the next
    character literal. The whole name must match. A malformed pattern, such
    as ``[a`` or one ending in ``\\``, matches nothing.
    """
    compiled = _compile_glob(pattern)
    return compiled is not None and compiled.matches(name)


def conflicts(a: str, ra: Requirements, b: str, rb: Requirements) -> bool:
    """Return whether units ``a`` and ``b`` may not share a machine.

    They conflict when a Conflicts pattern of either one matches the other's
    name. A unit never conflicts with itself.
    """
    if a == b:
        return False
    matcher = ra._conflict_matcher
    if matcher is not None and matcher(b):
        return True
    matcher = rb._conflict_matcher
    return matcher is not None and matcher(a)


def replaces(a: str, ra: Requirements, b: str) -> bool:
    """Return whether a Replaces pattern of unit ``a`` matches unit ``b``.

    A unit never replaces itself.
    """
    matcher = ra._replace_matcher
    return matcher is not None and a != b and matcher(b)


def machine_id_matches(req: Requirements, machine_id: str) -> bool:
    """Return whether the machine fits the unit's MachineID.

    It fits when no MachineID is given, or when the MachineID is the
    machine's full ID or its first 8 characters.
    """
    required = req.machine_id
    return not required or machine_id == required or machine_id[:8] == required


def metadata_matches(req: Requirements, metadata: Mapping[str, str]) -> bool:
    """Return whether a machine with ``metadata`` meets every MachineMetadata condition.

    Keys combine with AND. On one key, the ``=`` values are alternatives
    (any one of them will do, as in the original), and every ``!=``, ``<``,
    ``<=``, ``>`` and ``>=`` condition must hold as well. A key the machine
    does not have fails every condition on it, ``!=`` included.
    """
    for key, allowed, checks in req._metadata_groups:
        actual = metadata.get(key)
        if actual is None:
            return False
        if allowed is not None and actual not in allowed:
            return False
        for compare, number, value in checks:
            if number is not None:
                actual_number = _parse_number(actual)
                if actual_number is not None:
                    if not compare(actual_number, number):
                        return False
                    continue
            if not compare(actual, value):
                return False
    return True


def validate_options(name: str, unit_file: UnitFile) -> list[str]:
    """Check the [X-Fleet] options of unit ``name`` before it is submitted.

    Raise UnitFileError for a line systemd would truncate and for option
    combinations the original rejected, with a message that names the fix.
    Return warnings for what is accepted but likely wrong: unknown or
    deprecated option names, items that are ignored, MachineOf names that no
    unit can have. The unit name itself is checked by validate_unit_name.
    Errors and warnings do not name the unit, so the caller adds it once.
    """
    _check_serialized_lines(unit_file)
    req = requirements_of(name, unit_file)
    _check_unresolvable(req)
    _check_combinations(req)
    return _warnings(name, unit_file, req)


def _check_serialized_lines(unit_file: UnitFile) -> None:
    # A unit built from options rather than parsed text can still hold a
    # value too long for systemd, so the normalized text is checked too.
    for line in unit_file.serialize().split("\n"):
        if len(line) * 4 >= LINE_MAX and len(encode_utf8(line)) >= LINE_MAX:
            raise UnitFileError(
                f"the line {line[:40]!r}... is too long for systemd "
                f"(max {LINE_MAX} bytes with the line end). Split the value over "
                "several lines ending in '\\'"
            )


def _check_unresolvable(req: Requirements) -> None:
    for peer in req.peers:
        for pattern in req.conflicts:
            if glob_match(pattern, peer):
                raise UnitFileError(
                    f"unresolvable requirements: MachineOf peer {peer!r} "
                    f"matches Conflicts pattern {pattern!r}, so no machine can "
                    "ever fit. Remove the peer or narrow the pattern"
                )
        for pattern in req.replaces:
            if glob_match(pattern, peer):
                raise UnitFileError(
                    f"unresolvable requirements: MachineOf peer {peer!r} "
                    f"matches Replaces pattern {pattern!r}, so the unit would "
                    "push away the unit it must run next to. Remove one of them"
                )


# The original's forbidden pairs, in its order, as (present?, message) checks.
_FORBIDDEN_PAIRS: tuple[tuple[Callable[[Requirements], bool], str], ...] = (
    (
        lambda r: bool(r.machine_id and r.peers),
        "MachineID cannot be used with MachineOf. Pin the peer with the same "
        "MachineID instead, or drop one of them",
    ),
    (
        lambda r: bool(r.machine_id and r.conflicts),
        "MachineID cannot be used with Conflicts. Drop one of them",
    ),
    (
        lambda r: bool(r.machine_id) and r.is_global,
        "MachineID cannot be used with Global=true. Use MachineMetadata to pick "
        "the machines of a global unit, or drop Global",
    ),
    (
        lambda r: bool(r.machine_id and r.replaces),
        "MachineID cannot be used with Replaces. Drop one of them",
    ),
    (
        lambda r: r.is_global and bool(r.peers),
        "Global=true cannot be used with MachineOf. A global unit runs on every "
        "machine that fits, so drop MachineOf or Global",
    ),
    (
        lambda r: r.is_global and bool(r.replaces),
        "Global=true cannot be used with Replaces. Drop one of them",
    ),
    (
        lambda r: bool(r.conflicts and r.replaces),
        "Conflicts cannot be used with Replaces. Drop one of them",
    ),
)


def _check_combinations(req: Requirements) -> None:
    for is_present, message in _FORBIDDEN_PAIRS:
        if is_present(req):
            raise UnitFileError(f"{message}")


def _warnings(name: str, unit_file: UnitFile, req: Requirements) -> list[str]:
    warnings: list[str] = []
    for key in req.unknown_keys:
        warnings.append(
            f"unrecognized option {key!r} in [X-Fleet] section is ignored. "
            "Known options: "
            + ", ".join(sorted(KNOWN_OPTIONS - DEPRECATED_NAMES.keys()))
        )

    values = _fleet_values(name, unit_file)
    for key, new_name in DEPRECATED_NAMES.items():
        if key in values:
            warnings.append(
                f"[X-Fleet] option {key} is deprecated since fleet v0.8.0. "
                f"Use {new_name}"
            )
    source = _machine_id_source(values)
    if source is not None:
        key, found = source
        if key == "X-ConditionMachineBootID":
            warnings.append(
                "X-ConditionMachineBootID is compared with machine IDs, "
                "which never equal a boot ID, so this unit cannot be placed. Use "
                "MachineID"
            )
        if len(found) > 1:
            warnings.append(
                f"{key} is given {len(found)} times and only the first "
                f"({found[0]!r}) is used. Remove the others"
            )

    for key in _LIST_OPTIONS:
        if "" in values.get(key, ()):
            warnings.append(f"an empty {key} value is ignored")

    for key in (MACHINE_METADATA, "X-ConditionMachineMetadata"):
        for item in values.get(key, ()):
            if item and parse_metadata_condition(item) is None:
                warnings.append(
                    f"{key} item {item!r} is ignored because it is not "
                    "key=value (or key!=value, key<value, key<=value, key>value, "
                    "key>=value) with a non-empty key and value"
                )

    for peer in req.peers:
        if "%i" in peer:
            continue  # a template's peer, checked when an instance is submitted
        try:
            validate_unit_name(peer)
        except UnitNameError as err:
            warnings.append(
                f"MachineOf {peer!r} can never be met because it is not a "
                f"valid unit name ({err}). List several peers as separate "
                'MachineOf lines or as MachineOf="a.service" "b.service"'
            )

    for key, patterns in ((CONFLICTS, req.conflicts), (REPLACES, req.replaces)):
        for pattern in patterns:
            if _compile_glob(pattern) is None:
                warnings.append(
                    f"{key} pattern {pattern!r} is malformed and matches "
                    "nothing. Check its [ ] brackets and trailing backslash"
                )

    global_values = values.get(GLOBAL, [])
    if global_values and global_values[-1].lower() not in _TRUE_VALUES | _FALSE_VALUES:
        warnings.append(
            f"Global value {global_values[-1]!r} is not a boolean and counts "
            "as false. Write Global=true or Global=false"
        )
    return warnings


# Glob patterns -------------------------------------------------------------

_STAR = "*"
_ANY = "?"


@dataclass(frozen=True)
class _CharClass:
    negated: bool
    ranges: tuple[tuple[str, str], ...]

    def contains(self, char: str) -> bool:
        inside = any(low <= char <= high for low, high in self.ranges)
        return inside != self.negated

    def regex(self) -> str:
        parts = [
            _class_escape(low)
            if low == high
            else f"{_class_escape(low)}-{_class_escape(high)}"
            for low, high in self.ranges
            if low <= high
        ]
        if not parts:
            return "(?s:.)" if self.negated else "(?!)"
        return f"[{'^' if self.negated else ''}{''.join(parts)}]"


# A parsed pattern element: "*", "?", a literal character, or a class. A
# literal is a 1-tuple so that "*" and "?" as literals stay distinct.
_Token = str | tuple[str] | _CharClass


@dataclass(frozen=True)
class _Glob:
    tokens: tuple[_Token, ...]
    regex: str
    literal: str | None  # the pattern as plain text when it has no wildcards
    compiled: re.Pattern[str]

    def matches(self, name: str) -> bool:
        if self.literal is not None:
            return name == self.literal
        if "/" in name:
            return _match_stepwise(self.tokens, name)
        return self.compiled.fullmatch(name) is not None


def _class_escape(char: str) -> str:
    return "\\" + char if char in "\\]^-[" else char


@lru_cache(maxsize=65536)
def _compile_glob(pattern: str) -> _Glob | None:
    """Parse a glob pattern once; None if Go's path.Match would call it malformed."""
    tokens = _tokenize_glob(pattern)
    if tokens is None:
        return None
    literal = None
    if all(isinstance(token, tuple) for token in tokens):
        literal = "".join(token[0] for token in tokens if isinstance(token, tuple))
    parts: list[str] = []
    for token in tokens:
        if isinstance(token, _CharClass):
            parts.append(token.regex())
        elif isinstance(token, tuple):
            parts.append(re.escape(token[0]))
        else:
            parts.append("[^/]*" if token == _STAR else "[^/]")
    regex = "".join(parts)
    return _Glob(tuple(tokens), regex, literal, re.compile(regex, re.DOTALL))


def _tokenize_glob(pattern: str) -> list[_Token] | None:
    tokens: list[_Token] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            if not tokens or tokens[-1] != _STAR:
                tokens.append(_STAR)
            index += 1
        elif char == "?":
            tokens.append(_ANY)
            index += 1
        elif char == "\\":
            if index + 1 >= len(pattern):
                return None
            tokens.append((pattern[index + 1],))
            index += 2
        elif char == "[":
            parsed = _parse_class(pattern, index + 1)
            if parsed is None:
                return None
            char_class, index = parsed
            tokens.append(char_class)
        else:
            tokens.append((char,))
            index += 1
    return tokens


def _parse_class(pattern: str, index: int) -> tuple[_CharClass, int] | None:
    """Parse a class whose "[" precedes ``index``; return it and the index after "]"."""
    negated = index < len(pattern) and pattern[index] == "^"
    if negated:
        index += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if index < len(pattern) and pattern[index] == "]" and ranges:
            return _CharClass(negated, tuple(ranges)), index + 1
        parsed = _class_char(pattern, index)
        if parsed is None:
            return None
        low, index = parsed
        high = low
        if pattern[index] == "-":
            parsed = _class_char(pattern, index + 1)
            if parsed is None:
                return None
            high, index = parsed
        ranges.append((low, high))


def _class_char(pattern: str, index: int) -> tuple[str, int] | None:
    """Read one possibly escaped class character; None where Go reports a bad pattern.

    As in Go, a class character must be followed by more pattern, so a class
    left open at the end of the pattern is malformed.
    """
    if index >= len(pattern) or pattern[index] in "-]":
        return None
    if pattern[index] == "\\":
        index += 1
        if index >= len(pattern):
            return None
    if index + 1 >= len(pattern):
        return None
    return pattern[index], index + 1


def _match_stepwise(tokens: tuple[_Token, ...], name: str) -> bool:
    """Match the way Go's path.Match steps through a pattern.

    Each run of tokens after a star is matched at the first position where it
    fits, without trying later ones. That differs from a regular expression
    only when a class matches "/", so this runs only for names containing one
    (never a valid unit name).
    """
    chunks: list[tuple[bool, tuple[_Token, ...]]] = []
    star = False
    current: list[_Token] = []
    for token in tokens:
        if token == _STAR:
            if current or star:
                chunks.append((star, tuple(current)))
            star, current = True, []
        else:
            current.append(token)
    chunks.append((star, tuple(current)))

    for position, (star, chunk) in enumerate(chunks):
        is_last = position == len(chunks) - 1
        if star and not chunk:
            return "/" not in name
        rest = _match_chunk(chunk, name)
        if rest is not None and (not rest or not is_last):
            name = rest
            continue
        if not star:
            return False
        for skip, char in enumerate(name):
            if char == "/":
                return False
            rest = _match_chunk(chunk, name[skip + 1 :])
            if rest is not None and (not rest or not is_last):
                name = rest
                break
        else:
            return False
    return not name


def _match_chunk(chunk: tuple[_Token, ...], name: str) -> str | None:
    """Match star-free tokens at the start of name; return the rest, or None."""
    index = 0
    for token in chunk:
        if index >= len(name):
            return None
        char = name[index]
        if token == _ANY:
            if char == "/":
                return None
        elif isinstance(token, tuple):
            if char != token[0]:
                return None
        elif isinstance(token, _CharClass) and not token.contains(char):
            return None
        index += 1
    return name[index:]
