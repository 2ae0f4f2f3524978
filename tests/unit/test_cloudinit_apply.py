"""Applying a plan under a root directory, with systemd replaced by a recorder."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetd.cloudinit import document
from fleetd.cloudinit.apply import KEYS_BEGIN, KEYS_END, Target, apply_plan, check
from fleetd.cloudinit.cli import main
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.metadata import Metadata
from fleetd.cloudinit.report import Report

UNITS = Path(__file__).resolve().parents[2] / "units"
METADATA = Metadata({"$private_ipv4": "10.1.2.3"}, {"$private_ipv4": "test"})
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQw user@example"

CONFIG = f"""\
#cloud-config
hostname: node-7
ssh_authorized_keys:
  - {KEY}
write_files:
  - path: /etc/motd
    permissions: "0640"
    content: hello $private_ipv4
  - path: /etc/profile.d/extra.sh
    append: true
    content: |
      export A=1
coreos:
  etcd:
    addr: $private_ipv4:4001
  fleet:
    metadata: role=web
  units:
    - name: web.service
      runtime: true
      enable: true
      command: start
      content: |
        [Service]
        ExecStart=/bin/true
        [Install]
        WantedBy=multi-user.target
    - name: old.service
      mask: true
    - name: etcd.service
      command: start
    - name: fleet.service
      command: restart
"""


class RecordingControl:
    """Records the systemd calls instead of making them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def reload(self) -> None:
        self.calls.append(("reload",))

    async def enable(self, names: Sequence[str], runtime: bool) -> None:
        self.calls.append(("enable", *names, str(runtime)))

    async def command(self, unit: str, command: str) -> None:
        self.calls.append((command, unit))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root directory with the core user, owned by the test's own user."""
    (tmp_path / "etc").mkdir()
    uid, gid = os.getuid(), os.getgid()
    (tmp_path / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\ncore:x:{uid}:{gid}::/home/core:/bin/sh\n"
    )
    (tmp_path / "etc/group").write_text(f"root:x:0:\ncore:x:{gid}:\n")
    return tmp_path


async def apply_text(text: str, root: Path) -> tuple[Target, RecordingControl]:
    plan, report = document.read(text, METADATA, Context(fleetd="/opt/bin/fleetd"))
    target = Target(root=root, units_source=UNITS)
    check(plan, target, report)
    assert report.errors == []
    control = RecordingControl()
    await apply_plan(plan, target, control)
    return target, control


async def test_apply_writes_everything(root: Path) -> None:
    target, control = await apply_text(CONFIG, root)

    assert (root / "etc/hostname").read_text() == "node-7\n"
    assert (root / "etc/motd").read_text() == "hello 10.1.2.3"
    assert (root / "etc/motd").stat().st_mode & 0o7777 == 0o640
    assert (root / "etc/profile.d/extra.sh").read_text() == "export A=1\n"
    keys = (root / "home/core/.ssh/authorized_keys").read_text()
    assert keys == f"{KEYS_BEGIN}\n{KEY}\n{KEYS_END}\n"
    assert (root / "home/core/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600

    runtime = root / "run/systemd/system"
    assert (runtime / "web.service").is_file()
    assert (runtime / "etcd.service").read_bytes() == (
        UNITS / "etcd.service"
    ).read_bytes()
    assert (runtime / "fleet.service").is_file()
    drop_in = (runtime / "fleet.service.d/20-cloudinit.conf").read_text()
    assert 'Environment="FLEET_ETCD_SERVERS=http://10.1.2.3:4001"' in drop_in
    assert os.readlink(root / "etc/systemd/system/old.service") == "/dev/null"

    assert control.calls == [
        ("enable", "web.service", "True"),
        ("reload",),
        ("start", "web.service"),
        ("start", "etcd.service"),
        ("restart", "fleet.service"),
    ]
    assert "reloaded systemd" in target.changes


async def test_apply_twice_changes_no_file(root: Path) -> None:
    await apply_text(CONFIG, root)
    target, control = await apply_text(CONFIG, root)
    assert [
        change
        for change in target.changes
        if not change.startswith(("enabled", "reloaded", "start", "restart"))
    ] == []
    # The append is not repeated, and the commands are issued again.
    assert (root / "etc/profile.d/extra.sh").read_text() == "export A=1\n"
    assert control.calls.count(("reload",)) == 1


async def test_apply_keeps_own_keys(root: Path) -> None:
    ssh = root / "home/core/.ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("ssh-rsa AAAAB3Nza mine\n")
    await apply_text(CONFIG, root)
    lines = (ssh / "authorized_keys").read_text().splitlines()
    assert lines == ["ssh-rsa AAAAB3Nza mine", KEYS_BEGIN, KEY, KEYS_END]


async def test_apply_without_systemd_steps(root: Path) -> None:
    plan, _ = document.read("#cloud-config\nhostname: h\n", METADATA, Context())
    target = Target(root=root, units_source=UNITS)
    control = RecordingControl()
    await apply_plan(plan, target, control)
    assert control.calls == []


def test_check_missing_owner_and_user(root: Path) -> None:
    text = textwrap.dedent(
        """\
        #cloud-config
        write_files:
          - path: /srv/a
            owner: nobody2:staff9
        users:
          - name: dev
            groups: [wheel9]
        """
    )
    plan, report = document.read(text, METADATA, Context(ssh_user="core"))
    check(plan, Target(root=root, units_source=UNITS), report)
    assert [(p.line, p.message) for p in report.errors] == [
        (
            3,
            "owner 'nobody2' of /srv/a does not exist: add it under users or use "
            "an existing user",
        ),
        (3, "group 'staff9' of /srv/a does not exist"),
        (
            6,
            "group 'wheel9' of user dev does not exist: create it first or remove "
            "it from groups",
        ),
    ]


def test_check_missing_shipped_unit(root: Path, tmp_path: Path) -> None:
    text = (
        "#cloud-config\ncoreos:\n  units:\n"
        "    - name: fleet.service\n      command: start\n"
    )
    plan, report = document.read(text, METADATA, Context())
    check(plan, Target(root=root, units_source=tmp_path / "none"), report)
    assert [p.message for p in report.errors] == [
        f"the shipped unit fleet.service is not found in {tmp_path / 'none'}: pass "
        "--units-source with the project's units/ directory"
    ]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="useradd --prefix needs root",
)
async def test_apply_creates_user_under_root(root: Path) -> None:
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\n")
    (root / "etc/group").write_text("root:x:0:\nsudo:x:27:\n")
    text = (
        "#cloud-config\nusers:\n  - name: alice\n    groups: [sudo]\n"
        f"    ssh-authorized-keys: ['{KEY}']\n"
    )
    target, _ = await apply_text(text, root)
    assert "created user alice" in target.changes
    passwd = (root / "etc/passwd").read_text()
    assert "\nalice:" in passwd
    assert "alice" in (root / "etc/group").read_text().split("sudo:x:27:")[1]
    assert KEY in (root / "home/alice/.ssh/authorized_keys").read_text()

    again, _ = await apply_text(text, root)
    assert again.changes == []


