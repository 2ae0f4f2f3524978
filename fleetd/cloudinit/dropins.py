"""Drop-ins that carry cloud-config settings into shipped units."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from fleetd.cloudinit.plan import RUNTIME_DIR, FileWrite

# CoreOS's name for the drop-in of cloud-config settings; a later number in
# another drop-in still overrides it.
DROP_IN_NAME = "20-cloudinit.conf"


def escape_value(text: str) -> str:
    """Escape a unit file value: ``%`` specifiers and backslashes."""
    return text.replace("\\", "\\\\").replace("%", "%%")


def environment_line(name: str, value: str) -> str:
    """Return ``Environment="NAME=value"`` with quotes escaped."""
    quoted = escape_value(f"{name}={value}").replace('"', '\\"')
    return f'Environment="{quoted}"'


def environment_drop_in(
    unit: str,
    environment: Mapping[str, str],
    line: int,
    exec_start: str | None = None,
) -> FileWrite:
    """Return the runtime drop-in that sets ``environment`` for ``unit``.

    The drop-in lives under /run, so it is private to the host and gone after
    a reboot, when the cloud-config runs again. ``exec_start`` replaces the
    unit's command line.
    """
    lines = [
        "# Written by fleet-cloudinit from the cloud-config; edits are replaced.",
        "[Service]",
    ]
    lines += [environment_line(name, environment[name]) for name in sorted(environment)]
    if exec_start is not None:
        lines += ["ExecStart=", f"ExecStart={escape_value(exec_start)}"]
    path = RUNTIME_DIR / f"{unit}.d" / DROP_IN_NAME
    return FileWrite(
        path=PurePosixPath(path), content=("\n".join(lines) + "\n").encode(), line=line
    )
