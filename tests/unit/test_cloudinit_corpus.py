"""Real cloud-configs: the good ones pass, the broken ones give pinned errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetd.cloudinit import document
from fleetd.cloudinit.context import Context
from fleetd.cloudinit.metadata import Metadata
from fleetd.cloudinit.plan import Plan
from fleetd.cloudinit.report import Report

CORPUS = Path(__file__).parent / "test_cloudinit_corpus"
METADATA = Metadata(
    {"$private_ipv4": "10.0.0.5", "$public_ipv4": "203.0.113.5"},
    {"$private_ipv4": "test", "$public_ipv4": "test"},
)

# File -> the (line, message start) of every error expected in it.
EXPECTED_ERRORS: dict[str, list[tuple[int, str]]] = {
    "coreos-vagrant-etcd-v1-2014.yaml": [],
    "coreos-vagrant-etcd2-flannel.yaml": [],
    "deis-v1-user-data.yaml": [(6, "coreos.etcd2.discovery is empty")],
    "mesos-embedded-fleet-units.yaml": [],
    "minimal-ssh-no-eol.yaml": [],
    "no-header-ssh-key.yaml": [
        (1, "the first line must be '#cloud-config'"),
        (4, "invalid coreos.etcd.discovery 'https://discovery.etcd.io/<token>'"),
    ],
    "paz-vagrant.yaml": [],
    "static-network-ssh.yaml": [],
    "windows7-vagrant-broken.yaml": [
        (43, "invalid YAML: expected <block end>, but found '-'"),
    ],
}

EXPECTED_WARNINGS: dict[str, list[tuple[int, str]]] = {
    "coreos-vagrant-etcd2-flannel.yaml": [(16, "coreos.flannel is not supported")],
    "deis-v1-user-data.yaml": [(18, "coreos.update is not supported")],
    "minimal-ssh-no-eol.yaml": [
        (5, "invalid SSH public key in ssh_authorized_keys[0]"),
        (10, "coreos.etcd.discovery token 'REPLACE-WITH-DISCOVERY-TOKEN'"),
    ],
    "no-header-ssh-key.yaml": [
        (15, "invalid SSH public key in ssh_authorized_keys[0]: 'ssh-rsa'"),
    ],
    "paz-vagrant.yaml": [(5, "coreos.update is not supported")],
    "static-network-ssh.yaml": [
        (8, "invalid SSH public key in ssh_authorized_keys[0]"),
    ],
}


def read(name: str) -> tuple[Plan, Report]:
    text = (CORPUS / name).read_text(encoding="utf-8")
    return document.read(text, METADATA, Context(fleetd="/opt/fleet/bin/fleetd"))


def test_corpus_lists_every_file() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.yaml")) == sorted(
        EXPECTED_ERRORS
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_corpus_errors(name: str) -> None:
    _, report = read(name)
    found = [(problem.line, problem.message) for problem in report.errors]
    expected = EXPECTED_ERRORS[name]
    assert len(found) == len(expected), found
    for (line, message), (want_line, want_start) in zip(found, expected, strict=True):
        assert line == want_line
        assert message.startswith(want_start), message


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_corpus_warnings(name: str) -> None:
    _, report = read(name)
    found = [(problem.line, problem.message) for problem in report.warnings]
    expected = EXPECTED_WARNINGS.get(name, [])
    assert len(found) == len(expected), found
    for (line, message), (want_line, want_start) in zip(found, expected, strict=True):
        assert line == want_line
        assert message.startswith(want_start), message


def test_corpus_deis_plan() -> None:
    plan, _ = read("deis-v1-user-data.yaml")
    paths = [str(write.path) for write in plan.files]
    assert "/etc/deis-release" in paths
    assert "/etc/systemd/system/docker.service.d/10-require-flannel.conf" in paths
    assert [str(link.path) for link in plan.links] == [
        "/etc/systemd/system/etcd.service"
    ]
    assert ("update-engine.service", "stop") in [
        (command.unit, command.command) for command in plan.commands
    ]


def test_corpus_mesos_permissions_octal() -> None:
    plan, _ = read("mesos-embedded-fleet-units.yaml")
    modes = {str(write.path): write.mode for write in plan.files}
    # "permissions: 0644" without quotes is octal text, not YAML's integer 420.
    assert modes["/srv/mesos-master@.service"] == 0o644
    assert modes["/srv/mesos-create-fleet-units.sh"] == 0o755


def test_corpus_paz_substitutes_addresses() -> None:
    plan, _ = read("paz-vagrant.yaml")
    drop_in = next(
        write
        for write in plan.files
        if str(write.path) == "/run/systemd/system/etcd2.service.d/20-cloudinit.conf"
    )
    assert b"ETCD_ADVERTISE_CLIENT_URLS=http://203.0.113.5:2379" in drop_in.content
    haproxy = next(
        write for write in plan.files if write.path.name == "paz-haproxy.service"
    )
    assert str(haproxy.path) == "/run/systemd/system/paz-haproxy.service"
    assert b"ETCD=10.0.0.5:2379" in haproxy.content


def test_corpus_static_network_unit() -> None:
    plan, _ = read("static-network-ssh.yaml")
    assert plan.hostname == ("coreos-2", 4)
    paths = [str(write.path) for write in plan.files]
    assert "/run/systemd/network/00-internal.network" in paths
    masked = sorted(str(link.path) for link in plan.links)
    assert masked == [
        "/etc/systemd/system/locksmithd.service",
        "/etc/systemd/system/update-engine.service",
    ]
