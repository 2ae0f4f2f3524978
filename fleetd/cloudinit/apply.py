"""Carry out a checked plan on a host, or on a directory standing for one.

``check`` looks at the target before anything is changed: owners and groups
must exist or be created by the plan, shipped units must be found. Only a plan
that passes is applied. Every step compares before it writes, so applying the
same plan twice changes nothing the second time, except unit commands such
as restart, which systemd runs again.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from fleetd.cloudinit.accounts import Account, read_groups, read_passwd
from fleetd.cloudinit.plan import RUNTIME_DIR, FileWrite, Plan, User
from fleetd.cloudinit.report import Report

log = logging.getLogger(__name__)

KEYS_BEGIN = "# BEGIN keys managed by fleet-cloudinit"
KEYS_END = "# END keys managed by fleet-cloudinit"


class UnitControl(Protocol):
    """The systemd calls that applying makes; systemctl.SystemdControl has them."""

    async def reload(self) -> None:
        """Reload unit files (daemon-reload)."""

    async def enable(self, names: Sequence[str], runtime: bool) -> None:
        """Enable units by their [Install] sections, in /run when ``runtime``."""

    async def command(self, unit: str, command: str) -> None:
        """Queue the job of a plan.COMMANDS command; it may still run after."""


@dataclass
class Target:
    """The directory a plan is applied under, "/" on a real host."""

    root: Path
    units_source: Path | None = None
    changes: list[str] = field(default_factory=list)

    @property
    def is_live(self) -> bool:
        """Whether the root is the running system, so hostnames are set too."""
        return self.root.resolve() == Path("/")

    def record(self, change: str) -> None:
        """Log a change made and keep it for the summary."""
        log.info("%s", change)
        self.changes.append(change)

    def path(self, path: PurePosixPath | str) -> Path:
        """Return a target path as a path on this machine."""
        return self.root / PurePosixPath(path).relative_to("/")


def check(plan: Plan, target: Target, report: Report) -> None:
    """Report what would make applying fail, before anything is changed."""
    accounts = read_passwd(target.root)
    groups = set(read_groups(target.root))
    planned = {user.name for user in plan.users}

    for user in plan.users:
        for group in user.groups:
            if group not in groups:
                report.error(
                    user.line,
                    f"group {group!r} of user {user.name} does not exist: create "
                    "it first or remove it from groups",
                )
        if user.primary_group and user.primary_group not in groups:
            report.error(
                user.line, f"primary group {user.primary_group!r} does not exist"
            )
    for keys in plan.authorized_keys:
        if keys.user not in accounts and keys.user not in planned:
            report.error(
                keys.line,
                f"user {keys.user!r} for ssh_authorized_keys does not exist: add "
                "it under users, or name another with --ssh-user",
            )
    for write in plan.files:
        if write.owner is None:
            continue
        owner, _, group = write.owner.partition(":")
        if not owner.isdigit() and owner not in accounts and owner not in planned:
            report.error(
                write.line,
                f"owner {owner!r} of {write.path} does not exist: add it under "
                "users or use an existing user",
            )
        if group and not group.isdigit() and group not in groups:
            report.error(write.line, f"group {group!r} of {write.path} does not exist")
    for unit in sorted(plan.shipped_units - plan.provided_units):
        source = target.units_source
        if source is None or not (source / unit).is_file():
            where = source or "any units directory"
            report.error(
                0,
                f"the shipped unit {unit} is not found in {where}: pass "
                "--units-source with the project's units/ directory",
            )


async def apply_plan(plan: Plan, target: Target, control: UnitControl | None) -> None:
    """Apply a checked plan; ``control`` None skips the systemd steps.

    Raises OSError or subprocess.CalledProcessError when a step fails; the
    steps before it stay applied.
    """
    if plan.hostname is not None:
        _apply_hostname(plan.hostname[0], target)
    for user in plan.users:
        _apply_user(user, target)

    accounts = read_passwd(target.root)
    for keys in plan.authorized_keys:
        _install_keys(keys.user, keys.keys, accounts, target)
    for user in plan.users:
        if user.ssh_authorized_keys:
            _install_keys(user.name, user.ssh_authorized_keys, accounts, target)

    for unit in sorted(plan.shipped_units - plan.provided_units):
        assert target.units_source is not None  # check() made sure
        text = (target.units_source / unit).read_bytes()
        write_file(FileWrite(RUNTIME_DIR / unit, text, 0), target, accounts)
    for write in plan.files:
        write_file(write, target, accounts)
    for link in plan.links:
        _apply_link(link.path, link.target, target)

    if not plan.touches_systemd:
        return
    if control is None:
        log.warning("systemd steps skipped: daemon-reload, enables and unit commands")
        return
    for runtime in (True, False):
        names = [enable.unit for enable in plan.enables if enable.runtime is runtime]
        if names:
            await control.enable(names, runtime)
            target.record(f"enabled {', '.join(names)}")
    await control.reload()
    target.record("reloaded systemd")
    for command in plan.commands:
        await control.command(command.unit, command.command)
        target.record(f"{command.command} {command.unit}")


def write_file(write: FileWrite, target: Target, accounts: dict[str, Account]) -> None:
    """Write one file unless it already has this content, mode and owner."""
    path = target.path(write.path)
    uid, gid = _owner_ids(write.owner, target, accounts)
    path.parent.mkdir(parents=True, exist_ok=True)

    if write.append:
        existing = path.read_bytes() if path.exists() else b""
        if existing.endswith(write.content) and write.content:
            return
        with open(path, "ab") as handle:
            handle.write(write.content)
        _set_attributes(path, write.mode, uid, gid)
        target.record(f"appended to {write.path}")
        return

    if _is_current(path, write.content, write.mode, uid, gid):
        return
    if write.in_place:
        with open(path, "wb") as handle:
            handle.write(write.content)
        _set_attributes(path, write.mode, uid, gid)
    else:
        temporary = path.with_name(f".{path.name}.fleet-cloudinit")
        temporary.write_bytes(write.content)
        _set_attributes(temporary, write.mode, uid, gid)
        os.replace(temporary, path)
    target.record(f"wrote {write.path}")


def _is_current(path: Path, content: bytes, mode: int, uid: int, gid: int) -> bool:
    try:
        stat = path.lstat()
        current = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return False
    same_owner = (uid == -1 or stat.st_uid == uid) and (gid == -1 or stat.st_gid == gid)
    return current == content and stat.st_mode & 0o7777 == mode and same_owner


def _set_attributes(path: Path, mode: int, uid: int, gid: int) -> None:
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def _owner_ids(
    owner: str | None, target: Target, accounts: dict[str, Account]
) -> tuple[int, int]:
    """Return (uid, gid) for ``owner``; -1 leaves one unchanged."""
    if owner is None:
        return -1, -1
    user, _, group = owner.partition(":")
    if user.isdigit():
        uid, gid = int(user), -1
    else:
        account = accounts[user]
        uid, gid = account.uid, account.gid
    if group:
        gid = int(group) if group.isdigit() else read_groups(target.root)[group]
    return uid, gid


def _apply_hostname(name: str, target: Target) -> None:
    # /etc/hostname may be a bind mount (it is on test hosts), so it is
    # rewritten in place rather than replaced.
    write = FileWrite(
        PurePosixPath("/etc/hostname"), f"{name}\n".encode(), 0, in_place=True
    )
    write_file(write, target, {})
    if target.is_live and socket.gethostname() != name:
        socket.sethostname(name)
        target.record(f"set hostname {name}")


def _apply_user(user: User, target: Target) -> None:
    """Create the user with useradd, or add missing groups with usermod."""
    prefix = [] if target.is_live else ["--prefix", str(target.root)]
    existing = read_passwd(target.root)
    if user.name not in existing:
        argv = ["useradd", *prefix]
        if user.groups:
            argv += ["--groups", ",".join(user.groups)]
        if user.homedir:
            argv += ["--home-dir", user.homedir]
        if user.shell:
            argv += ["--shell", user.shell]
        if user.gecos:
            argv += ["--comment", user.gecos]
        if user.primary_group:
            argv += ["--gid", user.primary_group]
        if user.passwd:
            argv += ["--password", user.passwd]
        if user.system:
            argv.append("--system")
        argv.append("--no-create-home" if user.no_create_home else "--create-home")
        subprocess.run([*argv, user.name], check=True, capture_output=True, text=True)
        target.record(f"created user {user.name}")
        return

    member_of = _groups_of(user.name, target)
    missing = [group for group in user.groups if group not in member_of]
    if missing:
        subprocess.run(
            ["usermod", *prefix, "--append", "--groups", ",".join(missing), user.name],
            check=True,
            capture_output=True,
            text=True,
        )
        target.record(f"added user {user.name} to {', '.join(missing)}")


def _groups_of(name: str, target: Target) -> set[str]:
    groups: set[str] = set()
    try:
        text = target.path("/etc/group").read_text(encoding="utf-8")
    except FileNotFoundError:
        return groups
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and name in fields[3].split(","):
            groups.add(fields[0])
    return groups


def _install_keys(
    user: str, keys: Sequence[str], accounts: dict[str, Account], target: Target
) -> None:
    """Merge the keys into the managed block of the user's authorized_keys.

    Lines outside the block are the user's own and are kept. Keys already in
    the block stay too, so the block holds the keys of every run so far.
    """
    account = accounts[user]
    ssh_dir = PurePosixPath(account.home) / ".ssh"
    path = target.path(ssh_dir / "authorized_keys")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    outside, managed = _split_block(text)
    merged = list(dict.fromkeys([*managed, *keys]))
    block = "\n".join([KEYS_BEGIN, *merged, KEYS_END])
    content = "\n".join([*outside, block]) + "\n" if outside else block + "\n"

    directory = target.path(ssh_dir)
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        os.chown(directory, account.uid, account.gid)
    owner = f"{account.uid}:{account.gid}"
    write = FileWrite(
        ssh_dir / "authorized_keys", content.encode(), 0, mode=0o600, owner=owner
    )
    write_file(write, target, accounts)


def _split_block(text: str) -> tuple[list[str], list[str]]:
    outside: list[str] = []
    managed: list[str] = []
    inside = False
    for line in text.splitlines():
        if line == KEYS_BEGIN:
            inside = True
        elif line == KEYS_END:
            inside = False
        elif inside:
            managed.append(line)
        else:
            outside.append(line)
    return outside, managed


def _apply_link(path: PurePosixPath, link_target: str, target: Target) -> None:
    local = target.path(path)
    if local.is_symlink() and os.readlink(local) == link_target:
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    temporary = local.with_name(f".{local.name}.fleet-cloudinit")
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(link_target)
    os.replace(temporary, local)
    target.record(f"linked {path} to {link_target}")
