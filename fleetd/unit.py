"""Unit files and unit names: parse, serialize and hash them as fleet did.

The parser follows the unit file lexer of go-systemd that fleet v1.0 used, and
keeps its quirks where they change the hash. A continued value keeps its
backslashes and newlines, and comment-like lines inside a continued value are
part of the value. ``_parse_options`` lists the few inputs handled
differently. The hash is the SHA1 of the normalized text that
``UnitFile.serialize`` returns, so a unit submitted here has the same hash as
under the original fleet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from fleetd.errors import UnitFileError, UnitNameError

# A line and its line end must fit in 2048 bytes, the LINE_MAX of the systemd
# versions fleet was written for. systemd 252 allows 1 MB, but fleet rejected
# longer lines, and so do we.
LINE_MAX = 2048

# The characters Go's unicode.IsSpace accepts (the Unicode White_Space property).
# Python's str.strip() also strips U+001C..U+001F, which the original kept.
GO_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_COMMENT_STARTS = "#;"
_BOM = "\ufeff"

# The unit types accepted in unit names.
UNIT_TYPES = frozenset(
    {
        "automount",
        "busname",
        "device",
        "mount",
        "path",
        "scope",
        "service",
        "slice",
        "snapshot",
        "socket",
        "swap",
        "target",
        "timer",
    }
)
# Unit types that may be templates (names containing "@").
TEMPLATE_UNIT_TYPES = frozenset({"path", "service", "socket", "target", "timer"})
# The types fleetctl recognises when it decides whether to append ".service".
RECOGNIZED_UNIT_TYPES = (
    "service",
    "socket",
    "timer",
    "path",
    "device",
    "mount",
    "automount",
)
# systemd rejects unit names of 256 bytes or more (its limit counts the NUL);
# the original fleet allowed 256, which systemd then refused.
UNIT_NAME_MAX = 255
_UNIT_NAME_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:-_.\\@"
)


def encode_utf8(text: str) -> bytes:
    """Encode text as UTF-8, restoring bytes that were decoded with surrogateescape.

    Callers that read unit files with ``errors="surrogateescape"`` get the
    file's original bytes back here, so the hash matches fleet's for files
    that are not valid UTF-8.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class UnitOption:
    """One ``Name=Value`` line of a unit file, with the section it is in."""

    section: str
    name: str
    value: str


@dataclass(frozen=True)
class UnitFile:
    """A parsed unit file: its options in file order.

    Repeated options and repeated sections are kept in order. Two unit files
    are the same unit exactly when their hashes are equal.
    """

    options: tuple[UnitOption, ...] = ()

    @classmethod
    def parse(cls, text: str) -> UnitFile:
        """Parse the text of a unit file; raise UnitFileError naming the line."""
        return cls(tuple(_parse_options(text)))

    def serialize(self) -> str:
        """Return the normalized text that the hash covers.

        Options are grouped by section, sections in the order they first
        appear, one ``[Section]`` header each, one ``Name=Value`` line per
        option and a blank line between sections. Comments, blank lines and
        empty sections are gone.
        """
        return self._serialized

    def hash(self) -> str:
        """Return the SHA1 of ``serialize()`` as 40 lowercase hex digits."""
        return self._hash

    def short_hash(self) -> str:
        """Return the first 7 hex digits of the hash, as fleetctl prints it."""
        return self._hash[:7]

    def values(self, section: str, name: str) -> list[str]:
        """Return the values of every ``name`` option in ``section``, in file order."""
        return list(self._index.get((section, name), ()))

    def sections(self) -> tuple[str, ...]:
        """Return the names of the sections that hold options, in first-seen order."""
        return tuple(dict.fromkeys(option.section for option in self.options))

    def section_options(self, section: str) -> tuple[UnitOption, ...]:
        """Return the options of one section, in file order."""
        return tuple(option for option in self.options if option.section == section)

    @property
    def description(self) -> str:
        """The last ``[Unit] Description`` value, or "" without one."""
        found = self._index.get(("Unit", "Description"), ())
        return found[-1] if found else ""

    @property
    def has_install_section(self) -> bool:
        """Whether an ``[Install]`` section contains at least one option.

        An ``[Install]`` header with no options under it does not count,
        because the original kept only options and so never saw it.
        """
        return any(option.section == "Install" for option in self.options)

    @cached_property
    def _serialized(self) -> str:
        by_section: dict[str, list[str]] = {}
        for option in self.options:
            lines = by_section.setdefault(option.section, [])
            lines.append(f"{option.name}={option.value}\n")
        blocks = [
            f"[{section}]\n" + "".join(lines) for section, lines in by_section.items()
        ]
        return "\n".join(blocks)

    @cached_property
    def _hash(self) -> str:
        return hashlib.sha1(encode_utf8(self._serialized)).hexdigest()

    @cached_property
    def _index(self) -> dict[tuple[str, str], tuple[str, ...]]:
        index: dict[tuple[str, str], list[str]] = {}
        for option in self.options:
            index.setdefault((option.section, option.name), []).append(option.value)
        return {key: tuple(values) for key, values in index.items()}


