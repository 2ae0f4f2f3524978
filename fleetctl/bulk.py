"""Writing the units of one submit, load or start in few round trips.

``store_units`` stores new and replaced unit files and sets desired states.
Over etcd it packs many units into each transaction, and over the API it
sends its requests on several connections at once. Any other registry, such
as the fakes of the tests, gets one ``Registry`` call per unit.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetctl.client import ClientRegistry, api_registry_of, etcd_registry_of
from fleetctl.creation import NewUnit
from fleetd.model import DesiredState

if TYPE_CHECKING:
    from fleetctl.api import ApiRegistry
    from fleetd.registry.etcd import EtcdRegistry

log = logging.getLogger(__name__)

# Requests in flight at once over the API. The API has no bulk write, so a
# start of 300 units is 300 PUTs, and each waits until fleetd's registry
# mirror shows its write.
API_CONNECTIONS = 8

# etcd rejects a request larger than --max-request-bytes, 1572864 bytes by
# default (`etcd --help` of etcd 3.4.23). A transaction's unit files stay
# under 1 MiB, which leaves room for the keys and the message framing.
MAX_TXN_FILE_BYTES = 1024 * 1024
# An estimate of the other bytes one unit adds to a transaction: three keys
# (compared, file, desired state) of a name of up to 255 bytes under the
# default key prefix, and the desired state.
KEYS_BYTES = 1024

Report = Callable[[str], None]


class WriteKind(enum.Enum):
    """The kind of write a unit gets in a store."""

    # Store the file and desired state, unless a unit of that name exists.
    CREATE = "create"
    # Store the file and desired state, whatever the registry holds.
    REPLACE = "replace"
    # Set only the desired state, of a unit that must exist.
    DESIRE = "desire"


@dataclass(frozen=True)
class UnitWrite:
    """One unit's part of a store."""

    kind: WriteKind
    name: str
    desired: DesiredState
    # The serialized unit file; "" for DESIRE.
    raw: str = ""

    @property
    def operations(self) -> int:
        """Return the etcd transaction operations it takes, compares included."""
        return 3 if self.kind is WriteKind.CREATE else 2


def plan_writes(
    files: Sequence[NewUnit],
    names: Sequence[str],
    desired: DesiredState | None,
) -> list[UnitWrite]:
    """List the writes that store ``files`` and move ``names`` to ``desired``.

    ``desired`` None (submit) stores new files with desired state inactive
    and sets no other desired state. Otherwise each file is stored with
    ``desired``, and every other name in ``names`` gets a DESIRE write. The
    writes follow the order of ``names``, then any file not named there.
    """
    by_name = {file.name: file for file in files}
    state = desired or DesiredState.INACTIVE
    writes: list[UnitWrite] = []
    ordered = [*names, *(file.name for file in files if file.name not in names)]
    for name in ordered:
        file = by_name.get(name)
        if file is not None:
            kind = WriteKind.REPLACE if file.replace else WriteKind.CREATE
            writes.append(UnitWrite(kind, name, state, file.raw))
        elif desired is not None:
            writes.append(UnitWrite(WriteKind.DESIRE, name, desired))
    return writes


def batches(
    writes: Sequence[UnitWrite],
    max_operations: int,
    max_bytes: int,
    size: Callable[[UnitWrite], int],
) -> list[list[UnitWrite]]:
    """Split ``writes``, in order, into runs within both limits.

    A run has at most ``max_operations`` operations, and the ``size`` of its
    writes adds up to at most ``max_bytes``, except that a single write
    larger than that gets a run of its own.
    """
    result: list[list[UnitWrite]] = []
    current: list[UnitWrite] = []
    operations = 0
    total = 0
    for write in writes:
        write_size = size(write)
        too_many = operations + write.operations > max_operations
        if current and (too_many or total + write_size > max_bytes):
            result.append(current)
            current, operations, total = [], 0, 0
        current.append(write)
        operations += write.operations
        total += write_size
    if current:
        result.append(current)
    return result


async def store_units(
    registry: ClientRegistry,
    writes: Sequence[UnitWrite],
    *,
    activate: bool,
    report: Report,
) -> list[str]:
    """Carry out ``writes`` and return the names that no longer exist.

    Calls ``report(name)`` for each unit whose file this call stored, in the
    order of ``writes``. A CREATE of a unit that exists already (another
    client created it after the registry was read) keeps that unit's file,
    and with ``activate`` it still gets the desired state. A unit that must
    exist for its desired state but does not (destroyed meanwhile) is
    returned. Raises ``FleetError`` when etcd or the API fails; the writes
    reported until then are stored.
    """
    etcd = etcd_registry_of(registry)
    if etcd is not None:
        return await _store_in_transactions(etcd, writes, activate, report)
    api = api_registry_of(registry)
    if api is not None:
        return _store_concurrently(api, writes, activate, report)
    missing: list[str] = []
    for write in writes:
        await _store_one(registry, write, activate, report, missing)
    return missing


