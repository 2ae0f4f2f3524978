"""Per-host cgroup subtrees, so that test hosts do not share cgroups.

A host's systemd runs in a cgroup namespace and creates `init.scope`,
`system.slice` and so on below the cgroup it started in. Hosts started from
the same cgroup would therefore share those cgroups (and fight over them), so
each host first moves into a subtree of its own, `fleet-cluster/<host name>`
below the caller's cgroup, in every hierarchy that systemd may touch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fleetd.errors import ClusterError

CGROUP_ROOT = Path("/sys/fs/cgroup")
SUBTREE = "fleet-cluster"

# cpuset needs cpuset.cpus and cpuset.mems written before a process may join a
# new v1 cgroup, and systemd does not use it on v1, so hosts stay where they are.
_SKIPPED_CONTROLLERS = frozenset({"cpuset"})


@dataclass(frozen=True)
class CgroupLayout:
    """The machine's cgroup layout: "unified", "hybrid" or "legacy"."""

    mode: str

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT) -> CgroupLayout:
        if _fs_type(root) == "cgroup2":
            return cls("unified")
        if _fs_type(root / "unified") == "cgroup2":
            return cls("hybrid")
        return cls("legacy")


def _fs_type(path: Path) -> str | None:
    """Return the file system type mounted exactly at `path`, if any."""
    target = str(path)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        found = None
        for line in mounts:
            fields = line.split()
            if len(fields) >= 3 and fields[1] == target:
                found = fields[2]  # a later mount on the same path wins
    return found


def _hierarchy_mount(controllers: str, layout: CgroupLayout) -> Path | None:
    """Map one /proc/self/cgroup controller list to its mount point."""
    if controllers == "":
        if layout.mode == "unified":
            return CGROUP_ROOT
        if layout.mode == "hybrid":
            return CGROUP_ROOT / "unified"
        return None
    names = controllers.split(",")
    if any(name in _SKIPPED_CONTROLLERS for name in names):
        return None
    if controllers == "name=systemd":
        return CGROUP_ROOT / "systemd"
    for candidate in (controllers, *names):
        path = CGROUP_ROOT / candidate
        if (path / "cgroup.procs").exists():
            return path
    return None


def host_cgroup_dirs(
    host_name: str,
    proc_cgroup: str | None = None,
    layout: CgroupLayout | None = None,
) -> list[Path]:
    """List the cgroup directories a host named `host_name` should join.

    `proc_cgroup` is the text of /proc/self/cgroup and `layout` the machine's
    cgroup layout (both read from the machine when None). Each directory is
    `fleet-cluster/<host_name>` below the caller's own cgroup in one hierarchy.
    """
    if layout is None:
        layout = CgroupLayout.detect()
    if proc_cgroup is None:
        proc_cgroup = Path("/proc/self/cgroup").read_text(encoding="utf-8")

    dirs: list[Path] = []
    for line in proc_cgroup.splitlines():
        _, controllers, current = line.split(":", 2)
        mount = _hierarchy_mount(controllers, layout)
        if mount is None:
            continue
        dirs.append(mount / current.lstrip("/") / SUBTREE / host_name)
    return dirs


def create(dirs: list[Path]) -> None:
    """Create the host's cgroups; raise ClusterError if one is still in use."""
    for path in dirs:
        if path.exists() and _has_processes(path):
            raise ClusterError(
                f"cgroup {path} still contains processes: "
                "a host of that name is running; stop it or pick another name"
            )
        # Another host's removal may delete the shared parent between the
        # two steps of mkdir(parents=True), so a vanished parent is retried.
        for attempt in range(3):
            try:
                path.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise


def remove(dirs: list[Path], timeout: float = 10.0) -> None:
    """Remove the host's cgroup subtrees once their processes have exited.

    The kernel kills every process of a PID namespace when its PID 1 dies, but
    they leave their cgroups a moment later, so removal retries until
    `timeout` seconds have passed and then raises ClusterError.
    """
    deadline = time.monotonic() + timeout
    for top in dirs:
        while True:
            try:
                _remove_tree(top)
                _remove_if_empty(top.parent)
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise ClusterError(
                        f"cannot remove cgroup {top}: {err.strerror}; "
                        f"processes still in it: {_list_processes(top)}"
                    ) from err
                time.sleep(0.05)


def _remove_tree(top: Path) -> None:
    if not top.exists():
        return
    # Children first: rmdir only removes empty cgroups.
    for dirpath, _dirnames, _files in os.walk(top, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


def _remove_if_empty(path: Path) -> None:
    """Remove the shared `fleet-cluster` cgroup once no host uses it."""
    # Another host may still have its subtree there.
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _has_processes(top: Path) -> bool:
    return bool(_list_processes(top))


def _list_processes(top: Path) -> list[int]:
    pids: list[int] = []
    for procs in top.rglob("cgroup.procs"):
        try:
            text = procs.read_text(encoding="ascii")
        except FileNotFoundError:
            continue
        pids.extend(int(pid) for pid in text.split())
    return pids
