"""Unit files the benchmarks start, and bulk writes of units to the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from fleetd.model import DesiredState
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry, serialized_hash
from fleetd.unit import UnitFile

# A service that is active as soon as systemd has started it, and costs
# almost nothing while it runs.
SLEEP_UNIT = """\
[Unit]
Description=fleet benchmark unit {name}

[Service]
ExecStart=/bin/sleep infinity
{x_fleet}"""

# One compare and two writes per unit: 42 units make 126 operations, under
# etcd's default limit of 128 per transaction.
UNITS_PER_TXN = 42


def sleep_unit(name: str, x_fleet: str = "") -> str:
    """Return the text of a ``sleep infinity`` service, with optional [X-Fleet]."""
    section = f"\n[X-Fleet]\n{x_fleet}\n" if x_fleet else ""
    return SLEEP_UNIT.format(name=name, x_fleet=section)


def write_unit_files(directory: Path, names: Sequence[str]) -> list[Path]:
    """Write a ``sleep infinity`` service per name into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = directory / name
        path.write_text(sleep_unit(name))
        paths.append(path)
    return paths


def serialized(text: str) -> str:
    """Return a unit file in the serialized form fleetctl stores."""
    return UnitFile.parse(text).serialize()


async def submit_bulk(
    registry: EtcdRegistry,
    units: Sequence[tuple[str, str]],
    desired: DesiredState = DesiredState.LAUNCHED,
    concurrency: int = 8,
) -> None:
    """Create ``(name, text)`` units, UNITS_PER_TXN per transaction.

    fleetctl writes one transaction per unit. For 10,000 units the benchmarks
    batch them, so the time measured is fleet's, not the client's.
    """
    batches = [
        units[start : start + UNITS_PER_TXN]
        for start in range(0, len(units), UNITS_PER_TXN)
    ]
    limit = asyncio.Semaphore(concurrency)

    async def write(batch: Sequence[tuple[str, str]]) -> None:
        compares = []
        puts = []
        for name, text in batch:
            raw = serialized(text)
            file_key = keys.unit_file_key(name)
            compares.append(registry.cmp_missing(file_key))
            record = keys.encode_unit_file(name, serialized_hash(raw), raw)
            puts.append(registry.op_put(file_key, record))
            puts.append(registry.op_put(keys.desired_key(name), desired.value))
        async with limit:
            if not await registry.txn(compares, puts, "create benchmark units"):
                raise RuntimeError(f"a unit of {batch[0][0]}... already exists")

    await asyncio.gather(*(write(batch) for batch in batches))
