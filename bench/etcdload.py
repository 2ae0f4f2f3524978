"""Requests etcd served, counted from its Prometheus metrics."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

# One sample line of go-grpc-prometheus's counter of request messages: unary
# calls count once, and every message on a stream (a lease keep-alive, a
# watch creation) counts once more. Requests to etcd's JSON gateway count
# too, because the gateway forwards each one to etcd's gRPC server (checked
# on etcd 3.4.23).
_RECEIVED = re.compile(
    r'^grpc_server_msg_received_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\S+)$'
)


def received_by_method(etcd_url: str) -> Counter[str]:
    """Return the request messages etcd has received so far, per gRPC method."""
    with urllib.request.urlopen(etcd_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _RECEIVED.match(line)
        if match:
            counts[match.group(1)] += int(float(match.group(2)))
    return counts


@dataclass
class LoadSample:
    """Request messages per gRPC method over ``seconds`` of wall time."""

    counts: Counter[str]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def per_second(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        """Return e.g. ``"1,234 req/s (Txn 800, Range 20, ...)"`` per second."""
        top = ", ".join(
            f"{method} {count / self.seconds:,.0f}"
            for method, count in self.counts.most_common(4)
        )
        return f"{self.per_second:,.0f} req/s ({top})"


class LoadMeter:
    """Counts etcd requests between start() and stop()."""

    def __init__(self, etcd_url: str) -> None:
        self.etcd_url = etcd_url
        self._before: Counter[str] = Counter()
        self._started = 0.0

    def start(self) -> None:
        self._before = received_by_method(self.etcd_url)
        self._started = time.monotonic()

    def stop(self) -> LoadSample:
        after = received_by_method(self.etcd_url)
        seconds = time.monotonic() - self._started
        after.subtract(self._before)
        return LoadSample(+after, seconds)
