"""Metrics of the KV service: client requests as a store answers them.

Subsystem ``kv``; emitted by ``multiraft.store``'s KV service handlers. ``op`` and ``result``
are closed sets (below); the duration histogram is labelled by ``op`` only, so its series
count is ops x buckets, independent of errors.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry

from multiraft.metrics._common import REQUEST_DURATION_BUCKETS, MetricFactory, each

#: Client operations.
OPS: Final = ("get", "put", "delete", "scan", "cas", "batch_put")

#: Request results: the error a client sees, by name (a CAS whose comparison fails is "ok":
#: the request succeeded and answered "not swapped").
RESULTS: Final = (
    "ok",
    "not_leader",
    "epoch_not_match",
    "region_not_found",
    "key_not_in_region",
    "busy",
    "timeout",
    "stale_command",  # a write whose entry lost its term: outcome unknown, the client may retry
    "error",  # anything else (a bug or an internal failure: worth an alert)
)


class KvMetrics:
    """The ``multiraft_kv_*`` metrics of one store process.

    Args:
        registry: the process's registry (tests: a fresh ``CollectorRegistry()``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        f = MetricFactory(registry, "kv")

        #: Requests answered, by op and result.
        self.requests = f.counter(
            "requests",
            "Client requests answered, by operation and result.",
            ["op", "result"],
            initial=[(op, "ok") for op in OPS],
        )
        #: Receive-to-answer time of a request, by op.
        self.request_duration = f.histogram(
            "request_duration",
            "Time from receiving a client request to answering it, by operation.",
            ["op"],
            unit="seconds",
            buckets=REQUEST_DURATION_BUCKETS,
            initial=each(*OPS),
        )
        #: Requests received and not yet answered.
        self.requests_in_progress = f.gauge(
            "requests_in_progress", "Client requests received and not yet answered."
        )
