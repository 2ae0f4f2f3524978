"""The plan that reading a cloud-config produces and applying it carries out.

Paths are absolute paths on the target host; the applier puts them under its
root directory. ``line`` fields name the cloud-config line a step came from,
so a problem found while checking the plan against the host can point there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

# systemd's directories for units: persistent, and runtime (cleared at boot).
SYSTEM_DIR = PurePosixPath("/etc/systemd/system")
RUNTIME_DIR = PurePosixPath("/run/systemd/system")
NETWORK_DIR = PurePosixPath("/etc/systemd/network")
RUNTIME_NETWORK_DIR = PurePosixPath("/run/systemd/network")

# Unit commands of coreos.units, each a systemd manager D-Bus method.
COMMANDS = {
    "start": "StartUnit",
    "stop": "StopUnit",
    "restart": "RestartUnit",
    "reload": "ReloadUnit",
    "try-restart": "TryRestartUnit",
    "reload-or-restart": "ReloadOrRestartUnit",
    "reload-or-try-restart": "ReloadOrTryRestartUnit",
}


@dataclass(frozen=True)
class FileWrite:
    """A file to write. ``owner`` is "user", "user:group" or numeric IDs.

    With ``append`` the content is added at the end, unless the file already
    ends with it, so running twice adds it once. ``in_place`` rewrites the
    file's own inode instead of renaming a new file over it, for paths such
    as /etc/hostname that may be bind mounts.
    """

    path: PurePosixPath
    content: bytes
    line: int
    mode: int = 0o644
    owner: str | None = None
    append: bool = False
    in_place: bool = False


@dataclass(frozen=True)
class Link:
    """A symbolic link at ``path`` pointing to ``target`` (masks use /dev/null)."""

    path: PurePosixPath
    target: str
    line: int


@dataclass(frozen=True)
class User:
    """A user account to create, or an existing one to add groups and keys to."""

    name: str
    line: int
    groups: tuple[str, ...] = ()
    ssh_authorized_keys: tuple[str, ...] = ()
    homedir: str | None = None
    shell: str | None = None
    gecos: str | None = None
    primary_group: str | None = None
    passwd: str | None = None
    system: bool = False
    no_create_home: bool = False


@dataclass(frozen=True)
class AuthorizedKeys:
    """Public keys to install for ``user`` in ~/.ssh/authorized_keys."""

    user: str
    keys: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class UnitCommand:
    """A systemd job to queue for a unit after the reload: a COMMANDS key."""

    unit: str
    command: str
    line: int


@dataclass(frozen=True)
class Enable:
    """A unit to enable through systemd, in /run when ``runtime`` is set."""

    unit: str
    runtime: bool
    line: int


@dataclass
class Plan:
    """The steps of one cloud-config, in the order they are applied."""

    hostname: tuple[str, int] | None = None
    users: list[User] = field(default_factory=list)
    authorized_keys: list[AuthorizedKeys] = field(default_factory=list)
    files: list[FileWrite] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    enables: list[Enable] = field(default_factory=list)
    commands: list[UnitCommand] = field(default_factory=list)
    # Client URLs of the etcd configured in this file, for fleet's default.
    etcd_client_urls: list[str] = field(default_factory=list)
    # Shipped units the file configures or commands, to install if missing.
    shipped_units: set[str] = field(default_factory=set)
    # Units whose file the cloud-config itself provides.
    provided_units: set[str] = field(default_factory=set)
    # FLEET_* settings from coreos.fleet, and the line of that key.
    fleet_environment: dict[str, str] | None = None
    fleet_line: int = 0

    @property
    def touches_systemd(self) -> bool:
        """Whether systemd must reload: unit files, drop-ins, links or jobs."""
        unit_dirs = (SYSTEM_DIR, RUNTIME_DIR)
        wrote_units = any(
            write.path.is_relative_to(directory)
            for write in self.files
            for directory in unit_dirs
        )
        return bool(wrote_units or self.links or self.enables or self.commands)
