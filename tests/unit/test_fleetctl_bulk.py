"""fleetctl.bulk: the writes of submit, load and start, and their batches."""

from __future__ import annotations

import asyncio

from fleetctl.bulk import UnitWrite, WriteKind, batches, plan_writes, store_units
from fleetctl.creation import NewUnit
from fleetd.model import DesiredState

INACTIVE = DesiredState.INACTIVE
LAUNCHED = DesiredState.LAUNCHED
CREATE = WriteKind.CREATE
REPLACE = WriteKind.REPLACE
DESIRE = WriteKind.DESIRE


def new(name: str, replace: bool = False) -> NewUnit:
    return NewUnit(name=name, raw=f"# {name}\n", source=name, replace=replace)


def kinds(writes: list[UnitWrite]) -> list[tuple[WriteKind, str, DesiredState]]:
    return [(write.kind, write.name, write.desired) for write in writes]


# -- plan_writes -----------------------------------------------------------------


def test_plan_submit_stores_files_inactive() -> None:
    files = [new("a.service"), new("b.service", replace=True)]
    writes = plan_writes(files, ["a.service", "b.service", "c.service"], None)
    assert kinds(writes) == [
        (CREATE, "a.service", INACTIVE),
        (REPLACE, "b.service", INACTIVE),
    ]
    assert writes[0].raw == "# a.service\n"


def test_plan_start_sets_every_name() -> None:
    files = [new("b.service"), new("c.service", replace=True)]
    names = ["a.service", "b.service", "c.service"]
    writes = plan_writes(files, names, LAUNCHED)
    assert kinds(writes) == [
        (DESIRE, "a.service", LAUNCHED),
        (CREATE, "b.service", LAUNCHED),
        (REPLACE, "c.service", LAUNCHED),
    ]
    assert writes[0].raw == ""


def test_plan_keeps_files_not_named() -> None:
    writes = plan_writes([new("x.service")], [], LAUNCHED)
    assert kinds(writes) == [(CREATE, "x.service", LAUNCHED)]


# -- batches -----------------------------------------------------------------------


def no_size(write: UnitWrite) -> int:
    return 0


def test_batches_fill_up_to_the_limit() -> None:
    creates = [UnitWrite(CREATE, f"u{i}.service", LAUNCHED, "x") for i in range(43)]
    split = batches(creates, 128, 1, no_size)
    assert [len(batch) for batch in split] == [42, 1]
    assert [write for batch in split for write in batch] == creates


def test_batches_count_each_kind() -> None:
    writes = [
        UnitWrite(CREATE, "a.service", LAUNCHED, "x"),
        UnitWrite(DESIRE, "b.service", LAUNCHED),
        UnitWrite(REPLACE, "c.service", LAUNCHED, "x"),
        UnitWrite(DESIRE, "d.service", LAUNCHED),
    ]
    assert [len(batch) for batch in batches(writes, 5, 1, no_size)] == [2, 2]
    assert [len(batch) for batch in batches(writes, 7, 1, no_size)] == [3, 1]
    assert batches([], 128, 1, no_size) == []


def test_batches_give_oversized_write_its_own() -> None:
    writes = [UnitWrite(CREATE, f"u{i}.service", LAUNCHED, "x") for i in range(2)]
    assert [len(batch) for batch in batches(writes, 2, 1, no_size)] == [1, 1]


def test_batches_limit_bytes() -> None:
    writes = [
        UnitWrite(CREATE, f"u{i}.service", LAUNCHED, "x" * size)
        for i, size in enumerate([40, 50, 10, 200, 5])
    ]

    def raw_size(write: UnitWrite) -> int:
        return len(write.raw)

    split = batches(writes, 128, 100, raw_size)
    assert [[len(write.raw) for write in batch] for batch in split] == [
        [40, 50, 10],
        [200],
        [5],
    ]


# -- store_units through the Registry protocol ----------------------------------------


class Recorder:
    """The write half of the Registry protocol over dictionaries."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.desired: dict[str, DesiredState] = {}

    async def create_unit(self, name: str, raw: str, desired: DesiredState) -> bool:
        if name in self.files:
            return False
        self.files[name] = raw
        self.desired[name] = desired
        return True

    async def replace_unit(self, name: str, raw: str, desired: DesiredState) -> None:
        self.files[name] = raw
        self.desired[name] = desired

    async def set_desired_state(self, name: str, desired: DesiredState) -> bool:
        if name not in self.files:
            return False
        self.desired[name] = desired
        return True


def store(
    registry: Recorder, writes: list[UnitWrite], activate: bool
) -> tuple[list[str], list[str]]:
    reported: list[str] = []
    missing = asyncio.run(
        store_units(
            registry,  # type: ignore[arg-type]
            writes,
            activate=activate,
            report=reported.append,
        )
    )
    return reported, missing


def test_store_start_keeps_existing_file() -> None:
    registry = Recorder()
    registry.files["b.service"] = "# theirs\n"
    registry.desired["b.service"] = INACTIVE
    writes = [
        UnitWrite(CREATE, "a.service", LAUNCHED, "# a\n"),
        UnitWrite(CREATE, "b.service", LAUNCHED, "# b\n"),
        UnitWrite(DESIRE, "gone.service", LAUNCHED),
    ]
    reported, missing = store(registry, writes, activate=True)
    assert reported == ["a.service"]
    assert missing == ["gone.service"]
    assert registry.files == {"a.service": "# a\n", "b.service": "# theirs\n"}
    assert registry.desired == {"a.service": LAUNCHED, "b.service": LAUNCHED}


def test_store_submit_leaves_existing_unit() -> None:
    registry = Recorder()
    registry.files["b.service"] = "# theirs\n"
    registry.desired["b.service"] = LAUNCHED
    writes = [
        UnitWrite(CREATE, "b.service", INACTIVE, "# b\n"),
        UnitWrite(REPLACE, "c.service", INACTIVE, "# c\n"),
    ]
    reported, missing = store(registry, writes, activate=False)
    assert reported == ["c.service"]
    assert missing == []
    assert registry.files["b.service"] == "# theirs\n"
    assert registry.desired["b.service"] is LAUNCHED
