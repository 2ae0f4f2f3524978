"""fleetctl.bulk against a real etcd and a real API server.

Each test writes 100 units, one of which another client created first with
its own file, plus a desired state for a unit that does not exist.
"""

# The fixtures api, ready_api and certificates come from test_api, so the
# test functions' parameters redefine those imported names on purpose.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetctl.api import ApiRegistry, TLSClientFiles, parse_endpoint
from fleetctl.bulk import UnitWrite, WriteKind, store_units
from fleetctl.client import ClientRegistry
from fleetd.etcdserver import EtcdServer
from fleetd.model import DesiredState
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.unit import UnitFile
from tests.integration.test_api import (  # noqa: F401
    Api,
    api,
    certificates,
    ready_api,
)
from tests.integration.test_fleetctl import Fleetctl

pytestmark = pytest.mark.integration

LAUNCHED = DesiredState.LAUNCHED
THEIRS = UnitFile.parse("[Service]\nExecStart=/bin/sleep 1\n").serialize()
NAMES = [f"web-{number:03d}.service" for number in range(100)]


def unit_text(name: str) -> str:
    return f"[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep 100\n"


def start_writes() -> list[UnitWrite]:
    writes = [
        UnitWrite(
            WriteKind.CREATE,
            name,
            LAUNCHED,
            UnitFile.parse(unit_text(name)).serialize(),
        )
        for name in NAMES
    ]
    writes.append(UnitWrite(WriteKind.DESIRE, "gone.service", LAUNCHED))
    return writes


async def store(registry: ClientRegistry) -> tuple[list[str], list[str]]:
    reported: list[str] = []
    missing = await store_units(
        registry, start_writes(), activate=True, report=reported.append
    )
    return reported, missing


async def check_stored(registry: EtcdRegistry, reported: list[str]) -> None:
    existing = NAMES[50]
    assert reported == [name for name in NAMES if name != existing]
    units = {unit.name: unit for unit in await registry.units()}
    assert sorted(units) == NAMES
    assert all(unit.desired_state is LAUNCHED for unit in units.values())
    assert units[existing].raw == THEIRS
    assert units[NAMES[0]].raw == UnitFile.parse(unit_text(NAMES[0])).serialize()


@pytest.fixture
async def registry(
    etcd_server: EtcdServer, etcd_prefix: str
) -> AsyncIterator[EtcdRegistry]:
    async with open_registry([etcd_server.client_url], etcd_prefix, 5.0) as opened:
        yield opened


async def revision(registry: EtcdRegistry) -> int:
    revision, _ = await registry.read_all("none/")
    return revision


async def test_etcd_batches_without_clobbering(registry: EtcdRegistry) -> None:
    await registry.create_unit(NAMES[50], THEIRS, DesiredState.INACTIVE)
    before = await revision(registry)

    reported, missing = await store(registry)

    assert missing == ["gone.service"]
    await check_stored(registry, reported)
    # Each transaction adds one revision, and a batch contains 42 units. The
    # first batch is stored whole. The second fails on the existing unit, so
    # it is written unit by unit: 41 creates and one desired state. The
    # third fails on the missing unit and is written unit by unit: 16 creates.
    assert await revision(registry) - before == 1 + 42 + 16


async def test_etcd_start_of_many_files(
    registry: EtcdRegistry, etcd_server: EtcdServer, etcd_prefix: str, tmp_path: Path
) -> None:
    for name in NAMES:
        (tmp_path / name).write_text(unit_text(name))
    await registry.create_unit(NAMES[0], THEIRS, DesiredState.INACTIVE)
    fleetctl = Fleetctl(etcd_server.client_url, etcd_prefix, tmp_path)
    before = await revision(registry)

    started = await asyncio.to_thread(fleetctl.run, "start", "--no-block", *NAMES)

    assert started.returncode == 0, started.stderr
    assert started.stdout == "".join(
        [f"Unit {name} inactive\n" for name in NAMES[1:]]
        + [f"Triggered unit {name} start\n" for name in NAMES]
    )
    assert f"WARNING: Unit {NAMES[0]} in registry differs" in started.stderr
    units = {unit.name: unit for unit in await registry.units()}
    assert all(unit.desired_state is LAUNCHED for unit in units.values())
    assert units[NAMES[0]].raw == THEIRS
    # 3 operations per new unit and 2 for the existing one: three batches.
    assert await revision(registry) - before == 3


async def test_api_writes_concurrently_without_clobbering(ready_api: Api) -> None:
    await ready_api.registry.create_unit(NAMES[50], THEIRS, DesiredState.INACTIVE)
    endpoint = parse_endpoint(f"unix://{ready_api.socket_path}")

    def store_over_api() -> tuple[list[str], list[str]]:
        # In a thread of its own: the API client blocks, and the server
        # runs in this test's event loop.
        registry = ApiRegistry(endpoint, 5.0, TLSClientFiles())
        try:
            return asyncio.run(store(registry))
        finally:
            registry.close()

    reported, missing = await asyncio.to_thread(store_over_api)

    assert missing == ["gone.service"]
    await check_stored(ready_api.registry, reported)


async def test_etcd_batches_stay_under_request_limit(registry: EtcdRegistry) -> None:
    # 42 files of 100 KB fit 42 units' operations, but not etcd's default
    # limit of 1.5 MiB per request.
    padding = "".join(f"Environment=V{n}={'x' * 2000}\n" for n in range(50))
    writes = [
        UnitWrite(
            WriteKind.CREATE,
            name,
            LAUNCHED,
            UnitFile.parse(unit_text(name) + padding).serialize(),
        )
        for name in NAMES[:42]
    ]
    before = await revision(registry)

    reported: list[str] = []
    missing = await store_units(registry, writes, activate=True, report=reported.append)

    assert missing == []
    assert reported == NAMES[:42]
    assert len(await registry.units()) == 42
    # Ten files of about 100 KB per transaction.
    assert await revision(registry) - before == 5
