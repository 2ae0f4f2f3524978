"""``write_files``: files to write, with encoding, permissions and owner."""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from pathlib import PurePosixPath

import yaml

from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import (
    Entry,
    read_bool,
    read_list,
    read_mapping,
    read_str,
    warn_unknown,
)
from fleetd.cloudinit.plan import FileWrite, Plan
from fleetd.cloudinit.report import Report, line_of

_KNOWN = frozenset({"path", "content", "encoding", "permissions", "owner", "append"})

# Encoding names CoreOS accepted -> the decoding steps, outermost first.
ENCODINGS: dict[str, tuple[str, ...]] = {
    "": (),
    "b64": ("base64",),
    "base64": ("base64",),
    "gz": ("gzip",),
    "gzip": ("gzip",),
    "gz+b64": ("base64", "gzip"),
    "gz+base64": ("base64", "gzip"),
    "gzip+b64": ("base64", "gzip"),
    "gzip+base64": ("base64", "gzip"),
}

_OWNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")


def read_permissions(node: yaml.Node, path: str, report: Report) -> int | None:
    """Read an octal mode as written ("0644", 0644 or "644")."""
    text = read_str(node, path, report)
    if text is None:
        return None
    digits = text.strip().removeprefix("0o")
    if not re.fullmatch(r"[0-7]{1,4}", digits):
        report.error(
            node, f"invalid {path} {text!r}: write an octal mode such as '0644'"
        )
        return None
    return int(digits, 8)


def decode(
    content: str, encoding: str, node: yaml.Node, path: str, report: Report
) -> bytes | None:
    """Decode ``content`` per ``encoding``; report why it fails."""
    data = content.encode("utf-8")
    for step in ENCODINGS[encoding]:
        try:
            if step == "base64":
                data = base64.b64decode(b"".join(data.split()), validate=True)
            else:
                data = gzip.decompress(data)
        except (binascii.Error, ValueError, OSError, EOFError, zlib.error) as err:
            report.error(
                node,
                f"{path} is not valid {step} data for encoding {encoding!r} "
                f"({err}); encode the file again or fix the encoding",
            )
            return None
    return data


def read_path(
    node: yaml.Node | None, path: str, report: Report
) -> PurePosixPath | None:
    """Read an absolute path without ".." parts."""
    text = read_str(node, path, report, required=True)
    if text is None:
        return None
    target = PurePosixPath(text)
    if not target.is_absolute() or ".." in target.parts or text.endswith("/"):
        report.error(
            node,
            f"invalid {path} {text!r}: give an absolute file path without '..'",
        )
        return None
    return target


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Plan every file of the list."""
    for index, item in enumerate(read_list(entry.value, entry.path, report)):
        prefix = f"{entry.path}[{index}]"
        fields = read_mapping(item, prefix, report)
        warn_unknown(fields, _KNOWN, report)
        if not fields:
            report.error(item, f"{prefix} is empty: give at least a path")
            continue

        path_entry = fields.get("path")
        if path_entry is None:
            report.error(item, f"{prefix}.path is missing: name the file to write")
            continue
        target = read_path(path_entry.value, path_entry.path, report)

        encoding = ""
        if "encoding" in fields:
            found = fields["encoding"]
            encoding = (read_str(found.value, found.path, report) or "").strip()
            if encoding.lower() not in ENCODINGS:
                names = ", ".join(sorted(name for name in ENCODINGS if name))
                report.error(
                    found.value,
                    f"invalid {found.path} {encoding!r}: use one of {names}",
                )
                continue
            encoding = encoding.lower()

        data: bytes | None = b""
        if "content" in fields:
            found = fields["content"]
            text = read_str(found.value, found.path, report) or ""
            data = decode(text, encoding, found.value, found.path, report)

        mode: int | None = 0o644
        if "permissions" in fields:
            found = fields["permissions"]
            mode = read_permissions(found.value, found.path, report)

        owner: str | None = None
        if "owner" in fields:
            found = fields["owner"]
            owner = read_str(found.value, found.path, report)
            if owner is not None and not _OWNER.match(owner):
                report.error(
                    found.value,
                    f"invalid {found.path} {owner!r}: write user or user:group",
                )
                owner = None

        append = False
        if "append" in fields:
            found = fields["append"]
            append = bool(read_bool(found.value, found.path, report))

        if target is None or data is None or mode is None:
            continue
        plan.files.append(
            FileWrite(
                path=target,
                content=data,
                line=line_of(item),
                mode=mode,
                owner=owner,
                append=append,
            )
        )
