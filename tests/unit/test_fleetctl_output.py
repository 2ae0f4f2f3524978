"""Tables, --fields and column formatting of fleetctl."""

from __future__ import annotations

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetctl.output import (
    Column,
    format_columns,
    format_metadata,
    format_table,
    machine_legend,
    parse_fields,
    render_table,
    short_hash,
    short_machine_id,
)

# Bytes written by Go's text/tabwriter with Init(w, 0, 8, 1, '\t', 0), the
# original fleetctl's settings, for the input lines on the left. The first
# case is the list-units example of the original's documentation.
TABWRITER_CASES = [
    (
        [
            "UNIT\tMACHINE\tACTIVE\tSUB",
            "hello.service\t113f16a7.../172.17.8.103\tactive\trunning",
        ],
        "UNIT\t\tMACHINE\t\t\t\tACTIVE\tSUB\n"
        "hello.service\t113f16a7.../172.17.8.103\tactive\trunning\n",
    ),
    # A cell of exactly 7 characters plus the padding fills one tab stop.
    (["abcdefg\tx", "a\ty"], "abcdefg\tx\na\ty\n"),
    # 8 characters plus the padding need a second tab stop.
    (["abcdefgh\tx", "a\ty"], "abcdefgh\tx\na\t\ty\n"),
    # Empty cells are padded to the column width too.
    (["\tb\tc", "long-cell-here\t\tc"], "\t\tb\tc\nlong-cell-here\t\tc\n"),
    # The text after the last tab is not part of a column and is not padded.
    (
        ["a\tshort", "b\ta-much-longer-last-cell"],
        "a\tshort\nb\ta-much-longer-last-cell\n",
    ),
    # A line without a tab ends the column block: the lines after it are
    # aligned on their own.
    (
        ["a-long-first-cell\tx", "no tabs here", "b\ty"],
        "a-long-first-cell\tx\nno tabs here\nb\ty\n",
    ),
    # Lines with fewer cells take part in the columns they have.
    (
        ["a\tbb\tc", "aaaaaaaaaa\tb", "a\tb\tc"],
        "a\t\tbb\tc\naaaaaaaaaa\tb\na\t\tb\tc\n",
    ),
    # Width is counted in characters, not bytes, as Go counts runes.
    (["ééééééé\tx", "a\ty"], "ééééééé\tx\na\ty\n"),
]


@pytest.mark.parametrize(("lines", "expected"), TABWRITER_CASES)
def test_format_table_matches_go_tabwriter(lines: list[str], expected: str) -> None:
    assert format_table(lines) == expected


def test_format_table_empty() -> None:
    assert format_table([]) == ""


def test_short_machine_id() -> None:
    machine_id = "113f16a7e8d24b4d9f0c4bd8c2e1a111"
    assert short_machine_id(machine_id, full=False) == "113f16a7..."
    assert short_machine_id(machine_id, full=True) == machine_id


@pytest.mark.parametrize(
    ("machine_id", "ip", "full", "expected"),
    [
        ("113f16a7e8d24b4d", "172.17.8.103", False, "113f16a7.../172.17.8.103"),
        ("113f16a7e8d24b4d", "172.17.8.103", True, "113f16a7e8d24b4d/172.17.8.103"),
        ("113f16a7e8d24b4d", "", False, "113f16a7..."),
        ("", "172.17.8.103", False, "-"),
    ],
)
def test_machine_legend(machine_id: str, ip: str, full: bool, expected: str) -> None:
    assert machine_legend(machine_id, ip, full) == expected


def test_format_metadata_sorts_keys() -> None:
    assert format_metadata({"region": "eu", "disk": "ssd"}) == "disk=ssd,region=eu"


def test_format_metadata_empty_is_dash() -> None:
    assert format_metadata({}) == "-"


def test_short_hash() -> None:
    unit_hash = "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
    assert short_hash(unit_hash, full=False) == "1c6fb6f"
    assert short_hash(unit_hash, full=True) == unit_hash
    assert short_hash("", full=False) == "-"


COLUMNS: list[Column[tuple[str, str]]] = [
    Column("unit", lambda row, full: row[0]),
    Column("hash", lambda row, full: row[1] if full else row[1][:3]),
]


def test_parse_fields_keeps_given_order() -> None:
    chosen = parse_fields("hash,unit", COLUMNS)
    assert [column.name for column in chosen] == ["hash", "unit"]


def test_parse_fields_empty_value() -> None:
    with pytest.raises(click.ClickException, match=r"^Must define output format"):
        parse_fields("", COLUMNS)


@pytest.mark.parametrize("value", ["foo", "unit,foo", "UNIT", " unit", "unit,"])
def test_parse_fields_unknown_name(value: str) -> None:
    with pytest.raises(click.ClickException, match=r'^Invalid key in output format: "'):
        parse_fields(value, COLUMNS)


def test_parse_fields_error_lists_valid_names() -> None:
    with pytest.raises(click.ClickException, match=r"valid keys are hash,unit$"):
        parse_fields("foo", COLUMNS)


def test_render_table_legend_is_upper_case_names() -> None:
    rows = [("web.service", "abcdef")]
    table = render_table(rows, COLUMNS, full=False, legend=True)
    assert table == "UNIT\t\tHASH\nweb.service\tabc\n"


def test_render_table_without_legend() -> None:
    rows = [("web.service", "abcdef")]
    assert (
        render_table(rows, COLUMNS, full=True, legend=False) == "web.service\tabcdef\n"
    )


@given(
    st.lists(
        st.lists(st.text(alphabet="ab.-/é", max_size=20), min_size=4, max_size=4),
        min_size=1,
        max_size=30,
    )
)
def test_uniform_rows_match_general_layout(rows: list[list[str]]) -> None:
    lines = ["\t".join(row) for row in rows]
    # A line with one cell fewer sends the table through the general path.
    general = format_table([*lines, "x"])
    assert format_table(lines) == general[: -len("x\n")]


@given(
    st.lists(
        st.lists(st.text(alphabet="ab\t.é", max_size=12), min_size=3, max_size=3),
        max_size=20,
    )
)
def test_format_columns_matches_format_table(rows: list[list[str]]) -> None:
    columns = [[row[index] for row in rows] for index in range(3)]
    expected = format_table(["\t".join(row) for row in rows])
    assert format_columns(columns) == expected


def test_format_columns_tab_in_cell_splits_it() -> None:
    columns = [["a", "b\tc"], ["x", "y"]]
    assert format_columns(columns) == format_table(["a\tx", "b\tc\ty"])
    assert format_columns(columns) == "a\tx\nb\tc\ty\n"
