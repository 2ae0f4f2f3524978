"""The mirror's wake-up events and their ignored key prefixes."""

from __future__ import annotations

from typing import Any, cast

from fleetd.registry.etcd import EtcdRegistry
from fleetd.registry.mirror import RegistryMirror


def _mirror() -> RegistryMirror:
    # _notify touches no etcd, so no registry is needed.
    return RegistryMirror(cast(EtcdRegistry, cast(Any, None)))


def test_notify_sets_plain_subscriber() -> None:
    mirror = _mirror()
    event = mirror.subscribe()
    mirror._notify(["states/a.service/m1"])
    assert event.is_set()


def test_notify_skips_ignored_keys() -> None:
    mirror = _mirror()
    event = mirror.subscribe(ignore=("states/",))
    mirror._notify(["states/a.service/m1", "states/b.service/m2"])
    assert not event.is_set()


def test_notify_mixed_keys_wake() -> None:
    mirror = _mirror()
    event = mirror.subscribe(ignore=("states/",))
    mirror._notify(["states/a.service/m1", "units/a.service/placement"])
    assert event.is_set()


def test_full_read_wakes_everyone() -> None:
    mirror = _mirror()
    event = mirror.subscribe(ignore=("states/",))
    mirror._notify()
    assert event.is_set()
