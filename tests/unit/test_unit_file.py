"""Parsing, serializing and hashing unit files as fleet did."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleetd.errors import UnitFileError
from fleetd.unit import UnitFile, UnitOption

CORPUS = Path(__file__).parent / "corpus"
CORPUS_FILES = sorted(path for path in CORPUS.iterdir() if path.suffix == ".service")


def options(text: str) -> list[tuple[str, str, str]]:
    return [
        (option.section, option.name, option.value)
        for option in UnitFile.parse(text).options
    ]


PARSE_CASES = [
    pytest.param("", [], id="empty file"),
    pytest.param("# only a comment\n", [], id="only a comment"),
    pytest.param("[Service]\n", [], id="section without options"),
    pytest.param(
        "This=Ignored\n[Section]\nKey=Value\n",
        [("Section", "Key", "Value")],
        id="option before first section ignored",
    ),
    pytest.param(
        "garbage [Section]\nKey=Value\n",
        [("Section", "Key", "Value")],
        id="header after garbage on first line",
    ),
    pytest.param(
        "# [Hidden]\n[Section]\nKey=Value\n",
        [("Section", "Key", "Value")],
        id="header inside leading comment",
    ),
    pytest.param(
        "# comment \\\n[Hidden]\nA=1\n[Section]\nKey=Value\n",
        [("Section", "Key", "Value")],
        id="leading comment continued",
    ),
    pytest.param(
        "[S]\n# comment\n; comment\nA=b\n",
        [("S", "A", "b")],
        id="comments",
    ),
    pytest.param(
        "[S]\n  # indented comment\nA=b\n",
        [("S", "A", "b")],
        id="indented comment",
    ),
    pytest.param(
        "[S]\n# comment \\\nA=skipped\nC=d\n",
        [("S", "C", "d")],
        id="comment continued onto next line",
    ),
    pytest.param(
        "[S]\n# comment \\ \nA=skipped\nC=d\n",
        [("S", "C", "d")],
        id="comment continued with one trailing space",
    ),
    pytest.param(
        "[S]\n# comment \\  \nA=b\nC=d\n",
        [("S", "A", "b"), ("S", "C", "d")],
        id="comment not continued with two spaces",
    ),
    pytest.param(
        "[S]\nA=1\nA=2\nB=3\nA=4\n",
        [("S", "A", "1"), ("S", "A", "2"), ("S", "B", "3"), ("S", "A", "4")],
        id="repeated keys kept in order",
    ),
    pytest.param(
        "[A]\nx=1\n[B]\ny=2\n[A]\nz=3\n",
        [("A", "x", "1"), ("B", "y", "2"), ("A", "z", "3")],
        id="repeated section",
    ),
    pytest.param(
        "[S]\n  A  =  b c  \n",
        [("S", "A", "b c")],
        id="spaces around name and value",
    ),
    pytest.param("[S]\nA=\n", [("S", "A", "")], id="empty value"),
    pytest.param(
        "[S]\nA=   \nB=c\n", [("S", "A", ""), ("S", "B", "c")], id="blank value"
    ),
    pytest.param("[S]\n=x\n", [("S", "", "x")], id="empty name"),
    pytest.param("[S]\nA=b=c\n", [("S", "A", "b=c")], id="equals in value"),
    pytest.param("[S]\nA=b # c\n", [("S", "A", "b # c")], id="hash inside value"),
    pytest.param(
        "[S]\n%%% junk [x] = y\n",
        [("S", "%%% junk [x]", "y")],
        id="junk name with equals accepted",
    ),
    pytest.param("[ S ]\nA=b\n", [(" S ", "A", "b")], id="section name kept verbatim"),
    pytest.param("[]\nA=b\n", [("", "A", "b")], id="empty section name"),
    pytest.param("[S]\n   [T]\nA=b\n", [("T", "A", "b")], id="indented section header"),
    pytest.param("[S]   \nA=b\n", [("S", "A", "b")], id="spaces after header"),
    pytest.param(
        "[S]\nA=one \\\n  two\n",
        [("S", "A", "one \\\n  two")],
        id="continuation keeps backslash and newline",
    ),
    pytest.param(
        "[S]\nA=one \\\n  two \\\n  three\nB=4\n",
        [("S", "A", "one \\\n  two \\\n  three"), ("S", "B", "4")],
        id="continuation over three lines",
    ),
    pytest.param(
        "[S]\nA=one \\\n\nB=2\n",
        [("S", "A", "one \\\n"), ("S", "B", "2")],
        id="blank line ends continuation",
    ),
    pytest.param(
        "[S]\nA=one \\\n   \nB=2\n",
        [("S", "A", "one \\\n"), ("S", "B", "2")],
        id="whitespace line ends continuation",
    ),
    pytest.param("[S]\nA=one\\", [("S", "A", "one\\")], id="backslash at end of file"),
    pytest.param(
        "[S]\nA=one\\\n",
        [("S", "A", "one\\\n")],
        id="backslash on last line with newline",
    ),
    pytest.param(
        "[S]\nA=one \\\n# not a comment\n; nor this\nB=2\n",
        [("S", "A", "one \\\n# not a comment"), ("S", "B", "2")],
        id="comment line inside continuation",
    ),
    pytest.param(
        "[S]\nA=one \\\n[NotASection]\n",
        [("S", "A", "one \\\n[NotASection]")],
        id="header inside continuation",
    ),
    pytest.param(
        "[S]\nA=one\\ \nB=2\n",
        [("S", "A", "one\\"), ("S", "B", "2")],
        id="space after backslash ends value",
    ),
    pytest.param(
        "[S]\nA=\u00a0b\u2003\n",
        [("S", "A", "b")],
        id="unicode spaces trimmed as Go does",
    ),
    pytest.param(
        "[S]\nA=b\x1c\n",
        [("S", "A", "b\x1c")],
        id="separator control kept as Go does",
    ),
    pytest.param("\ufeff[S]\nA=b\n", [("S", "A", "b")], id="byte order mark"),
    pytest.param(
        "[S]\r\nA=b\r\nC=one \\\r\n two\r\n",
        [("S", "A", "b"), ("S", "C", "one \\\n two")],
        id="CRLF line ends",
    ),
    pytest.param("[S]\nA=b", [("S", "A", "b")], id="no final newline"),
    pytest.param("[S]\n\t\n \nA=b\n", [("S", "A", "b")], id="whitespace lines"),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert options(text) == expected


ERROR_CASES = [
    pytest.param(
        "[S]\nfoo\n",
        r"^line 2: 'foo' in section \[S\] is not an option because it has no '='\. "
        r"Write it as Name=Value, or start the line with '#' to make it a comment$",
        id="bare word",
    ),
    pytest.param(
        "[S]\nA=b\n  foo bar  ",
        r"^line 3: 'foo bar' in section \[S\] is not an option",
        id="bare words at end of file",
    ),
    pytest.param(
        "[Unit] x\n",
        r"^line 1: unexpected text 'x' after section header \[Unit\]\. "
        r"Put comments and options on lines of their own$",
        id="garbage after header",
    ),
    pytest.param(
        "[S]\nA=b\n[Unit] # comment\n",
        r"^line 3: unexpected text '# comment' after section header \[Unit\]",
        id="comment after header",
    ),
    pytest.param(
        "[Unit]]\n",
        r"^line 1: unexpected text '\]' after section header \[Unit\]",
        id="double closing bracket",
    ),
    pytest.param(
        "[Unit\nA=b]\n",
        r"^line 1: section header '\[Unit' has no closing '\]' on the same line\. "
        r"Write the header as \[Name\] on one line$",
        id="header split over lines",
    ),
    pytest.param(
        "[S]\nA=b\n[Unit",
        r"^line 3: section header '\[Unit' has no closing '\]'",
        id="header unclosed at end of file",
    ),
    pytest.param(
        "[S]\nA\rB=c\n",
        r"^line 2: option name 'A\\rB' contains a carriage return\. Remove it$",
        id="carriage return in name",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERROR_CASES)
def test_parse_error(text: str, message: str) -> None:
    with pytest.raises(UnitFileError, match=message):
        UnitFile.parse(text)


LONG_LINE_ERROR = (
    r"^line {line} is too long: {size} bytes, but at most 2047 fit in systemd's "
    r"2048-byte line limit with the line end\. Split the value over several lines "
    r"ending in '\\'$"
)


@pytest.mark.parametrize(
    ("text", "line", "size"),
    [
        pytest.param("[S]\nA=" + "x" * 2046 + "\n", 2, 2048, id="option"),
        pytest.param("[S]\nA=" + "x" * 3000, 2, 3002, id="option at end of file"),
        pytest.param("[S]\nA=" + "\u00e9" * 1023 + "\n", 2, 2048, id="multibyte"),
        pytest.param("[S]\n#" + "x" * 2047 + "\n", 2, 2048, id="comment"),
        pytest.param("x" * 2048 + "\n[S]\n", 1, 2048, id="before first section"),
        pytest.param(
            "[S]\nA=a \\\n" + "x" * 2048 + "\n", 3, 2048, id="continuation line"
        ),
    ],
)
def test_parse_rejects_long_line(text: str, line: int, size: int) -> None:
    with pytest.raises(
        UnitFileError, match=LONG_LINE_ERROR.format(line=line, size=size)
    ):
        UnitFile.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[S]\nA=" + "x" * 2045 + "\n", id="2047 bytes"),
        pytest.param("[S]\r\nA=" + "x" * 2045 + "\r\n", id="2047 bytes with CRLF"),
        pytest.param("[S]\nA=" + "\u00e9" * 1022 + "x\n", id="2047 bytes multibyte"),
    ],
)
def test_parse_accepts_longest_line(text: str) -> None:
    assert len(UnitFile.parse(text).options) == 1


def test_hash_vector_from_fleet() -> None:
    unit = UnitFile.parse("[Service]\nExecStart=/bin/sleep 100\n")

    assert unit.hash() == "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
    assert unit.short_hash() == "1c6fb6f"


def test_hash_is_sha1_of_serialized_text() -> None:
    unit = UnitFile.parse("[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n")

    expected = hashlib.sha1(
        b"[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n"
    )
    assert unit.hash() == expected.hexdigest()


def test_hash_ignores_comments_and_spacing() -> None:
    plain = UnitFile.parse("[Service]\nExecStart=/bin/sleep 100\n")
    decorated = UnitFile.parse(
        "# header\n\n[Service]  \n; note\n   ExecStart =  /bin/sleep 100   \n\n"
    )

    assert decorated.hash() == plain.hash()


def test_hash_depends_on_option_order() -> None:
    first = UnitFile.parse("[S]\nA=1\nB=2\n")
    second = UnitFile.parse("[S]\nB=2\nA=1\n")

    assert first.hash() != second.hash()


def test_hash_of_surrogate_escaped_bytes() -> None:
    raw = b"[S]\nA=\xff\xfe\n"
    unit = UnitFile.parse(raw.decode("utf-8", "surrogateescape"))

    assert unit.hash() == hashlib.sha1(raw).hexdigest()


def test_serialize_groups_sections_in_first_seen_order() -> None:
    unit = UnitFile.parse("[A]\nx=1\n[B]\ny=2\n[A]\nz=3\n[C]\n[B]\nw=4\n")

    assert unit.serialize() == "[A]\nx=1\nz=3\n\n[B]\ny=2\nw=4\n"


def test_serialize_of_no_options_is_empty() -> None:
    assert UnitFile.parse("[Unit]\n# nothing\n").serialize() == ""
    assert UnitFile().hash() == hashlib.sha1(b"").hexdigest()


def test_serialize_keeps_continuations() -> None:
    unit = UnitFile.parse("[S]\nA=one \\\n  two\nB=x \\\n\n")

    assert unit.serialize() == "[S]\nA=one \\\n  two\nB=x \\\n\n"


def test_unit_file_from_options() -> None:
    unit = UnitFile((UnitOption("Service", "ExecStart", "/bin/sleep 100"),))

    assert unit.hash() == "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
    assert unit == UnitFile.parse("[Service]\nExecStart=/bin/sleep 100\n")


def test_values_and_sections() -> None:
    unit = UnitFile.parse(
        "[Unit]\nDescription=first\nAfter=a\n[Service]\nExecStart=x\n"
        "[Unit]\nDescription=second\n"
    )

    assert unit.values("Unit", "Description") == ["first", "second"]
    assert unit.values("Unit", "Missing") == []
    assert unit.values("Missing", "Description") == []
    assert unit.sections() == ("Unit", "Service")
    assert unit.section_options("Service") == (UnitOption("Service", "ExecStart", "x"),)


def test_description_is_last_value() -> None:
    unit = UnitFile.parse("[Unit]\nDescription=first\nDescription=second\n")

    assert unit.description == "second"
    assert UnitFile.parse("[Service]\nExecStart=x\n").description == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Service]\nExecStart=x\n[Install]\nWantedBy=multi-user.target\n", True),
        ("[Service]\nExecStart=x\n[Install]\n", False),
        ("[Service]\nExecStart=x\n", False),
        ("[Service]\nExecStart=x\n# [Install]\n# WantedBy=x\n", False),
    ],
)
def test_has_install_section(text: str, expected: bool) -> None:
    assert UnitFile.parse(text).has_install_section is expected


def test_corpus_is_present() -> None:
    assert len(CORPUS_FILES) == 17


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.name)
def test_corpus_round_trip(path: Path) -> None:
    unit = UnitFile.parse(path.read_text())
    again = UnitFile.parse(unit.serialize())

    assert unit.options
    assert again == unit
    assert again.hash() == unit.hash()
    assert unit.hash() == hashlib.sha1(unit.serialize().encode()).hexdigest()


def test_corpus_discovery_serialized_by_hand() -> None:
    unit = UnitFile.parse((CORPUS / "fleet-fixture-discovery.service").read_text())

    expected = (
        "[Unit]\nBindsTo=hello.service\n\n"
        "[Service]\nExecStart=/bin/bash -c "
        '"while true; do echo discovery.service unit file; sleep 1; done"\n\n'
        "[Install]\nWantedBy=hello.service\n\n"
        "[X-Fleet]\nMachineOf=hello.service\n"
    )
    assert unit.serialize() == expected


def test_corpus_kafka_continuation_and_comments() -> None:
    unit = UnitFile.parse((CORPUS / "kafka@.service").read_text())

    (exec_start,) = unit.values("Service", "ExecStart")
    assert exec_start.startswith("/usr/bin/docker run \\\n  --name kafka-%i \\\n")
    assert exec_start.endswith("\\\n    example/kafka:${RELEASE}")
    assert unit.values("Service", "ExecStartPost") == []
    assert unit.values("X-Fleet", "MachineMetadata") == ['"role=control"']
    assert unit.sections() == ("Unit", "Service", "X-Fleet", "Install")


def test_corpus_nodeapp_tab_continuation() -> None:
    unit = UnitFile.parse((CORPUS / "nodeapp@.service").read_text())

    (exec_start,) = unit.values("Service", "ExecStart")
    assert exec_start == (
        "/usr/bin/docker run  --rm --name %p-%i.service \\\n"
        "\t\t--env-file=/etc/environment \\\n"
        "\t\t-p 8000:8000 $IMAGE"
    )
    assert unit.values("Service", "ExecStopPost") == []


def test_corpus_mysql_leading_comments() -> None:
    unit = UnitFile.parse((CORPUS / "mysql-master@.service").read_text())

    assert unit.sections() == ("Unit", "Service", "Install", "X-Fleet")
    assert unit.description == "MySQL Master %p %i"


# Hashes computed by this implementation when the corpus was added; they
# catch any later change to parsing or serialization that moves a hash.
CORPUS_HASHES = {
    "apache-discovery.1.service": "fa1c4e247a1b",
    "fleet-fixture-discovery.service": "6959f458ac2e",
    "galera@.service": "997248a38a16",
    "kafka@.service": "284cd7d81c1e",
    "nodeapp@.service": "9f0e4737934b",
    "zookeeper@.service": "36093d61389e",
}


@pytest.mark.parametrize(("name", "prefix"), sorted(CORPUS_HASHES.items()))
def test_corpus_hash_unchanged(name: str, prefix: str) -> None:
    assert UnitFile.parse((CORPUS / name).read_text()).hash().startswith(prefix)