def _parse_options(text: str) -> list[UnitOption]:
    """Split unit file text into options, the way fleet's lexer did.

    It differs from the original only on input that the original mishandled.
    A leading byte-order mark is dropped. CRLF line ends count as LF, because
    the original kept the CR, which broke continuations. Every line is held to
    the length limit, which the original skipped depending on its read buffer.
    A section header must close on its own line, where the original read on
    to the next "]", even across lines.
    """
    if text.startswith(_BOM):
        text = text[1:]
    lines = text.replace("\r\n", "\n").split("\n")
    _check_line_lengths(lines)

    options: list[UnitOption] = []
    section: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]

        if section is None:
            # Before the first header the original skipped any text, up to a
            # "[" or a comment character anywhere on the line.
            start = _find_first(line, "[#;")
            if start == -1:
                index += 1
            elif line[start] == "[":
                section, index = _parse_section_header(lines, index, start)
            else:
                index = _skip_comment(lines, index, start)
            continue

        stripped = line.lstrip(GO_WHITESPACE)
        start = len(line) - len(stripped)
        if not stripped:
            index += 1
        elif stripped[0] == "[":
            section, index = _parse_section_header(lines, index, start)
        elif stripped[0] in _COMMENT_STARTS:
            index = _skip_comment(lines, index, start)
        else:
            option, index = _parse_option(lines, index, start, section)
            options.append(option)
    return options


def _check_line_lengths(lines: list[str]) -> None:
    for number, line in enumerate(lines, start=1):
        # A character takes at most 4 bytes, so shorter lines need no encoding.
        if len(line) * 4 < LINE_MAX:
            continue
        size = len(encode_utf8(line))
        if size >= LINE_MAX:
            raise UnitFileError(
                f"line {number} is too long: {size} bytes, but at most "
                f"{LINE_MAX - 1} fit in systemd's {LINE_MAX}-byte line limit with "
                "the line end. Split the value over several lines ending in '\\'"
            )


def _find_first(line: str, characters: str) -> int:
    positions = [pos for pos in (line.find(char) for char in characters) if pos != -1]
    return min(positions, default=-1)


def _parse_section_header(lines: list[str], index: int, start: int) -> tuple[str, int]:
    """Parse the header whose "[" is at ``start``; return it and the next line index."""
    line = lines[index]
    end = line.find("]", start + 1)
    if end == -1:
        raise UnitFileError(
            f"line {index + 1}: section header {_excerpt(line[start:])} has no "
            "closing ']' on the same line. Write the header as [Name] on one line"
        )
    name = line[start + 1 : end]
    trailing = line[end + 1 :].strip(GO_WHITESPACE)
    if trailing:
        raise UnitFileError(
            f"line {index + 1}: unexpected text {_excerpt(trailing)} after section "
            f"header [{name}]. Put comments and options on lines of their own"
        )
    return name, index + 1


def _skip_comment(lines: list[str], index: int, start: int) -> int:
    """Skip a comment starting at ``start``; return the index of the next line.

    Like the original, a comment line ending in a backslash (one trailing
    space allowed) continues onto the next line, which is skipped too.
    """
    rest = lines[index][start + 1 :]
    while True:
        index += 1
        if rest.endswith(" "):
            rest = rest[:-1]
        if not rest.endswith("\\") or index >= len(lines):
            return index
        rest = lines[index]


def _parse_option(
    lines: list[str], index: int, start: int, section: str
) -> tuple[UnitOption, int]:
    """Parse ``Name=Value`` starting at ``start``; return it and the next line index.

    A value continues onto the next line while its line ends in a backslash.
    The backslash and the newline stay in the value, because fleet hashed
    them, and the next line is taken whole, so a line starting with "#" or
    ";" there is part of the value. systemd 252 instead drops such comment
    lines and replaces each backslash-newline with a space when it loads the
    file. The two agree on the command that runs, and only the hash input
    differs.
    A blank line ends the value, and a value that ends that way keeps one
    trailing newline.
    """
    line = lines[index]
    equals = line.find("=", start)
    if equals == -1:
        raise UnitFileError(
            f"line {index + 1}: {_excerpt(line[start:].rstrip(GO_WHITESPACE))} in "
            f"section [{section}] is not an option because it has no '='. Write it "
            "as Name=Value, or start the line with '#' to make it a comment"
        )
    raw_name = line[start:equals]
    if "\r" in raw_name:
        raise UnitFileError(
            f"line {index + 1}: option name {_excerpt(raw_name)} contains a carriage "
            "return. Remove it"
        )
    name = raw_name.strip(GO_WHITESPACE)

    parts: list[str] = []
    segment = line[equals + 1 :]
    while segment.strip(GO_WHITESPACE):
        parts.append(segment)
        if not segment.endswith("\\"):
            break
        at_end_of_file = index == len(lines) - 1
        if not at_end_of_file:
            parts.append("\n")
        index += 1
        if index >= len(lines):
            break
        segment = lines[index]

    # NOTE: a backslash on the last line of a file without a final newline
    # stays at the end of the value. serialize() then writes a newline after
    # it, so parsing that output continues the value, as it did in fleet.
    value = "".join(parts)
    if value.endswith("\n"):
        value = value.strip(GO_WHITESPACE) + "\n"
    else:
        value = value.strip(GO_WHITESPACE)
    return UnitOption(section, name, value), index + 1


