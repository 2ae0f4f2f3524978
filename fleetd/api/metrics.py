"""Prometheus metrics, rendered in the plain text exposition format (0.0.4).

fleetd serves them at ``GET /metrics`` on the API listeners. Any role may
register a metric on ``REGISTRY`` at import time and update it as it runs;
this module imports no HTTP library. Names get the ``fleet_`` namespace, as
the original's did.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator

NAMESPACE = "fleet"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name = f"{NAMESPACE}_{name}"
        self.help = help_text
        self.labels = labels
        self._lock = threading.Lock()
        self._values: dict[LabelValues, float] = {}

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(
                f"metric {self.name} takes the labels {list(self.labels)}, "
                f"got {sorted(labels)}"
            )
        return tuple(str(labels[name]) for name in self.labels)

    def _series(self, suffix: str, key: LabelValues, value: float) -> str:
        name = self.name + suffix
        if key:
            pairs = ",".join(
                f'{label}="{_escape_label(v)}"'
                for label, v in zip(self.labels, key, strict=True)
            )
            name += "{" + pairs + "}"
        return f"{name} {_format_value(value)}"

    def samples(self) -> Iterator[str]:
        with self._lock:
            values = sorted(self._values.items())
        for key, value in values:
            yield self._series("", key, value)

    def render(self) -> str:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.kind}"]
        lines.extend(self.samples())
        return "\n".join(lines) + "\n"


class Counter(_Metric):
    """A count that only goes up, per combination of label values."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease by {amount}")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)


class Gauge(_Metric):
    """A value that goes up and down, set directly or read from a function."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        function: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.function = function

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value

    def samples(self) -> Iterator[str]:
        if self.function is not None:
            yield self._series("", (), float(self.function()))
            return
        yield from super().samples()


class Summary(_Metric):
    """The count and sum of observed values, such as durations in seconds."""

    kind = "summary"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        super().__init__(name, help_text, labels)
        self._counts: dict[LabelValues, int] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def samples(self) -> Iterator[str]:
        with self._lock:
            items = sorted(self._values.items())
            counts = dict(self._counts)
        for key, total in items:
            yield self._series("_sum", key, total)
            yield self._series("_count", key, counts[key])


class MetricsRegistry:
    """The metrics of one process, in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def counter(
        self, name: str, help_text: str, labels: tuple[str, ...] = ()
    ) -> Counter:
        metric = Counter(name, help_text, labels)
        self._add(metric)
        return metric

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        function: Callable[[], float] | None = None,
    ) -> Gauge:
        metric = Gauge(name, help_text, labels, function)
        self._add(metric)
        return metric

    def summary(
        self, name: str, help_text: str, labels: tuple[str, ...] = ()
    ) -> Summary:
        metric = Summary(name, help_text, labels)
        self._add(metric)
        return metric

    def unregister(self, name: str) -> None:
        with self._lock:
            self._metrics.pop(f"{NAMESPACE}_{name}", None)

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        return "".join(metric.render() for metric in metrics)


# The process-wide registry that GET /metrics renders.
REGISTRY = MetricsRegistry()


# -- the original fleet's engine and registry metrics ----------------------------

ENGINE_LEADER_START_TIME = REGISTRY.gauge(
    "engine_leader_start_time",
    "Unix time in seconds at which this fleetd's engine last became leader.",
)
ENGINE_TASKS = REGISTRY.counter(
    "engine_task_count_total",
    "Placement tasks the engine committed, by type (place, unplace).",
    ("type",),
)
ENGINE_TASK_FAILURES = REGISTRY.counter(
    "engine_task_failure_count_total",
    "Placement tasks whose commit failed.",
)
ENGINE_RECONCILES = REGISTRY.counter(
    "engine_reconcile_count_total",
    "Engine reconcile passes that committed their plan.",
)
ENGINE_RECONCILE_DURATION = REGISTRY.summary(
    "engine_reconcile_duration_second",
    "Duration of the engine reconcile passes that committed, in seconds.",
)
ENGINE_RECONCILE_FAILURES = REGISTRY.counter(
    "engine_reconcile_failure_count_total",
    "Engine reconcile passes that failed, by type (leadership_lost, registry).",
    ("type",),
)
REGISTRY_OPERATIONS = REGISTRY.counter(
    "registry_operation_count_total",
    "etcd operations of this fleetd, failed ones included.",
)
REGISTRY_OPERATION_DURATION = REGISTRY.summary(
    "registry_operation_duration_second",
    "Duration of etcd operations in seconds, by kind of operation.",
    ("ops",),
)
REGISTRY_OPERATION_FAILURES = REGISTRY.counter(
    "registry_operation_failed_count_total",
    "etcd operations that failed.",
)

# The ops label values besides "txn": the first word of a single-key
# operation's description, or a whole description that names no key.
_KEYED_OPERATIONS = frozenset({"put", "delete", "get"})
_FIXED_OPERATIONS = frozenset(
    {
        "read",
        "authenticate",
        "lease grant",
        "lease keep-alive",
        "lease time-to-live",
        "lease revoke",
    }
)


def registry_operation_kind(operation: str) -> str:
    """Map an etcd operation's description (``put <key>``, ...) to an ops label.

    Descriptions may name keys, so labelling with them would make one series
    per key. Any description not known here gets "other".
    """
    if operation in _FIXED_OPERATIONS:
        return operation
    first_word = operation.partition(" ")[0]
    if first_word in _KEYED_OPERATIONS:
        return first_word
    return "other"


def record_registry_operation(ops: str, seconds: float, *, failed: bool) -> None:
    """Count one etcd operation of kind ``ops`` that took ``seconds``."""
    REGISTRY_OPERATIONS.inc()
    REGISTRY_OPERATION_DURATION.observe(seconds, ops=ops)
    if failed:
        REGISTRY_OPERATION_FAILURES.inc()


def record_reconcile(task_types: Iterable[str], seconds: float) -> None:
    """Count one engine pass that committed its tasks (each a type) in ``seconds``."""
    for task_type in task_types:
        ENGINE_TASKS.inc(type=task_type)
    ENGINE_RECONCILES.inc()
    ENGINE_RECONCILE_DURATION.observe(seconds)


def record_reconcile_failure(failure_type: str, task_count: int) -> None:
    """Count one engine pass whose commit of ``task_count`` tasks failed."""
    ENGINE_RECONCILE_FAILURES.inc(type=failure_type)
    ENGINE_TASK_FAILURES.inc(task_count)
