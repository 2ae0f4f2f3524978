"""Prometheus metrics, rendered in the plain text exposition format (0.0.4).

fleetd serves them at ``GET /metrics`` on the API listeners. Any role may
register a metric on ``REGISTRY`` at import time and update it as it runs;
this module imports no HTTP library. Names get the ``fleet_`` namespace, as
the original's did.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

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