async def _store_one(
    registry: ClientRegistry,
    write: UnitWrite,
    activate: bool,
    report: Report,
    missing: list[str],
) -> None:
    """Carry out one write through the ``Registry`` protocol."""
    if write.kind is WriteKind.REPLACE:
        log.debug("replacing unit %s", write.name)
        await registry.replace_unit(write.name, write.raw, write.desired)
        report(write.name)
        return
    if write.kind is WriteKind.CREATE:
        log.debug("creating unit %s", write.name)
        if await registry.create_unit(write.name, write.raw, write.desired):
            report(write.name)
            return
        log.debug("unit %s appeared meanwhile; kept the registry's", write.name)
        if not activate:
            return
    if not await registry.set_desired_state(write.name, write.desired):
        missing.append(write.name)


async def _store_in_transactions(
    registry: EtcdRegistry,
    writes: Sequence[UnitWrite],
    activate: bool,
    report: Report,
) -> list[str]:
    """Write many units per transaction; a batch whose compares fail goes unit by unit.

    A compare fails only when another client created or destroyed one of the
    batch's units since the registry was read. The transaction then wrote
    nothing, so the batch is written again one unit at a time, which tells
    which unit it was and keeps the other client's file.
    """
    from fleetd.registry import view as keys
    from fleetd.registry.etcd import MAX_TXN_OPS, serialized_hash

    records = {
        write.name: keys.encode_unit_file(
            write.name, serialized_hash(write.raw), write.raw
        )
        for write in writes
        if write.kind is not WriteKind.DESIRE
    }

    def size(write: UnitWrite) -> int:
        return len(records.get(write.name, "").encode()) + KEYS_BYTES

    missing: list[str] = []
    for batch in batches(writes, MAX_TXN_OPS, MAX_TXN_FILE_BYTES, size):
        compares: list[Any] = []
        puts: list[Any] = []
        for write in batch:
            file_key = keys.unit_file_key(write.name)
            if write.kind is WriteKind.CREATE:
                compares.append(registry.cmp_missing(file_key))
            elif write.kind is WriteKind.DESIRE:
                compares.append(registry.cmp_exists(file_key))
            if write.kind is not WriteKind.DESIRE:
                puts.append(registry.op_put(file_key, records[write.name]))
            puts.append(
                registry.op_put(keys.desired_key(write.name), write.desired.value)
            )
        operation = f"store units {batch[0].name} to {batch[-1].name}"
        if await registry.txn(compares, puts, operation):
            for write in batch:
                if write.kind is not WriteKind.DESIRE:
                    report(write.name)
            continue
        log.debug("%s: a unit was created or destroyed meanwhile", operation)
        for write in batch:
            await _store_one(registry, write, activate, report, missing)
    return missing


def _store_concurrently(
    registry: ApiRegistry,
    writes: Sequence[UnitWrite],
    activate: bool,
    report: Report,
) -> list[str]:
    """Send the writes over up to API_CONNECTIONS connections at once.

    Each worker thread has its own clone of ``registry``, and so its own
    keep-alive connection. The results are reported in the order of
    ``writes``.
    """
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    clones: list[ApiRegistry] = []
    clones_lock = threading.Lock()

    def own_registry() -> ApiRegistry:
        clone: ApiRegistry | None = getattr(local, "registry", None)
        if clone is None:
            clone = registry.clone()
            local.registry = clone
            with clones_lock:
                clones.append(clone)
        return clone

    def store(write: UnitWrite) -> tuple[bool, bool]:
        """Return (whether the file was stored, whether the unit is missing)."""
        api = own_registry()
        if write.kind is not WriteKind.DESIRE:
            replace = write.kind is WriteKind.REPLACE
            if api.put_unit(
                write.name, write.raw, write.desired, create_only=not replace
            ):
                return True, False
            if not activate:
                return False, False
        return False, not api.put_desired_state(write.name, write.desired)

    missing: list[str] = []
    workers = max(1, min(API_CONNECTIONS, len(writes)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fleetctl-api")
    try:
        futures = [pool.submit(store, write) for write in writes]
        for write, future in zip(writes, futures, strict=True):
            stored, gone = future.result()
            if stored:
                report(write.name)
            if gone:
                missing.append(write.name)
    finally:
        # After a failure, the writes not yet started are dropped.
        pool.shutdown(wait=True, cancel_futures=True)
        for clone in clones:
            clone.close()
    return missing
