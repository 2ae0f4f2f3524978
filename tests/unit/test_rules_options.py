"""Reading [X-Fleet] options into Requirements, and checking them before submit."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetd.errors import UnitFileError
from fleetd.rules import (
    NO_REQUIREMENTS,
    MetadataCondition,
    Requirements,
    parse_metadata_condition,
    requirements_of,
    requirements_of_text,
    split_multivalue,
    validate_options,
)
from fleetd.unit import UnitFile, UnitOption

CORPUS = Path(__file__).parent / "corpus"


def fleet(*lines: str) -> UnitFile:
    return UnitFile.parse(
        "[Service]\nExecStart=/bin/true\n[X-Fleet]\n" + "\n".join(lines)
    )


def reqs(*lines: str, name: str = "web.service") -> Requirements:
    return requirements_of(name, fleet(*lines))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a=b", ["a=b"]),
        ("a=b c=d", ["a=b c=d"]),
        ('"a=b" "c=d"', ["a=b", "c=d"]),
        ('"region=us-east-1" "diskType=SSD"', ["region=us-east-1", "diskType=SSD"]),
        ('"a b" "c"', ["a b", "c"]),
        ('"foo\\"bar"', ["foo\\bar"]),
        ('"bar" "', ["bar", ""]),
        ('"', [""]),
        ('""', [""]),
        ('"a"  "b"', ["a", "", "b"]),
        ('"a"b"c"', ["abc"]),
        ('a "b"', ['a "b"']),
        ('"a" b', ['"a" b']),
        ("", [""]),
    ],
)
def test_split_multivalue(value: str, expected: list[str]) -> None:
    assert split_multivalue(value) == expected


def test_no_x_fleet_section() -> None:
    unit = UnitFile.parse("[Service]\nExecStart=/bin/true\n")

    assert requirements_of("web.service", unit) == Requirements()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["MachineID=abc"], "abc"),
        (["X-ConditionMachineID=abc"], "abc"),
        (["X-ConditionMachineBootID=abc"], "abc"),
        (["MachineID=abc", "MachineID=def"], "abc"),
        (['MachineID="abc" "def"'], "abc"),
        (["X-ConditionMachineID=old", "MachineID=new"], "new"),
        (["X-ConditionMachineBootID=boot", "X-ConditionMachineID=old"], "old"),
        (["MachineID=", "X-ConditionMachineID=old"], "old"),
        (["MachineID="], ""),
        ([], ""),
    ],
)
def test_machine_id(lines: list[str], expected: str) -> None:
    assert reqs(*lines).machine_id == expected


def test_peers_merge_both_names() -> None:
    result = reqs(
        "X-ConditionMachineOf=old.service",
        "MachineOf=a.service",
        'MachineOf="b.service" "c.service"',
        "MachineOf=a.service",
        "MachineOf=",
    )

    assert result.peers == ("a.service", "b.service", "c.service", "old.service")


def test_peers_are_not_split_at_spaces() -> None:
    assert reqs("MachineOf=a.service b.service").peers == ("a.service b.service",)


def test_conflicts_split_and_accumulate() -> None:
    result = reqs(
        "Conflicts=a.service b.service",
        "X-Conflicts=old*.service",
        "Conflicts=c.service\tb.service",
        'Conflicts="d.service e.service" "f.service"',
    )

    assert result.conflicts == (
        "a.service",
        "b.service",
        "c.service",
        "d.service",
        "e.service",
        "f.service",
        "old*.service",
    )


def test_replaces_not_split() -> None:
    result = reqs("Replaces=a.service b.service", 'Replaces="c*.service" "d.service"')

    assert result.replaces == ("a.service b.service", "c*.service", "d.service")


def test_metadata_merges_both_names() -> None:
    result = reqs(
        "MachineMetadata=region=us",
        'X-ConditionMachineMetadata="disk=ssd" "cores>=4"',
        'MachineMetadata="region=eu" "region!=ap"',
    )

    assert result.metadata == (
        MetadataCondition("region", "=", "us"),
        MetadataCondition("region", "=", "eu"),
        MetadataCondition("region", "!=", "ap"),
        MetadataCondition("disk", "=", "ssd"),
        MetadataCondition("cores", ">=", "4"),
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("a=b", MetadataCondition("a", "=", "b")),
        ("a!=b", MetadataCondition("a", "!=", "b")),
        ("a<b", MetadataCondition("a", "<", "b")),
        ("a<=b", MetadataCondition("a", "<=", "b")),
        ("a>b", MetadataCondition("a", ">", "b")),
        ("a>=b", MetadataCondition("a", ">=", "b")),
        ("a=b=c", MetadataCondition("a", "=", "b=c")),
        ("a==b", MetadataCondition("a", "=", "=b")),
        ("a>=<b", MetadataCondition("a", ">=", "<b")),
        (" region = us ", MetadataCondition("region", "=", "us")),
        ("a", None),
        ("=b", None),
        ("a=", None),
        ("a!b", None),
        ("a!", None),
        ("a>=", None),
        ("", None),
    ],
)
def test_parse_metadata_condition(
    item: str, expected: MetadataCondition | None
) -> None:
    assert parse_metadata_condition(item) == expected


def test_malformed_metadata_ignored() -> None:
    result = reqs('MachineMetadata="region" "=x" "disk=" "ok=1"')

    assert result.metadata == (MetadataCondition("ok", "=", "1"),)


def test_metadata_condition_rejects_unknown_operator() -> None:
    with pytest.raises(ValueError, match="unknown metadata operator '=='"):
        MetadataCondition("a", "==", "b")


def test_metadata_condition_as_text() -> None:
    assert str(MetadataCondition("cores", ">=", "4")) == "cores>=4"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["Global=true"], True),
        (["Global=TRUE"], True),
        (["Global=yes"], True),
        (["Global=1"], True),
        (["Global=on"], True),
        (["Global=t"], True),
        (["Global=T"], True),
        (["Global=false"], False),
        (["Global=y"], False),
        (["Global=enabled"], False),
        (["Global="], False),
        (["Global=true", "Global=false"], False),
        (["Global=false", "Global=true"], True),
        (["Global=true", "Global="], False),
        (['Global="false" "true"'], True),
        ([], False),
    ],
)
def test_global(lines: list[str], expected: bool) -> None:
    assert reqs(*lines).is_global is expected


def test_unknown_keys_in_first_seen_order() -> None:
    result = reqs("Foo=1", "MachineOf=a.service", "Bar=2", "Foo=3")

    assert result.unknown_keys == ("Foo", "Bar")


def test_other_sections_ignored() -> None:
    unit = UnitFile.parse("[Unit]\nConflicts=a.service\nMachineID=x\n[X-Fleet]\n")

    assert requirements_of("web.service", unit) == Requirements()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("web@1.service", "%n", "web@1.service"),
        ("web@1.service", "%N", "web@1"),
        ("web@1.service", "%p", "web"),
        ("web@1.service", "%i", "1"),
        ("web@a@b.service", "%i", "a@b"),
        ("web.1.service", "%n %N %p %i|", "web.1.service web.1 web.1 |"),
        ("web@1.service", "db@%i.service", "db@1.service"),
        ("web@1.service", "%p-%i", "web-1"),
        ("web@1.service", "%%i", "%1"),
        ("web@1.service", "%m %H %%", "%m %H %%"),
        ("web@.service", "db@%i.service", "db@%i.service"),
        ("web@.service", "%p %N", "web web@"),
        ("web", "%n %i", "%n %i"),
    ],
)
def test_specifiers(name: str, value: str, expected: str) -> None:
    unit = UnitFile((UnitOption("X-Fleet", "MachineOf", value),))

    assert requirements_of(name, unit).peers == (expected,)


def test_specifiers_in_every_option() -> None:
    result = reqs(
        "MachineID=%i",
        "MachineOf=vol@%i.service",
        "Conflicts=%p@*.service",
        "MachineMetadata=host=%i",
        "Replaces=old-%i.service",
        name="web@m1.service",
    )

    assert result.machine_id == "m1"
    assert result.peers == ("vol@m1.service",)
    assert result.conflicts == ("web@*.service",)
    assert result.metadata == (MetadataCondition("host", "=", "m1"),)
    assert result.replaces == ("old-m1.service",)


def test_requirements_of_corpus_units() -> None:
    kafka = UnitFile.parse((CORPUS / "kafka@.service").read_text())
    result = requirements_of("kafka@2.service", kafka)

    assert result == Requirements(
        peers=("kafka.volumes@2.service",),
        conflicts=("kafka@*.service",),
        metadata=(MetadataCondition("role", "=", "control"),),
    )


def test_requirements_of_text_matches_parsed_file() -> None:
    text = (CORPUS / "kafka@.service").read_text()

    from_text = requirements_of_text("kafka@2.service", text)

    assert from_text == requirements_of("kafka@2.service", UnitFile.parse(text))


def test_requirements_of_text_without_section_skips_parsing() -> None:
    # Unparsable on purpose: without an [X-Fleet] header the text is not read.
    text = "[Service]\nnot an option\n"

    assert requirements_of_text("web.service", text) is NO_REQUIREMENTS


def test_units_with_equal_options_share_requirements() -> None:
    first = reqs("Conflicts=web*.service", name="web1.service")
    second = reqs("Conflicts=web*.service", name="web2.service")

    assert first is second


def test_specifiers_keep_requirements_apart() -> None:
    first = reqs("Conflicts=%p*.service", name="web.service")
    second = reqs("Conflicts=%p*.service", name="db.service")

    assert first.conflicts == ("web*.service",)
    assert second.conflicts == ("db*.service",)


# validate_options --------------------------------------------------------


COMBINATION_ERRORS = [
    pytest.param(
        ["MachineID=abc", "MachineOf=db.service"],
        r"^MachineID cannot be used with MachineOf\. Pin the peer with "
        r"the same MachineID instead, or drop one of them$",
        id="MachineID and MachineOf",
    ),
    pytest.param(
        ["X-ConditionMachineID=abc", "X-ConditionMachineOf=db.service"],
        r"MachineID cannot be used with MachineOf",
        id="deprecated MachineID and MachineOf",
    ),
    pytest.param(
        ["MachineID=abc", "Conflicts=db.service"],
        r"^MachineID cannot be used with Conflicts\. Drop one of them$",
        id="MachineID and Conflicts",
    ),
    pytest.param(
        ["MachineID=abc", "Global=true"],
        r"^MachineID cannot be used with Global=true\. Use "
        r"MachineMetadata to pick the machines of a global unit, or drop Global$",
        id="MachineID and Global",
    ),
    pytest.param(
        ["MachineID=abc", "Replaces=db.service"],
        r"^MachineID cannot be used with Replaces\. Drop one of them$",
        id="MachineID and Replaces",
    ),
    pytest.param(
        ["Global=true", "MachineOf=db.service"],
        r"^Global=true cannot be used with MachineOf\. A global unit "
        r"runs on every machine that fits, so drop MachineOf or Global$",
        id="Global and MachineOf",
    ),
    pytest.param(
        ["Global=true", "Replaces=db.service"],
        r"^Global=true cannot be used with Replaces\. Drop one of them$",
        id="Global and Replaces",
    ),
    pytest.param(
        ["Conflicts=a.service", "Replaces=db.service"],
        r"^Conflicts cannot be used with Replaces\. Drop one of them$",
        id="Conflicts and Replaces",
    ),
    pytest.param(
        ["MachineOf=db.service", "Conflicts=d*.service"],
        r"^unresolvable requirements: MachineOf peer 'db\.service' "
        r"matches Conflicts pattern 'd\*\.service', so no machine can ever fit\. "
        r"Remove the peer or narrow the pattern$",
        id="peer matches conflict",
    ),
    pytest.param(
        ["MachineOf=db.service", "Replaces=db.*"],
        r"^unresolvable requirements: MachineOf peer 'db\.service' "
        r"matches Replaces pattern 'db\.\*', so the unit would push away the unit "
        r"it must run next to\. Remove one of them$",
        id="peer matches replaces",
    ),
]


@pytest.mark.parametrize(("lines", "message"), COMBINATION_ERRORS)
def test_validate_rejects_combination(lines: list[str], message: str) -> None:
    with pytest.raises(UnitFileError, match=message):
        validate_options("web.service", fleet(*lines))


@pytest.mark.parametrize(
    "lines",
    [
        ["Global=true", "MachineMetadata=role=web"],
        ["Global=true", "Conflicts=web*.service"],
        ["Global=false", "MachineOf=db.service"],
        ["MachineID=abc", "MachineMetadata=role=web"],
        ["MachineOf=db.service", "Conflicts=cache*.service"],
        ["MachineOf=db.service", "MachineMetadata=role=web"],
        ["Replaces=old.service", "MachineMetadata=role=web"],
    ],
)
def test_validate_accepts_combination(lines: list[str]) -> None:
    assert validate_options("web.service", fleet(*lines)) == []


def test_validate_empty_machine_id_with_global() -> None:
    warnings = validate_options("web.service", fleet("MachineID=", "Global=true"))

    assert warnings == ["an empty MachineID value is ignored"]


def test_validate_accepts_corpus() -> None:
    for path in sorted(CORPUS.glob("*.service")):
        name = path.name.replace("@.", "@1.")
        validate_options(path.name, UnitFile.parse(path.read_text()))
        validate_options(name, UnitFile.parse(path.read_text()))


def test_validate_template_keeps_instance_specifier() -> None:
    unit = UnitFile.parse((CORPUS / "fleet-fixture-pin@.service").read_text())

    assert validate_options("fleet-fixture-pin@.service", unit) == []
    assert requirements_of("fleet-fixture-pin@.service", unit).machine_id == "%i"


def test_validate_template_peer_against_conflict() -> None:
    unit = fleet("MachineOf=db@%i.service", "Conflicts=db@*.service")

    with pytest.raises(UnitFileError, match=r"peer 'db@%i\.service' matches Conflicts"):
        validate_options("web@.service", unit)


def test_validate_rejects_long_line_from_options() -> None:
    unit = UnitFile((UnitOption("Service", "ExecStart", "x" * 2100),))

    with pytest.raises(
        UnitFileError,
        match=r"^the line 'ExecStart=x{30}'\.\.\. is too long for "
        r"systemd \(max 2048 bytes with the line end\)\. Split the value",
    ):
        validate_options("web.service", unit)


WARNING_CASES = [
    pytest.param(
        ["Foo=1"],
        "unrecognized option 'Foo' in [X-Fleet] section is ignored. "
        "Known options: Conflicts, Global, MachineID, MachineMetadata, MachineOf, "
        "Replaces",
        id="unknown option",
    ),
    pytest.param(
        ["X-ConditionMachineOf=db.service"],
        "[X-Fleet] option X-ConditionMachineOf is deprecated since "
        "fleet v0.8.0. Use MachineOf",
        id="deprecated MachineOf",
    ),
    pytest.param(
        ["X-Conflicts=db.service"],
        "[X-Fleet] option X-Conflicts is deprecated since fleet v0.8.0. Use Conflicts",
        id="deprecated Conflicts",
    ),
    pytest.param(
        ["X-ConditionMachineMetadata=a=b"],
        "[X-Fleet] option X-ConditionMachineMetadata is deprecated "
        "since fleet v0.8.0. Use MachineMetadata",
        id="deprecated MachineMetadata",
    ),
    pytest.param(
        ["X-ConditionMachineID=abc"],
        "[X-Fleet] option X-ConditionMachineID is deprecated since "
        "fleet v0.8.0. Use MachineID",
        id="deprecated MachineID",
    ),
    pytest.param(
        ["MachineID=abc", "MachineID=def"],
        "MachineID is given 2 times and only the first ('abc') is "
        "used. Remove the others",
        id="two MachineIDs",
    ),
    pytest.param(
        ["MachineOf="],
        "an empty MachineOf value is ignored",
        id="empty MachineOf",
    ),
    pytest.param(
        ["MachineMetadata=region"],
        "MachineMetadata item 'region' is ignored because it is not "
        "key=value (or key!=value, key<value, key<=value, key>value, key>=value) "
        "with a non-empty key and value",
        id="metadata without operator",
    ),
    pytest.param(
        ["MachineOf=a.service b.service"],
        "MachineOf 'a.service b.service' can never be met because it "
        "is not a valid unit name (invalid character ' ' in unit name "
        "'a.service b.service'. Use only letters, digits and the characters "
        ": - _ . \\ @). List several peers as separate MachineOf lines or as "
        'MachineOf="a.service" "b.service"',
        id="peer with space",
    ),
    pytest.param(
        ["Conflicts=db[.service"],
        "Conflicts pattern 'db[.service' is malformed and matches "
        "nothing. Check its [ ] brackets and trailing backslash",
        id="malformed conflict",
    ),
    pytest.param(
        ["Replaces=db\\"],
        "Replaces pattern 'db\\\\' is malformed and matches nothing. "
        "Check its [ ] brackets and trailing backslash",
        id="malformed replaces",
    ),
    pytest.param(
        ["Global=enabled"],
        "Global value 'enabled' is not a boolean and counts as false. "
        "Write Global=true or Global=false",
        id="Global not boolean",
    ),
]


@pytest.mark.parametrize(("lines", "warning"), WARNING_CASES)
def test_validate_warns(lines: list[str], warning: str) -> None:
    assert validate_options("web.service", fleet(*lines)) == [warning]


def test_validate_warns_boot_id() -> None:
    warnings = validate_options("web.service", fleet("X-ConditionMachineBootID=b0"))

    assert warnings == [
        "[X-Fleet] option X-ConditionMachineBootID is deprecated "
        "since fleet v0.8.0. Use MachineID",
        "X-ConditionMachineBootID is compared with machine IDs, which "
        "never equal a boot ID, so this unit cannot be placed. Use MachineID",
    ]


def test_validate_boot_id_unused_when_machine_id_given() -> None:
    warnings = validate_options(
        "web.service", fleet("MachineID=abc", "X-ConditionMachineBootID=b0")
    )

    assert len(warnings) == 1
    assert "is deprecated" in warnings[0]
