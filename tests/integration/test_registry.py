"""The registry, mirror, presence and leader fencing against a real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetd.engine.engine import Engine, LeadershipLost
from fleetd.errors import RegistryError
from fleetd.etcdserver import EtcdServer
from fleetd.model import DesiredState, Machine
from fleetd.presence import MachinePresence
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.registry.mirror import RegistryMirror

pytestmark = pytest.mark.integration

MACHINE_A = "a" * 32
MACHINE_B = "b" * 32
RAW = "[Service]\nExecStart=/bin/sleep 100\n"


@pytest.fixture
async def registry(
    etcd_server: EtcdServer, etcd_prefix: str
) -> AsyncIterator[EtcdRegistry]:
    async with open_registry([etcd_server.client_url], etcd_prefix, 3.0) as reg:
        yield reg


async def wait_for(condition: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_create_unit_stores_file_hash_and_desired_state(
    registry: EtcdRegistry,
) -> None:
    assert await registry.create_unit("web.service", RAW, DesiredState.INACTIVE)
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.hash == "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
    assert unit.raw == RAW
    assert unit.desired_state is DesiredState.INACTIVE
    assert unit.current_state == "inactive"


async def test_create_unit_twice_keeps_the_first(registry: EtcdRegistry) -> None:
    assert await registry.create_unit("web.service", RAW, DesiredState.INACTIVE)
    assert not await registry.create_unit(
        "web.service", "[Unit]\n", DesiredState.LAUNCHED
    )
    unit = await registry.unit("web.service")
    assert unit is not None
    assert unit.raw == RAW
    assert unit.desired_state is DesiredState.INACTIVE


async def test_desired_state_of_missing_unit_writes_nothing(
    registry: EtcdRegistry,
) -> None:
    assert not await registry.set_desired_state("nope.service", DesiredState.LAUNCHED)
    _, pairs = await registry.read_all()
    assert pairs == []


async def test_destroy_removes_every_key_of_the_unit(registry: EtcdRegistry) -> None:
    await registry.create_unit("web.service", RAW, DesiredState.LAUNCHED)
    await registry.put(keys.placement_key("web.service"), MACHINE_A)
    assert await registry.destroy_unit("web.service")
    assert not await registry.destroy_unit("web.service")
    _, pairs = await registry.read_all()
    assert pairs == []


async def test_unreachable_etcd_names_the_endpoint() -> None:
    async with open_registry(["http://127.0.0.1:9"], "/x/", 1.0) as reg:
        with pytest.raises(RegistryError, match=r"127\.0\.0\.1:9"):
            await reg.units()


async def test_mirror_follows_puts_and_deletes(registry: EtcdRegistry) -> None:
    mirror = RegistryMirror(registry)
    task = asyncio.create_task(mirror.run())
    try:
        await asyncio.wait_for(mirror.synced.wait(), 10)
        await registry.create_unit("web.service", RAW, DesiredState.LAUNCHED)
        await wait_for(lambda: "web.service" in mirror.view.files)
        await registry.destroy_unit("web.service")
        await wait_for(lambda: "web.service" not in mirror.view.files)
    finally:
        task.cancel()


async def test_machine_key_expires_with_its_lease(
    registry: EtcdRegistry, tmp_path: Path
) -> None:
    presence = MachinePresence(registry, Machine(MACHINE_A, "127.0.0.11"), ttl=2)
    task = asyncio.create_task(presence.run())
    await asyncio.wait_for(presence.registered.wait(), 10)
    await asyncio.sleep(3)  # longer than the TTL: renewals keep it alive
    assert [m.id for m in await registry.machines()] == [MACHINE_A]
    task.cancel()
    await asyncio.sleep(3.5)
    assert await registry.machines() == []


async def test_duplicate_machine_id_is_refused(registry: EtcdRegistry) -> None:
    first = MachinePresence(registry, Machine(MACHINE_A, "127.0.0.11"), ttl=5)
    second = MachinePresence(registry, Machine(MACHINE_A, "127.0.0.12"), ttl=5)
    assert await first.register_once()
    assert not await second.register_once()
    machines = await registry.machines()
    assert [m.public_ip for m in machines] == ["127.0.0.11"]
    await first.withdraw()


async def test_restarted_fleetd_adopts_its_own_lease(
    registry: EtcdRegistry, tmp_path: Path
) -> None:
    lease_file = tmp_path / "lease"
    first = MachinePresence(registry, Machine(MACHINE_A), ttl=30, lease_file=lease_file)
    assert await first.register_once()
    again = MachinePresence(registry, Machine(MACHINE_A), ttl=30, lease_file=lease_file)
    assert await again.register_once()
    assert again.lease == first.lease
    await again.withdraw()
    assert await registry.machines() == []


async def test_deposed_leader_cannot_write_placements(registry: EtcdRegistry) -> None:
    presence_a = MachinePresence(registry, Machine(MACHINE_A), ttl=30)
    presence_b = MachinePresence(registry, Machine(MACHINE_B), ttl=30)
    assert await presence_a.register_once()
    assert await presence_b.register_once()
    mirror = RegistryMirror(registry)
    engine_a = Engine(registry, mirror, presence_a, interval=1.0)
    engine_b = Engine(registry, mirror, presence_b, interval=1.0)

    assert await engine_a.campaign()
    assert not await engine_b.campaign()
    # A's lease ends (as when its machine dies); B takes over.
    await presence_a.withdraw()
    assert await engine_b.campaign()

    with pytest.raises(LeadershipLost):
        await engine_a.commit([(keys.placement_key("web.service"), MACHINE_A)])
    assert await registry.get(keys.placement_key("web.service")) is None

    await engine_b.commit([(keys.placement_key("web.service"), MACHINE_B)])
    found = await registry.get(keys.placement_key("web.service"))
    assert found is not None
    assert found[0].decode() == MACHINE_B
    await presence_b.withdraw()


async def test_commit_splits_large_batches(registry: EtcdRegistry) -> None:
    presence = MachinePresence(registry, Machine(MACHINE_A), ttl=30)
    assert await presence.register_once()
    engine = Engine(registry, RegistryMirror(registry), presence, interval=1.0)
    assert await engine.campaign()
    ops: list[tuple[str, str | None]] = [
        (keys.placement_key(f"u{i}.service"), MACHINE_A) for i in range(300)
    ]
    await engine.commit(ops)
    _, pairs = await registry.read_all()
    assert sum(1 for key, _ in pairs if key.endswith("/placement")) == 300
    await presence.withdraw()


async def test_commit_keeps_last_write_of_a_key(registry: EtcdRegistry) -> None:
    presence = MachinePresence(registry, Machine(MACHINE_A), ttl=30)
    assert await presence.register_once()
    engine = Engine(registry, RegistryMirror(registry), presence, interval=1.0)
    assert await engine.campaign()
    key = keys.placement_key("web.service")
    await engine.commit([(key, None), (key, MACHINE_B)])
    found = await registry.get(key)
    assert found is not None
    assert found[0].decode() == MACHINE_B
    await presence.withdraw()


async def test_engine_skips_passes_while_nothing_changes(
    registry: EtcdRegistry,
) -> None:
    presence = MachinePresence(registry, Machine(MACHINE_A), ttl=30)
    assert await presence.register_once()
    mirror = RegistryMirror(registry)
    engine = Engine(registry, mirror, presence, interval=0.05)
    following = asyncio.create_task(mirror.run())
    running = asyncio.create_task(engine.run())
    try:
        await wait_for(lambda: engine.passes > 0)
        await asyncio.sleep(0.5)
        quiet = engine.passes
        await asyncio.sleep(0.5)

        assert engine.passes == quiet

        await registry.create_unit("web.service", RAW, DesiredState.LAUNCHED)
        await wait_for(lambda: "web.service" in mirror.view.placements)
        assert engine.passes > quiet
    finally:
        running.cancel()
        following.cancel()
        await asyncio.gather(running, following, return_exceptions=True)
        await presence.withdraw()


async def test_read_view_pages_every_key_once(registry: EtcdRegistry) -> None:
    names = [f"web-{index:04d}.service" for index in range(2600)]
    ops = [registry.op_put(keys.desired_key(name), "launched") for name in names]
    for start in range(0, len(ops), 120):
        await registry.txn([], ops[start : start + 120], "fill")
    await registry.put(
        keys.machine_key(MACHINE_A), keys.encode_machine(Machine(MACHINE_A))
    )

    revision, pairs = await registry.read_all(keys.UNITS)
    view = await registry.read_view(keys.UNITS, keys.MACHINES)

    assert len(pairs) == len(set(pairs)) == 2600
    assert revision > 0
    assert sorted(view.desired) == names
    assert list(view.machines) == [MACHINE_A]