def _excerpt(text: str, limit: int = 60) -> str:
    """Quote text for an error message, shortened to ``limit`` characters."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


@dataclass(frozen=True)
class UnitNameInfo:
    """A unit name split into its parts, as fleet splits it.

    ``web@1.service`` has name ``web@1``, prefix ``web``, instance ``1``,
    template ``web@.service`` and suffix ``service`` (without the dot). A
    name without "@" has prefix equal to name and empty instance and
    template. ``web@.service`` is a template: it has a template and no
    instance.
    """

    full_name: str
    name: str
    prefix: str
    instance: str
    template: str
    suffix: str

    @classmethod
    def from_name(cls, full_name: str) -> UnitNameInfo | None:
        """Split ``full_name`` at its last dot and first "@"; None without a dot."""
        dot = full_name.rfind(".")
        if dot == -1:
            return None
        name, suffix = full_name[:dot], full_name[dot + 1 :]
        at = name.find("@")
        if at == -1:
            return cls(full_name, name, name, "", "", suffix)
        prefix = name[:at]
        return cls(
            full_name, name, prefix, name[at + 1 :], f"{prefix}@.{suffix}", suffix
        )

    @property
    def is_template(self) -> bool:
        """Whether this is a template such as ``web@.service``."""
        return bool(self.template) and not self.instance

    @property
    def is_instance(self) -> bool:
        """Whether this is an instance of a template, such as ``web@1.service``."""
        return bool(self.instance)


def validate_unit_name(name: str) -> None:
    """Raise UnitNameError unless ``name`` is a unit name fleet accepts.

    The rules and the first part of each message are the original's. A name
    has at most 255 bytes and a dot followed by a known unit type. Before that
    dot it has only ``[0-9A-Za-z:-_.\\@]``, and it does not start with "@".
    Templates and instances must be of a type that systemd can instantiate.
    """
    if not name:
        raise UnitNameError(
            "unit name cannot be empty. Give a name such as web.service"
        )
    size = len(encode_utf8(name))
    if size > UNIT_NAME_MAX:
        raise UnitNameError(
            f"unit name exceeds maximum length ({UNIT_NAME_MAX}): {_excerpt(name)} "
            f"is {size} bytes. Shorten it"
        )
    dot = name.rfind(".")
    if dot == -1:
        raise UnitNameError(
            f'unit name must contain ".": {name!r} has no unit type. Add one, '
            f"for example {name + '.service'!r}"
        )
    if dot == len(name) - 1:
        raise UnitNameError(
            f'unit name cannot end in ".": add a unit type to {name!r}, '
            f"for example {name + 'service'!r}"
        )
    suffix = name[dot + 1 :]
    if suffix not in UNIT_TYPES:
        raise UnitNameError(
            f"invalid unit type: {suffix!r} in unit name {name!r}. Use one of "
            + ", ".join(sorted(UNIT_TYPES))
        )
    if "@" in name and suffix not in TEMPLATE_UNIT_TYPES:
        raise UnitNameError(
            f"invalid unit type for template: {suffix!r} in unit name {name!r}. "
            "Templates and their instances must be one of "
            + ", ".join(sorted(TEMPLATE_UNIT_TYPES))
        )
    for char in name[:dot]:
        if char not in _UNIT_NAME_CHARS:
            raise UnitNameError(
                f"invalid character {char!r} in unit name {name!r}. Use only "
                "letters, digits and the characters : - _ . \\ @"
            )
    if name.startswith("@"):
        raise UnitNameError(
            f'unit name cannot start in "@": put the template name before the "@" '
            f"in {name!r}, for example {'web' + name!r}"
        )


def mangle_unit_name(arg: str) -> str:
    """Turn a fleetctl argument (a name or a path) into a unit name.

    The name is the last element of the path, and ".service" is appended unless
    it already ends in one of the types fleetctl recognises, so ``foo`` means
    ``foo.service`` and ``foo.target`` means ``foo.target.service``. Raise
    UnitNameError when the path has no last element (``""``, ``"/"``,
    ``"."``, ``".."``).
    """
    base = _path_base(arg)
    if base in ("", "/", ".", ".."):
        raise UnitNameError(
            f"cannot take a unit name from {arg!r}. Give a unit name or the path "
            "of a unit file"
        )
    if base.endswith(tuple(f".{unit_type}" for unit_type in RECOGNIZED_UNIT_TYPES)):
        return base
    return f"{base}.service"


def _path_base(path: str) -> str:
    """Return the last element of a slash-separated path, like Go's path.Base."""
    if not path:
        return "."
    path = path.rstrip("/")
    if not path:
        return "/"
    return path[path.rfind("/") + 1 :]
