"""Pure parts of the systemd client: names, paths, state merging, signals."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, Variant
from hypothesis import given
from hypothesis import strategies as st

from fleetd.errors import UnitNameError
from fleetd.systemd import (
    SystemdManager,
    UnitStateTracker,
    UnitSystemdState,
    _write_atomically,
    check_unit_file_name,
    has_install_section,
    is_template,
    unit_name_from_path,
    unit_object_path,
)

LOADED_RUNNING = UnitSystemdState("loaded", "active", "running")
LOADED_DEAD = UnitSystemdState("loaded", "inactive", "dead")
NOT_FOUND = UnitSystemdState("not-found", "inactive", "dead")
SYSTEMD = ":1.1"

# Object paths as systemd 252 reported them in a test host.
KNOWN_PATHS = [
    ("dbus.socket", "dbus_2esocket"),
    ("-.slice", "_2d_2eslice"),
    (
        "proc-sys-fs-binfmt_misc.automount",
        "proc_2dsys_2dfs_2dbinfmt_5fmisc_2eautomount",
    ),
    ("modprobe@configfs.service", "modprobe_40configfs_2eservice"),
    ("postgresql@15-main.service", "postgresql_4015_2dmain_2eservice"),
    ("NetworkManager.service", "NetworkManager_2eservice"),
]


@pytest.mark.parametrize(("name", "label"), KNOWN_PATHS)
def test_object_path_matches_systemd(name: str, label: str) -> None:
    assert unit_object_path(name) == "/org/freedesktop/systemd1/unit/" + label


@pytest.mark.parametrize(("name", "label"), KNOWN_PATHS)
def test_name_from_systemd_path(name: str, label: str) -> None:
    assert unit_name_from_path("/org/freedesktop/systemd1/unit/" + label) == name


def test_object_path_of_empty_name() -> None:
    assert unit_object_path("") == "/org/freedesktop/systemd1/unit/_"
    assert unit_name_from_path("/org/freedesktop/systemd1/unit/_") == ""


def test_object_path_escapes_utf8_bytes() -> None:
    assert unit_object_path("é.service") == (
        "/org/freedesktop/systemd1/unit/_c3_a9_2eservice"
    )


@given(st.text())
def test_object_path_round_trip(name: str) -> None:
    path = unit_object_path(name)
    assert path.isascii()
    assert unit_name_from_path(path) == name


@pytest.mark.parametrize(
    "path",
    [
        "/org/freedesktop/systemd1",
        "/org/freedesktop/systemd1/job/12",
        "/org/freedesktop/systemd1/unit/a_2",
        "/org/freedesktop/systemd1/unit/a_zzb",
        "/org/freedesktop/systemd1/unit/a.service",
        "/org/freedesktop/systemd1/unit/_ff",
    ],
)
def test_name_from_path_rejects_other_paths(path: str) -> None:
    assert unit_name_from_path(path) is None


def test_name_from_path_accepts_uppercase_hex() -> None:
    assert unit_name_from_path("/org/freedesktop/systemd1/unit/a_2Eservice") == (
        "a.service"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web@.service", True),
        ("web@1.service", False),
        ("web.service", False),
        ("@.service", True),
    ],
)
def test_is_template(name: str, expected: bool) -> None:
    assert is_template(name) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=a.target\n", True),
        ("[Service]\nExecStart=/bin/true\n  [Install]  \n", True),
        ("[Install]", True),
        ("[Service]\nExecStart=/bin/true\n", False),
        ("[Service]\n# [Install]\n", False),
        ("[Service]\nDescription=[Install]\n", False),
        ("[InstallX]\n", False),
    ],
)
def test_has_install_section(raw: str, expected: bool) -> None:
    assert has_install_section(raw) is expected


@pytest.mark.parametrize(
    "name",
    [
        "web.service",
        "web@1.service",
        "db.socket",
        "a.timer",
        "b.path",
        "m.mount",
        "n.automount",
        "d.device",
    ],
)
def test_unit_file_name_accepted(name: str) -> None:
    check_unit_file_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "without '/'"),
        ("..", "without '/'"),
        ("a/b.service", "without '/'"),
        ("../etc.service", "without '/'"),
        (".hidden.service", "must not start with '.'"),
        ("web.target", "the type must be one of"),
        ("web", "the type must be one of"),
    ],
)
def test_unit_file_name_rejected(name: str, message: str) -> None:
    with pytest.raises(UnitNameError, match=message) as raised:
        check_unit_file_name(name)
    assert repr(name) in str(raised.value)


def test_write_atomically_sets_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "units" / "web.service"
    old_umask = os.umask(0o077)
    try:
        _write_atomically(path, "[Service]\nExecStart=/bin/true\n")
        _write_atomically(path, "[Service]\nExecStart=/bin/false\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "[Service]\nExecStart=/bin/false\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["web.service"]


def test_local_units_lists_recognised_types(tmp_path: Path) -> None:
    for name in ["b.service", "a.socket", "c.target", ".b.service.x1.tmp", "notes"]:
        (tmp_path / name).write_text("")
    manager = SystemdManager(units_dir=tmp_path)
    assert manager.local_units() == ["a.socket", "b.service"]


def test_local_units_of_missing_directory(tmp_path: Path) -> None:
    manager = SystemdManager(units_dir=tmp_path / "missing")
    assert manager.local_units() == []


# The state tracker


def make_tracker(*names: str) -> tuple[UnitStateTracker, list[tuple[str, str]]]:
    tracker = UnitStateTracker()
    events: list[tuple[str, str]] = []
    tracker.add_callback(lambda name, state: events.append((name, state.sub)))
    tracker.track(names)
    return tracker, events


def test_tracker_reports_first_state_and_changes_only() -> None:
    tracker, events = make_tracker("a.service")
    assert tracker.observe("a.service", LOADED_DEAD, (1, 10))
    assert not tracker.observe("a.service", LOADED_DEAD, (1, 11))
    assert tracker.observe("a.service", LOADED_RUNNING, (1, 12))
    assert events == [("a.service", "dead"), ("a.service", "running")]


def test_tracker_drops_older_observation() -> None:
    tracker, events = make_tracker("a.service")
    tracker.observe("a.service", LOADED_RUNNING, (1, 20))
    assert not tracker.observe("a.service", LOADED_DEAD, (1, 19))
    assert tracker.state("a.service") == LOADED_RUNNING
    assert events == [("a.service", "running")]


def test_tracker_new_generation_outranks_high_serials() -> None:
    tracker, _ = make_tracker("a.service")
    tracker.observe("a.service", LOADED_RUNNING, (tracker.generation, 5000))
    tracker.new_generation()
    assert tracker.observe("a.service", LOADED_DEAD, (tracker.generation, 3))
    assert tracker.state("a.service") == LOADED_DEAD


def test_tracker_ignores_untracked_units() -> None:
    tracker, events = make_tracker("a.service")
    assert not tracker.observe("b.service", LOADED_DEAD, (1, 1))
    assert events == []


def test_tracker_forgets_units_no_longer_tracked() -> None:
    tracker, events = make_tracker("a.service")
    tracker.observe("a.service", LOADED_RUNNING, (1, 5))
    assert tracker.track(["b.service"]) == {"b.service"}
    assert tracker.state("a.service") is None
    assert tracker.track(["a.service", "b.service"]) == {"a.service"}
    assert tracker.observe("a.service", LOADED_RUNNING, (1, 1))
    assert events == [("a.service", "running"), ("a.service", "running")]


def test_tracker_skips_templates() -> None:
    tracker, _ = make_tracker("web@.service", "web@1.service")
    assert tracker.tracked == frozenset({"web@1.service"})


def test_observe_active_keeps_load_state() -> None:
    tracker, _ = make_tracker("a.service")
    tracker.observe("a.service", NOT_FOUND, (1, 1))
    assert tracker.observe_active("a.service", "active", "running", (1, 2))
    assert tracker.state("a.service") == UnitSystemdState(
        "not-found", "active", "running"
    )


def test_observe_active_needs_a_stored_load_state() -> None:
    tracker, events = make_tracker("a.service")
    assert not tracker.observe_active("a.service", "active", "running", (1, 2))
    assert tracker.state("a.service") is None
    assert events == []


def test_membership_refresh_settles_when_unchanged() -> None:
    tracker, _ = make_tracker("a.service")
    tracker.observe("a.service", LOADED_DEAD, (1, 1))
    assert tracker.wants_membership_refresh("a.service")
    tracker.observe("a.service", LOADED_DEAD, (1, 5), membership=True)
    assert not tracker.wants_membership_refresh("a.service")


def test_membership_refresh_with_change_does_not_settle() -> None:
    tracker, _ = make_tracker("a.service")
    tracker.observe("a.service", LOADED_DEAD, (1, 1))
    tracker.observe("a.service", NOT_FOUND, (1, 5), membership=True)
    assert tracker.wants_membership_refresh("a.service")


def test_settled_unit_wakes_on_change_or_touch() -> None:
    tracker, _ = make_tracker("a.service")
    tracker.observe("a.service", LOADED_DEAD, (1, 1))
    tracker.observe("a.service", LOADED_DEAD, (1, 2), membership=True)
    tracker.touch("a.service")
    assert tracker.wants_membership_refresh("a.service")

    tracker.observe("a.service", LOADED_DEAD, (1, 3), membership=True)
    tracker.observe_active("a.service", "active", "running", (1, 4))
    assert tracker.wants_membership_refresh("a.service")


def test_tracker_callback_error_does_not_stop_others() -> None:
    tracker, events = make_tracker("a.service")

    def broken(name: str, state: UnitSystemdState) -> None:
        raise RuntimeError("broken callback")

    tracker._callbacks.insert(0, broken)
    tracker.observe("a.service", LOADED_DEAD, (1, 1))
    assert events == [("a.service", "dead")]


# Signal handling, with messages built by hand


def signal(
    member: str,
    body: list[object],
    *,
    path: str = "/org/freedesktop/systemd1",
    interface: str = "org.freedesktop.systemd1.Manager",
    signature: str,
    serial: int,
    sender: str = SYSTEMD,
) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
        serial=serial,
        sender=sender,
    )


def properties_changed(
    name: str, active: str, sub: str, serial: int, sender: str = SYSTEMD
) -> Message:
    changed = {"ActiveState": Variant("s", active), "SubState": Variant("s", sub)}
    return signal(
        "PropertiesChanged",
        ["org.freedesktop.systemd1.Unit", changed, ["Conditions"]],
        path=unit_object_path(name),
        interface="org.freedesktop.DBus.Properties",
        signature="sa{sv}as",
        serial=serial,
        sender=sender,
    )


def make_manager(
    *names: str,
) -> tuple[SystemdManager, list[tuple[str, UnitSystemdState]]]:
    manager = SystemdManager()
    manager._systemd_owner = SYSTEMD
    events: list[tuple[str, UnitSystemdState]] = []
    manager.watch(lambda name, state: events.append((name, state)))
    manager.track(names)
    manager._pending.clear()
    return manager, events


def test_properties_changed_updates_watched_unit() -> None:
    manager, events = make_manager("a.service")
    generation = manager._tracker.generation
    manager._tracker.observe("a.service", LOADED_DEAD, (generation, 1))
    manager._on_message(properties_changed("a.service", "active", "running", 2))
    assert events[-1] == ("a.service", LOADED_RUNNING)
    assert manager._pending == set()


def test_properties_changed_without_load_state_requests_read() -> None:
    manager, events = make_manager("a.service")
    manager._on_message(properties_changed("a.service", "active", "running", 2))
    assert events == []
    assert manager._pending == {"a.service"}


def test_signal_from_another_sender_is_ignored() -> None:
    manager, events = make_manager("a.service")
    manager._tracker.observe("a.service", LOADED_DEAD, (manager._tracker.generation, 1))
    manager._on_message(
        properties_changed("a.service", "active", "running", 2, sender=":1.99")
    )
    assert events == [("a.service", LOADED_DEAD)]


def test_reloading_finished_requests_all_watched_units() -> None:
    manager, _ = make_manager("a.service", "b.service")
    manager._on_message(signal("Reloading", [True], signature="b", serial=3))
    assert manager._pending == set()
    manager._on_message(signal("Reloading", [False], signature="b", serial=4))
    assert manager._pending == {"a.service", "b.service"}


def test_job_removed_requests_its_unit() -> None:
    manager, _ = make_manager("a.service")
    body: list[object] = [7, "/org/freedesktop/systemd1/job/7", "a.service", "done"]
    manager._on_message(signal("JobRemoved", body, signature="uoss", serial=3))
    other: list[object] = [8, "/org/freedesktop/systemd1/job/8", "b.service", "done"]
    manager._on_message(signal("JobRemoved", other, signature="uoss", serial=4))
    assert manager._pending == {"a.service"}


def test_unit_removed_requests_membership_read_until_settled() -> None:
    manager, _ = make_manager("a.service")
    path = unit_object_path("a.service")
    manager._on_message(
        signal("UnitRemoved", ["a.service", path], signature="so", serial=3)
    )
    assert manager._pending_membership == {"a.service"}

    manager._pending_membership.clear()
    generation = manager._tracker.generation
    manager._tracker.observe("a.service", NOT_FOUND, (generation, 4))
    manager._tracker.observe("a.service", NOT_FOUND, (generation, 5), membership=True)
    manager._on_message(
        signal("UnitNew", ["a.service", path], signature="so", serial=6)
    )
    assert manager._pending_membership == set()


def owner_changed(old_owner: str, new_owner: str, serial: int) -> Message:
    return signal(
        "NameOwnerChanged",
        ["org.freedesktop.systemd1", old_owner, new_owner],
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        signature="sss",
        serial=serial,
        sender="org.freedesktop.DBus",
    )


async def test_systemd_rejoining_bus_starts_new_generation() -> None:
    manager, _ = make_manager("a.service")
    before = manager._tracker.generation
    manager._on_message(owner_changed(SYSTEMD, "", 9))
    assert manager._systemd_owner is None
    assert manager._tracker.generation == before

    manager._on_message(owner_changed("", ":1.7", 10))
    assert manager._systemd_owner == ":1.7"
    assert manager._tracker.generation == before + 1

    # The re-subscription fails without a connection, then every watched
    # unit is queued to be read again.
    await asyncio.gather(*manager._tasks)
    assert manager._pending == {"a.service"}
