"""The host boot script and the choice of per-host cgroups."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetd.cluster import bootscript, cgroups
from fleetd.cluster.cgroups import CgroupLayout


def test_boot_script_is_valid_shell(tmp_path: Path) -> None:
    script = tmp_path / "boot.sh"
    script.write_text(bootscript.render(), encoding="utf-8")
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_boot_script_masks_every_unit() -> None:
    text = bootscript.render()
    for unit in bootscript.MASKED_UNITS:
        assert f" {unit}" in text, unit


def test_boot_script_mounts_before_systemd() -> None:
    lines = bootscript.render().splitlines()
    assert lines[1] == "set -eu"
    exec_systemd = next(i for i, line in enumerate(lines) if bootscript.SYSTEMD in line)
    for path, _mode in bootscript.PRIVATE_TMPFS:
        mount = next(
            i for i, line in enumerate(lines) if line.endswith(f"tmpfs {path}")
        )
        assert mount < exec_systemd, path


def test_boot_script_never_boots_multi_user() -> None:
    text = bootscript.render()
    assert "multi-user.target" not in text
    assert f"--unit={bootscript.HOST_TARGET}" in text


PROC_CGROUP_HYBRID = """\
9:name=systemd:/
3:cpuset:/
0::/user.slice
"""


def test_host_cgroups_hybrid() -> None:
    dirs = cgroups.host_cgroup_dirs(
        "demo-1", PROC_CGROUP_HYBRID, layout=CgroupLayout("hybrid")
    )
    assert dirs == [
        Path("/sys/fs/cgroup/systemd/fleet-cluster/demo-1"),
        Path("/sys/fs/cgroup/unified/user.slice/fleet-cluster/demo-1"),
    ]


def test_host_cgroups_unified() -> None:
    dirs = cgroups.host_cgroup_dirs(
        "demo-1", "0::/session.scope\n", layout=CgroupLayout("unified")
    )
    assert dirs == [Path("/sys/fs/cgroup/session.scope/fleet-cluster/demo-1")]


@pytest.mark.parametrize("mode", ["hybrid", "legacy"])
def test_host_cgroups_skip_cpuset(mode: str) -> None:
    dirs = cgroups.host_cgroup_dirs("demo-1", "3:cpuset:/\n", layout=CgroupLayout(mode))
    assert dirs == []
