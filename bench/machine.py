"""A description of the machine the benchmarks ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or "unknown"."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def memory_gib() -> float:
    """Return the total memory in GiB from /proc/meminfo, or 0.0."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def tool_version(argv: list[str]) -> str:
    """Return the first line a ``--version`` command prints, or "unknown"."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def describe() -> list[tuple[str, str]]:
    """Return (label, value) rows describing this machine and its software."""
    return [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", cpu_model()),
        ("memory", f"{memory_gib():.1f} GiB"),
        ("kernel", platform.release()),
        ("Python", platform.python_version()),
        ("etcd", tool_version(["etcd", "--version"])),
        ("systemd", tool_version(["/usr/lib/systemd/systemd", "--version"])),
    ]
