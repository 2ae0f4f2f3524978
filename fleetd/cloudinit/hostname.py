"""``hostname``: the host name, written to /etc/hostname and set at once."""

from __future__ import annotations

import re

from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import Entry, read_str
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.report import Report, line_of

# RFC 1123 labels, dot-separated, 253 characters at most.
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Check the host name and plan it."""
    name = read_str(entry.value, entry.path, report, required=True)
    if name is None:
        return
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        report.error(
            entry.value,
            f"invalid hostname {name!r}: use letters, digits and inner hyphens, "
            "in dot-separated labels of at most 63 characters",
        )
        return
    plan.hostname = (name, line_of(entry.value))
