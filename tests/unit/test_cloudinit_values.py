"""Typed YAML values and $private_ipv4/$public_ipv4 substitution."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from fleetd.cloudinit import metadata, nodes
from fleetd.cloudinit.metadata import Metadata
from fleetd.cloudinit.report import Report


def node_of(text: str) -> yaml.Node:
    report = Report()
    root = nodes.load(f"value: {text}\n", report)
    assert root is not None
    return nodes.read_mapping(root, "", report)["value"].value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", True),
        ("on", True),
        ("True", True),
        ("y", True),
        ("no", False),
        ("off", False),
        ("FALSE", False),
        ("n", False),
        ('"true"', True),
    ],
)
def test_booleans_yaml11(text: str, expected: bool) -> None:
    report = Report()
    assert nodes.read_bool(node_of(text), "value", report) is expected
    assert report.problems == []


def test_boolean_invalid() -> None:
    report = Report()
    assert nodes.read_bool(node_of("sometimes"), "enable", report) is None
    assert [(p.line, p.message) for p in report.errors] == [
        (1, "invalid boolean 'sometimes' for enable: use true or false")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("off", "off"), ("0644", "0644"), ("no", "no"), ("1.10", "1.10"), ("~", None)],
)
def test_strings_kept_as_written(text: str, expected: str | None) -> None:
    report = Report()
    assert nodes.read_str(node_of(text), "value", report) == expected


def test_yaml_syntax_error_line() -> None:
    report = Report()
    assert nodes.load("a: 1\nb: [1, 2\nc: 3\n", report) is None
    (problem,) = report.errors
    assert problem.line == 3
    assert problem.message.startswith("invalid YAML:")


def test_tab_indentation_error() -> None:
    report = Report()
    assert nodes.load("a:\n\tb: 1\n", report) is None
    assert report.errors[0].line == 2


def test_block_scalar_content_line() -> None:
    report = Report()
    root = nodes.load("x: 1\ncontent: |\n  one\n  two\n", report)
    assert root is not None
    value = nodes.read_mapping(root, "", report)["content"].value
    assert nodes.content_line(value, 0) == 3
    assert nodes.content_line(value, 1) == 4


def test_metadata_file_before_environment(tmp_path: Path) -> None:
    path = tmp_path / "metadata"
    path.write_text("# comment\nCOREOS_PRIVATE_IPV4=10.0.0.1\n")
    environ = {"COREOS_PRIVATE_IPV4": "10.9.9.9", "COREOS_PUBLIC_IPV4": "203.0.113.1"}
    found = metadata.resolve(path, environ, detect=lambda: {})
    assert found.values == {
        "$private_ipv4": "10.0.0.1",
        "$public_ipv4": "203.0.113.1",
    }
    assert found.sources["$private_ipv4"] == str(path)
    assert found.sources["$public_ipv4"] == "environment variable COREOS_PUBLIC_IPV4"


def test_metadata_detection_fills_gaps() -> None:
    calls: list[int] = []

    def detect() -> dict[str, str]:
        calls.append(1)
        return {"$private_ipv4": "192.168.1.2", "$public_ipv4": "192.168.1.2"}

    found = metadata.resolve(None, {"COREOS_PUBLIC_IPV4": "203.0.113.1"}, detect)
    assert found.values["$private_ipv4"] == "192.168.1.2"
    assert found.values["$public_ipv4"] == "203.0.113.1"
    assert found.sources["$private_ipv4"] == "interface addresses"
    assert calls == [1]


def test_metadata_no_detection_when_complete() -> None:
    def detect() -> dict[str, str]:
        raise AssertionError("detection must not run")

    environ = {"COREOS_PRIVATE_IPV4": "10.0.0.1", "COREOS_PUBLIC_IPV4": "10.0.0.1"}
    assert metadata.resolve(None, environ, detect).values["$public_ipv4"] == "10.0.0.1"


def test_substitute_keeps_lines() -> None:
    report = Report()
    known = Metadata({"$private_ipv4": "10.0.0.1"}, {"$private_ipv4": "test"})
    text = "a: $private_ipv4:4001\nb: $public_ipv4\nc: $private_ipv4"
    result = metadata.substitute(text, known, report, stand_in=False)
    # The stand-in lets the rest of the file be checked; the error stops applying.
    assert result.split("\n") == ["a: 10.0.0.1:4001", "b: 192.0.2.1", "c: 10.0.0.1"]
    assert [(p.line, p.message) for p in report.errors] == [
        (
            2,
            "no value for $public_ipv4: pass --metadata-file with "
            "COREOS_PUBLIC_IPV4=<address> or set COREOS_PUBLIC_IPV4 in the "
            "environment",
        )
    ]


def test_substitute_stand_in_for_validate() -> None:
    report = Report()
    result = metadata.substitute(
        "b: $public_ipv4", Metadata({}, {}), report, stand_in=True
    )
    assert result == f"b: {metadata.STAND_IN_ADDRESS}"
    assert report.problems == []


def test_metadata_value_not_address() -> None:
    report = Report()
    bad = Metadata({"$private_ipv4": "eth0"}, {"$private_ipv4": "/m"})
    metadata.check_values(bad, report)
    assert [p.message for p in report.errors] == [
        "invalid $private_ipv4 'eth0' from /m: give an IPv4 address"
    ]


def test_detect_addresses_from_ip_json(monkeypatch: pytest.MonkeyPatch) -> None:
    output = (
        '[{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]},'
        ' {"ifname": "eth0", "addr_info": [{"local": "169.254.1.1"},'
        ' {"local": "10.0.0.7"}]},'
        ' {"ifname": "eth1", "addr_info": [{"local": "1.2.3.4"}]}]'
    )

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert argv[1:] == ["-json", "-4", "addr", "show", "scope", "global"]
        return subprocess.CompletedProcess(argv, 0, stdout=output, stderr="")

    monkeypatch.setattr(metadata.subprocess, "run", fake_run)
    monkeypatch.setattr(metadata.shutil, "which", lambda name: "/sbin/ip")
    assert metadata.detect_addresses() == {
        "$private_ipv4": "10.0.0.7",
        "$public_ipv4": "1.2.3.4",
    }


def test_detect_private_only_fills_public(monkeypatch: pytest.MonkeyPatch) -> None:
    output = '[{"ifname": "eth0", "addr_info": [{"local": "192.168.5.5"}]}]'
    monkeypatch.setattr(
        metadata.subprocess,
        "run",
        lambda argv, **kwargs: subprocess.CompletedProcess(argv, 0, stdout=output),
    )
    monkeypatch.setattr(metadata.shutil, "which", lambda name: "/sbin/ip")
    assert metadata.detect_addresses() == {
        "$private_ipv4": "192.168.5.5",
        "$public_ipv4": "192.168.5.5",
    }
