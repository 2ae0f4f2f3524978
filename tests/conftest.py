"""Fixtures shared by all tests: a real etcd and per-test key prefixes.

Tests marked `integration` need root, etcd and systemd. Without them they are
skipped with the reason, except when the CI environment variable is set:
there a missing prerequisite fails the test, so CI cannot pass by skipping.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator

import pytest

from fleetd.cluster.bootscript import SYSTEMD
from fleetd.etcdserver import EtcdServer


def missing_prerequisite() -> str | None:
    """Return why integration tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "integration tests need root (they boot systemd test hosts)"
    if EtcdServer.binary() is None:
        return "etcd is not installed: apt-get install etcd-server etcd-client"
    if not os.access(SYSTEMD, os.X_OK):
        return f"systemd is not installed: {SYSTEMD} is missing"
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: apt-get install util-linux"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip the current test, or fail it when running under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


_PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is None:
        return
    reason = missing_prerequisite()
    if reason is not None:
        skip_or_fail(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Store each phase's report on the item, so fixtures see if a test failed."""
    report = yield
    item.stash.setdefault(_PHASE_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def has_failed(request: pytest.FixtureRequest) -> Callable[[], bool]:
    """A check, for use at teardown, whether this test's setup or call failed."""

    def failed() -> bool:
        reports = request.node.stash.get(_PHASE_REPORTS, {})
        return any(report.failed for report in reports.values())

    return failed


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd on free loopback ports, shared by the whole test session."""
    if EtcdServer.binary() is None:
        skip_or_fail("etcd is not installed: apt-get install etcd-server etcd-client")
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_prefix(etcd_server: EtcdServer) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"/fleet-test/{uuid.uuid4().hex[:12]}/"
    yield prefix
    _delete_prefix(etcd_server.client_url, prefix)


def _delete_prefix(client_url: str, prefix: str) -> None:
    """Delete every key under `prefix` through etcd's JSON gateway."""
    key = prefix.encode()
    # The range end of a prefix is the prefix with its last byte incremented.
    range_end = key[:-1] + bytes([key[-1] + 1])
    body = json.dumps(
        {
            "key": base64.b64encode(key).decode(),
            "range_end": base64.b64encode(range_end).decode(),
        }
    ).encode()
    request = urllib.request.Request(
        client_url + "/v3/kv/deleterange",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5.0) as response:
        response.read()