def test_cli_validate_reports_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "#cloud-config\ncoreos:\n  units:\n    - name: x.service\n"
        "      command: go\n  colour: 1\n"
    )
    result = CliRunner().invoke(main, ["--from-file", str(path), "--validate"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == f"{path}:5: error: invalid coreos.units[0].command 'go' for " + (
        "x.service: use one of start, stop, restart, reload, try-restart, "
        "reload-or-restart, reload-or-try-restart"
    )
    assert lines[1] == f"{path}:6: warning: unknown key coreos.colour ignored"
    assert lines[2] == f"Error: 1 error(s) in {path}; fix them and run again"


def test_cli_bad_file_changes_nothing(tmp_path: Path, root: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hi\n"
        "hostname: bad_name\n"
    )
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = CliRunner().invoke(main, ["--from-file", str(path), "--root", str(root)])
    assert result.exit_code == 1
    assert "nothing was changed" in result.output
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_cli_applies_under_root(tmp_path: Path, root: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(
        "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hi\n"
    )
    runner = CliRunner()
    first = runner.invoke(main, ["--from-file", str(path), "--root", str(root)])
    assert first.exit_code == 0, first.output
    assert first.output.endswith("applied, 1 change(s)\n")
    second = runner.invoke(main, ["--from-file", str(path), "--root", str(root)])
    assert second.output.endswith("applied, 0 change(s)\n")


def test_cli_needs_file() -> None:
    result = CliRunner().invoke(main, ["--validate"])
    assert result.exit_code == 2
    assert "name the cloud-config with --from-file PATH" in result.output


def test_cli_invalid_metadata_fails(tmp_path: Path, root: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "#cloud-config\nhostname: a\n"
        "write_files:\n  - path: /x\n    content: $public_ipv4\n"
    )
    result = CliRunner(env={"COREOS_PUBLIC_IPV4": "not-an-ip"}).invoke(
        main, ["--from-file", str(path), "--root", str(root)]
    )
    assert result.exit_code == 1
    assert (
        f"{path}: error: invalid $public_ipv4 'not-an-ip' from environment variable "
        "COREOS_PUBLIC_IPV4: give an IPv4 address"
    ) in result.output


def test_report_sorted_problem_format() -> None:
    report = Report()
    report.warning(5, "w")
    report.error(2, "e")
    assert [p.format("f.yaml") for p in report.sorted()] == [
        "f.yaml:2: error: e",
        "f.yaml:5: warning: w",
    ]
