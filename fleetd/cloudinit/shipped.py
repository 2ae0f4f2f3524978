"""The unit files the project ships, installed on a host as runtime units.

A host gets them in /run/systemd/system, which outranks the packaged units in
/usr/lib/systemd/system (Debian's etcd-server ships an etcd.service of its
own) and is outranked by the administrator's in /etc/systemd/system.
"""

from __future__ import annotations

from pathlib import Path

import fleetd

# The checkout's units/ first, then where a package would install them.
SEARCH_PATH = (
    Path(fleetd.__file__).resolve().parents[1] / "units",
    Path("/usr/share/fleet/units"),
)


def find_units_dir() -> Path | None:
    """Return the first directory of SEARCH_PATH holding fleet.service."""
    for directory in SEARCH_PATH:
        if (directory / "fleet.service").is_file():
            return directory
    return None
