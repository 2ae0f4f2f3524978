"""Process identity checks, so that a recorded PID is never signalled blindly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """Return the start time of a live, non-zombie process, else None.

    The value is in clock ticks since boot (field 22 of /proc/PID/stat).
    Together with the PID it identifies a process, because a reused PID gets a
    later start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in brackets may contain spaces, so split after it.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def is_running(pid: int, expected_start_time: int) -> bool:
    """Return True if `pid` still runs the process that started at that time."""
    return start_time(pid) == expected_start_time


def wait_exited(pid: int, expected_start_time: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the process to exit; return whether it did."""
    deadline = time.monotonic() + timeout
    while is_running(pid, expected_start_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, expected_start_time: int, timeout: float) -> None:
    """Stop a process that is not our child: SIGTERM, then SIGKILL after `timeout`.

    Does nothing if the PID no longer belongs to the process that started at
    `expected_start_time`.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not is_running(pid, expected_start_time):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_exited(pid, expected_start_time, timeout):
            return
