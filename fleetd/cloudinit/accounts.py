"""Users and groups of the target root, read from its passwd and group files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Account:
    """One line of /etc/passwd."""

    name: str
    uid: int
    gid: int
    home: str


def read_passwd(root: Path) -> dict[str, Account]:
    """Return the accounts of ``root``/etc/passwd by name; none if it is missing."""
    accounts: dict[str, Account] = {}
    for fields in _records(root / "etc/passwd"):
        if len(fields) >= 6 and fields[2].isdigit() and fields[3].isdigit():
            accounts[fields[0]] = Account(
                fields[0], int(fields[2]), int(fields[3]), fields[5]
            )
    return accounts


def read_groups(root: Path) -> dict[str, int]:
    """Return group name -> GID from ``root``/etc/group."""
    return {
        fields[0]: int(fields[2])
        for fields in _records(root / "etc/group")
        if len(fields) >= 3 and fields[2].isdigit()
    }


def _records(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.split(":") for line in text.splitlines() if line and line[0] != "#"]
