"""Property tests of the unit file parser: round trips and hash stability."""

from __future__ import annotations

import hashlib

from hypothesis import assume, given
from hypothesis import strategies as st

from fleetd.errors import UnitFileError
from fleetd.unit import GO_WHITESPACE, UnitFile, UnitOption

# Characters that mean something to the parser, plus ordinary ones.
TRICKY = 'aZ09 \t=#;[]\\"%@.-\u00e9\u00a0\u3000'

LINE_PIECES = [
    "[Unit]",
    "[X-Fleet]",
    "[ Odd ]",
    "A=b",
    "A = spaced ",
    "B=one \\",
    "  continued \\",
    "  last",
    "# comment",
    "# comment \\",
    "; other comment",
    "",
    "   ",
    "=no name",
    "C=",
    "D=x=y",
    "\t E=tab",
]


def has_dangling_backslash(unit: UnitFile) -> bool:
    # A value ending in a backslash without a newline only comes from a
    # backslash on the very last line. Written out, that backslash continues
    # onto the next line, so such a value cannot round-trip (nor could it in
    # the original).
    return any(option.value.endswith("\\") for option in unit.options)


@given(st.lists(st.sampled_from(LINE_PIECES), max_size=12), st.booleans())
def test_round_trip_of_assembled_lines(lines: list[str], final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    try:
        unit = UnitFile.parse(text)
    except UnitFileError:
        return
    assume(not has_dangling_backslash(unit))

    again = UnitFile.parse(unit.serialize())

    assert again.serialize() == unit.serialize()
    assert again.hash() == unit.hash()
    # Serializing groups a repeated section's options under its first
    # header, so the option order survives only where sections do not repeat.
    if sections_contiguous(unit):
        assert again == unit


def sections_contiguous(unit: UnitFile) -> bool:
    seen: list[str] = []
    for option in unit.options:
        if not seen or seen[-1] != option.section:
            if option.section in seen:
                return False
            seen.append(option.section)
    return True


@given(st.text(alphabet=TRICKY + "\n\r", max_size=80))
def test_round_trip_of_any_text(text: str) -> None:
    try:
        unit = UnitFile.parse(text)
    except UnitFileError:
        return
    assume(not has_dangling_backslash(unit))

    again = UnitFile.parse(unit.serialize())
    assert again.hash() == unit.hash()
    if sections_contiguous(unit):
        assert again == unit


@given(st.text(max_size=200))
def test_parse_raises_only_unit_file_error(text: str) -> None:
    try:
        unit = UnitFile.parse(text)
    except UnitFileError:
        return
    assert len(unit.hash()) == 40


section_names = st.text(alphabet=TRICKY.replace("]", ""), max_size=8)
option_names = st.text(alphabet=TRICKY.replace("=", ""), min_size=1, max_size=8).filter(
    lambda name: name == name.strip(GO_WHITESPACE) and name[0] not in "[#;"
)
value_lines = st.text(alphabet=TRICKY, max_size=12).filter(
    lambda line: line.strip(GO_WHITESPACE) != ""
)


@st.composite
def values(draw: st.DrawFn) -> str:
    """A value as the parser returns it: trimmed, lines joined by backslash-newline."""
    lines = draw(st.lists(value_lines, min_size=0, max_size=3))
    if not lines:
        return ""
    joined = "".join(line + "\\\n" for line in lines[:-1]) + lines[-1]
    value = joined.strip(GO_WHITESPACE)
    assume(not value.endswith("\\"))
    if value and draw(st.booleans()):
        # A backslash on the last line before a blank line: the value keeps
        # the backslash and one newline.
        value += "\\\n"
    return value


unit_options = st.builds(UnitOption, section_names, option_names, values())


@given(st.lists(unit_options, max_size=8))
def test_serialize_then_parse_gives_same_options(options: list[UnitOption]) -> None:
    unit = UnitFile(tuple(options))
    first_seen = {section: index for index, section in enumerate(unit.sections())}
    grouped = sorted(options, key=lambda option: first_seen[option.section])

    again = UnitFile.parse(unit.serialize())

    assert again.options == tuple(grouped)
    assert again.serialize() == unit.serialize()
    assert again.hash() == unit.hash()


@given(st.lists(unit_options, max_size=8), st.data())
def test_hash_ignores_comments_blank_lines_and_indent(
    options: list[UnitOption], data: st.DataObject
) -> None:
    unit = UnitFile(tuple(options))
    lines: list[str] = [data.draw(st.sampled_from(["", "# leading", "junk text"]))]
    section = None
    for option in options:
        if option.section != section:
            lines.append(f"[{option.section}]")
            section = option.section
        lines.append(data.draw(st.sampled_from(["", "  ", "# note", "; note"])))
        indent = data.draw(st.sampled_from(["", " ", "\t"]))
        lines.append(f"{indent}{option.name} = {option.value}")
        if option.value.endswith("\n"):
            lines.append("")
    lines.append(data.draw(st.sampled_from(["", "# trailing"])))
    text = "\n".join(lines) + "\n"

    decorated = UnitFile.parse(text)

    assert decorated.hash() == unit.hash()
    assert unit.hash() == hashlib.sha1(unit.serialize().encode()).hexdigest()
