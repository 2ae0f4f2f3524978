"""The original fleet's engine and registry metrics in the /metrics exposition."""

from __future__ import annotations

import pytest

from fleetd.api import metrics


def test_engine_and_registry_metric_names() -> None:
    text = metrics.REGISTRY.render()
    expected = [
        ("fleet_engine_leader_start_time", "gauge"),
        ("fleet_engine_task_count_total", "counter"),
        ("fleet_engine_task_failure_count_total", "counter"),
        ("fleet_engine_reconcile_count_total", "counter"),
        ("fleet_engine_reconcile_duration_second", "summary"),
        ("fleet_engine_reconcile_failure_count_total", "counter"),
        ("fleet_registry_operation_count_total", "counter"),
        ("fleet_registry_operation_duration_second", "summary"),
        ("fleet_registry_operation_failed_count_total", "counter"),
    ]
    for name, kind in expected:
        assert f"# TYPE {name} {kind}\n" in text


def test_record_reconcile_counts_tasks() -> None:
    places = metrics.ENGINE_TASKS.value(type="place")
    unplaces = metrics.ENGINE_TASKS.value(type="unplace")
    passes = metrics.ENGINE_RECONCILES.value()
    metrics.record_reconcile(["place", "place", "unplace"], 0.25)
    assert metrics.ENGINE_TASKS.value(type="place") == places + 2
    assert metrics.ENGINE_TASKS.value(type="unplace") == unplaces + 1
    assert metrics.ENGINE_RECONCILES.value() == passes + 1
    text = metrics.REGISTRY.render()
    assert "fleet_engine_reconcile_duration_second_count " in text
    assert 'fleet_engine_task_count_total{type="place"} ' in text


def test_record_reconcile_failure() -> None:
    lost = metrics.ENGINE_RECONCILE_FAILURES.value(type="leadership_lost")
    tasks = metrics.ENGINE_TASK_FAILURES.value()
    metrics.record_reconcile_failure("leadership_lost", 3)
    assert metrics.ENGINE_RECONCILE_FAILURES.value(type="leadership_lost") == lost + 1
    assert metrics.ENGINE_TASK_FAILURES.value() == tasks + 3
    assert (
        'fleet_engine_reconcile_failure_count_total{type="leadership_lost"} '
        in metrics.REGISTRY.render()
    )


def test_record_registry_operation() -> None:
    total = metrics.REGISTRY_OPERATIONS.value()
    failed = metrics.REGISTRY_OPERATION_FAILURES.value()
    metrics.record_registry_operation("put", 0.5, failed=False)
    metrics.record_registry_operation("txn", 0.5, failed=True)
    assert metrics.REGISTRY_OPERATIONS.value() == total + 2
    assert metrics.REGISTRY_OPERATION_FAILURES.value() == failed + 1
    text = metrics.REGISTRY.render()
    assert 'fleet_registry_operation_duration_second_count{ops="put"} ' in text
    assert 'fleet_registry_operation_duration_second_sum{ops="txn"} ' in text


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        ("put machines/abc/object", "put"),
        ("delete units/web.service/desired", "delete"),
        ("get engine/leader", "get"),
        ("read", "read"),
        ("lease keep-alive", "lease keep-alive"),
        ("authenticate", "authenticate"),
        ("create unit web.service", "other"),
    ],
)
def test_registry_operation_kind(operation: str, kind: str) -> None:
    assert metrics.registry_operation_kind(operation) == kind
