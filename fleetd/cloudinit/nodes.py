"""Typed reading of YAML nodes, so every value keeps the line it came from.

PyYAML's composer gives the node tree before any value is converted, so the
readers here decide each value's type from the key it belongs to. That is how
cloud-config users read their files: a plain ``off`` under a string key is the
string "off", while YAML 1.1 would make it a boolean, and ``permissions:
0644`` is the octal text "0644", not the integer 420.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from fleetd.cloudinit.report import Report

_NULL_TAG = "tag:yaml.org,2002:null"

# YAML 1.1 booleans as cloud-config documented them, matched case-insensitively.
_TRUE = frozenset({"true", "yes", "on", "y"})
_FALSE = frozenset({"false", "no", "off", "n"})


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` pair of a mapping, with the key as written."""

    key: str
    key_node: yaml.Node
    value: yaml.Node
    path: str


def normalize_key(key: str) -> str:
    """Return the key with hyphens as underscores: cloud-config accepts both."""
    return key.replace("-", "_")


def load(text: str, report: Report) -> yaml.Node | None:
    """Compose the YAML text into a node tree; a syntax error goes to ``report``.

    PyYAML stops at the first syntax error, so only that one is reported.
    """
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 0
        message = f"invalid YAML: {err.problem or err.context}"
        if err.context and err.problem and err.context_mark is not None:
            message += f" {err.context} started on line {err.context_mark.line + 1}"
        report.error(line, message + "; check the indentation and quoting here")
    except yaml.YAMLError as err:
        report.error(0, f"invalid YAML: {err}")
    return None


def is_null(node: yaml.Node) -> bool:
    """Tell whether a node is an empty value (``key:`` with nothing, or ``~``)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def kind_of(node: yaml.Node) -> str:
    """Return "a list", "a mapping" or "a string" for messages."""
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return "a string"


def read_mapping(node: yaml.Node, path: str, report: Report) -> dict[str, Entry]:
    """Return a mapping's entries by normalized key; report duplicates.

    A value that is not a mapping is an error, and an empty value is an empty
    mapping. When a key appears twice, the last one counts, as in YAML
    loaders, and the first one is reported.
    """
    if is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        report.error(node, f"{path} must be a mapping of keys, not {kind_of(node)}")
        return {}

    entries: dict[str, Entry] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            report.error(key_node, f"{path} has a key that is {kind_of(key_node)}")
            continue
        key = str(key_node.value)
        normalized = normalize_key(key)
        child = f"{path}.{key}" if path else key
        if normalized in entries:
            report.error(
                entries[normalized].key_node,
                f"{child} is given twice (again on line "
                f"{key_node.start_mark.line + 1}): remove one",
            )
        entries[normalized] = Entry(key, key_node, value_node, child)
    return entries


def warn_unknown(
    entries: dict[str, Entry], known: frozenset[str], report: Report, hint: str = ""
) -> None:
    """Warn about each key not in ``known`` (normalized names)."""
    for normalized, entry in entries.items():
        if normalized not in known:
            report.warning(entry.key_node, f"unknown key {entry.path} ignored{hint}")


def read_str(
    node: yaml.Node | None, path: str, report: Report, *, required: bool = False
) -> str | None:
    """Return a scalar's text as written; None for a missing or empty value."""
    if node is None or is_null(node):
        if required:
            report.error(node, f"{path} is missing: give it a value")
        return None
    if not isinstance(node, yaml.ScalarNode):
        report.error(node, f"{path} must be a string, not {kind_of(node)}")
        return None
    return str(node.value)


def read_bool(node: yaml.Node | None, path: str, report: Report) -> bool | None:
    """Return a YAML 1.1 boolean (true/false, yes/no, on/off, y/n), else None."""
    text = read_str(node, path, report)
    if text is None:
        return None
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    report.error(node, f"invalid boolean {text!r} for {path}: use true or false")
    return None


def read_list(node: yaml.Node | None, path: str, report: Report) -> list[yaml.Node]:
    """Return a sequence's items; an empty value is an empty list."""
    if node is None or is_null(node):
        return []
    if not isinstance(node, yaml.SequenceNode):
        report.error(node, f"{path} must be a list, not {kind_of(node)}")
        return []
    return list(node.value)


def read_str_list(
    node: yaml.Node | None, path: str, report: Report
) -> list[tuple[str, yaml.Node]]:
    """Return a list of strings, or a single string as a list of one."""
    if node is not None and isinstance(node, yaml.ScalarNode) and not is_null(node):
        return [(str(node.value), node)]
    values = []
    for index, item in enumerate(read_list(node, path, report)):
        text = read_str(item, f"{path}[{index}]", report, required=True)
        if text is not None:
            values.append((text, item))
    return values


def content_line(node: yaml.Node, index: int) -> int:
    """Return the 1-based file line of line ``index`` (0-based) of a string.

    A block scalar (``|`` or ``>``) starts on the line after its indicator. A
    quoted or plain string starts on the node's own line, and its line breaks
    are not mapped exactly, so the node's line is returned.
    """
    style = getattr(node, "style", None)
    start = int(node.start_mark.line) + 1
    if style in ("|", ">"):
        return start + 1 + index
    return start
