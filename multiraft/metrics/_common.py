"""Shared rules for defining metrics: the namespace, bucket layouts and a checked factory.

Every metric of the project is built through :class:`MetricFactory`, so the naming rules of
ARCHITECTURE.md section 7 are enforced when a metric is *defined*, not only by a test:

Invariants:
    * Full names are ``multiraft_<subsystem>_<name>[_<unit>]``, assembled by client_python from
      the ``namespace``/``subsystem``/``unit`` arguments; counters are exposed with ``_total``.
    * Units are base units only: ``seconds`` or ``bytes`` (or none, for counts and ratios).
    * No label name may identify a region or a peer (:data:`FORBIDDEN_LABELS`). Region and peer
      counts are unbounded, and one series per region would grow a store's scrape, and the
      Prometheus server's memory, with the data; per-region state is aggregated at scrape time
      by :class:`multiraft.metrics.RegionCollector` instead.
    * Nothing here touches prometheus_client's global ``REGISTRY``: every metric goes into the
      registry it is given, so tests use a fresh ``CollectorRegistry()`` and two instances of a
      class never collide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_M = TypeVar("_M", Counter, Gauge, Histogram)

#: Prefix of every metric name.
NAMESPACE: Final = "multiraft"

#: The only units a metric name may end in (Prometheus naming guide: base units).
BASE_UNITS: Final = frozenset({"seconds", "bytes"})

#: Label names that would carry a region or peer id: forbidden on every metric (cardinality).
FORBIDDEN_LABELS: Final = frozenset({"region", "region_id", "peer", "peer_id"})

# Bucket layouts. Each is chosen for the range the measured thing really spans; a bucket that
# never sees an observation still costs one series per labelled child, so layouts stay short.

#: In-process work of one round or one batch (ready round, apply, LMDB txn, fsync): 50 us to
#: 10 s. An fsync on a fast NVMe disk is ~50-500 us, a ready round with thousands of dirty
#: regions in Python is tens of ms; anything past seconds is a stall worth seeing in full.
ROUND_DURATION_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: A client request as the KV service sees it: 0.1 ms (lease read) to 10 s (the longest
#: sensible client deadline).
REQUEST_DURATION_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Replication and scheduling latencies that include network round trips and operator steps.
OPERATOR_DURATION_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

#: Counts per round or per frame (dirty regions, entries in a batch, messages in a frame).
COUNT_BUCKETS: Final = tuple(float(2**i) for i in range(15))  # 1 .. 16384

#: Sizes of one write batch: 256 B to 64 MiB in powers of four.
BATCH_SIZE_BUCKETS: Final = tuple(float(256 * 4**i) for i in range(10))

#: Approximate region sizes: 16 KiB (the local cluster's tiny split threshold) to 1 GiB.
REGION_SIZE_BUCKETS: Final = tuple(float(16 * 1024 * 4**i) for i in range(9))

#: Approximate keys per region.
REGION_KEYS_BUCKETS: Final = (100.0, 1e3, 1e4, 1e5, 1e6, 1e7)


def full_name(subsystem: str, name: str, unit: str = "") -> str:
    """The exposed family name, as client_python builds it (without a counter's ``_total``).

    Used by custom collectors, which build metric families by hand.
    """
    base = f"{NAMESPACE}_{subsystem}_{name}"
    return f"{base}_{unit}" if unit and not base.endswith(f"_{unit}") else base


def check_definition(name: str, labelnames: Sequence[str], unit: str) -> None:
    """Refuse a metric definition that breaks the naming or cardinality rules.

    Raises:
        ValueError: a forbidden label, a non-base unit, or a name that spells its own unit
            or ``_total`` (those suffixes come from the ``unit`` argument and the type).
    """
    bad = FORBIDDEN_LABELS.intersection(labelnames)
    if bad:
        raise ValueError(f"metric {name!r}: label(s) {sorted(bad)} would carry a region/peer id")
    if unit and unit not in BASE_UNITS:
        raise ValueError(f"metric {name!r}: unit {unit!r} is not a base unit {sorted(BASE_UNITS)}")
    for suffix in (*BASE_UNITS, "total"):
        if name.endswith(f"_{suffix}"):
            raise ValueError(f"metric {name!r}: pass {suffix!r} as the unit/type, not in the name")


class MetricFactory:
    """Builds one subsystem's metrics into one registry, checking every definition.

    Args:
        registry: where the metrics are registered (never the global one unless passed in).
        subsystem: the ``<subsystem>`` part of the names, e.g. ``"raft"``.

    Example::

        f = MetricFactory(registry, "raft")
        rounds = f.counter("ready_rounds", "Ready rounds run.")  # multiraft_raft_ready_rounds_total
    """

    def __init__(self, registry: CollectorRegistry, subsystem: str) -> None:
        self.registry = registry
        self.subsystem = subsystem

    def counter(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        unit: str = "",
        initial: Iterable[Sequence[str]] = (),
    ) -> Counter:
        """A counter; ``initial`` label-value tuples are created at zero (see :meth:`_preset`)."""
        check_definition(name, labelnames, unit)
        metric = Counter(
            name,
            documentation,
            labelnames,
            namespace=NAMESPACE,
            subsystem=self.subsystem,
            unit=unit,
            registry=self.registry,
        )
        return self._preset(metric, initial)

    def gauge(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        unit: str = "",
        initial: Iterable[Sequence[str]] = (),
    ) -> Gauge:
        """A gauge; ``initial`` label-value tuples are created at zero."""
        check_definition(name, labelnames, unit)
        metric = Gauge(
            name,
            documentation,
            labelnames,
            namespace=NAMESPACE,
            subsystem=self.subsystem,
            unit=unit,
            registry=self.registry,
        )
        return self._preset(metric, initial)

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        unit: str = "",
        buckets: Sequence[float],
        initial: Iterable[Sequence[str]] = (),
    ) -> Histogram:
        """A histogram with explicit ``buckets`` (never the web-latency defaults)."""
        check_definition(name, labelnames, unit)
        metric = Histogram(
            name,
            documentation,
            labelnames,
            namespace=NAMESPACE,
            subsystem=self.subsystem,
            unit=unit,
            registry=self.registry,
            buckets=buckets,
        )
        return self._preset(metric, initial)

    @staticmethod
    def _preset(metric: _M, initial: Iterable[Sequence[str]]) -> _M:
        # Creating the known children up front makes their series exist at 0 from the first
        # scrape, so rate() and alerts see the first increment instead of a series appearing
        # out of nothing (Prometheus instrumentation guide: "avoid missing metrics").
        for values in initial:
            metric.labels(*values)
        return metric


def each(*values: str) -> list[tuple[str]]:
    """One-label ``initial`` helper: ``each("ok", "dropped")`` -> ``[("ok",), ("dropped",)]``."""
    return [(v,) for v in values]
