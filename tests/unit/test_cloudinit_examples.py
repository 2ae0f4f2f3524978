"""The shipped cloud-configs, units and Vagrantfile are valid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetd.cloudinit import document
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.metadata import Metadata
from fleetd.unit import UnitFile

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "cloud-config").glob("*.yaml"))
SHIPPED = ["etcd.service", "etcd2.service", "fleet.service", "fleet.socket"]
CLOUDINIT = str(Path(sys.executable).parent / "fleet-cloudinit")
METADATA = Metadata(
    {"$private_ipv4": "10.0.0.5", "$public_ipv4": "203.0.113.5"},
    {"$private_ipv4": "test", "$public_ipv4": "test"},
)
needs_ruby = pytest.mark.skipif(
    shutil.which("ruby") is None, reason="ruby is not installed: apt-get install ruby"
)


def test_examples_found() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_has_no_problem(path: Path) -> None:
    _, report = document.read(path.read_text(), METADATA, Context())
    assert [problem.format(path.name) for problem in report.problems] == []


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_unit_parses(name: str) -> None:
    unit = UnitFile.parse((REPO / "units" / name).read_text())
    assert unit.has_install_section


def test_shipped_etcd_units_name_member_by_machine() -> None:
    for name in ("etcd.service", "etcd2.service"):
        unit = UnitFile.parse((REPO / "units" / name).read_text())
        assert "ETCD_NAME=%m" in unit.values("Service", "Environment")


@needs_ruby
def test_vagrantfile_syntax() -> None:
    result = subprocess.run(
        ["ruby", "-c", str(REPO / "Vagrantfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Syntax OK"


@needs_ruby
def test_vagrant_user_data_validates() -> None:
    user_data = subprocess.run(
        ["ruby", str(REPO / "Vagrantfile"), "00112233445566778899aabbccddeeff"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "/v2/keys/discovery/00112233445566778899aabbccddeeff" in user_data
    result = subprocess.run(
        [CLOUDINIT, "--from-file", "-", "--validate"],
        input=user_data,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "<stdin>: valid, 0 warning(s)\n"
