"""Per-region state, aggregated at scrape time: the ``multiraft_store_*`` region gauges.

Theory of operation: a store hosts thousands of region replicas, and a label per region would
make every scrape, and the Prometheus server, grow with the data. So no metric carries a region
id. Instead the store hands :class:`RegionCollector` a callback that yields one small
:class:`RegionSummary` per replica; at each scrape the collector walks them once and emits
*counts* (regions by role, hibernating, without a leader...) and *distributions* (region size
and keys as histograms). Nothing is stored between scrapes, so there is no state to keep in
sync with replica creation and destruction.

Invariants:
    * ``collect`` calls the callback exactly once per scrape, and ``describe`` never calls it
      (registration must not touch store state).
    * Scrapes run on the trio thread (``serve_metrics`` calls ``generate_latest`` in the event
      loop), so the callback may read the store's replicas without locks, and sees a state
      between two ready rounds, never one half-applied.
    * A failing callback never fails the scrape: the region families are left out, the error
      is logged and counted in ``multiraft_store_region_collect_errors_total``, and every
      other metric of the process is still exported.
    * All four roles are always present (zero included), so ``sum by (role)`` never has holes.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from multiraft.metrics._common import REGION_KEYS_BUCKETS, REGION_SIZE_BUCKETS, full_name
from multiraft.raft import StateRole

log = logging.getLogger(__name__)

#: A replica's role, as exposed in the ``role`` label.
RegionRole = Literal["leader", "follower", "candidate", "learner"]

#: Every role, in exposition order.
ROLES: Final[tuple[RegionRole, ...]] = ("leader", "follower", "candidate", "learner")


def region_role(state: StateRole, *, is_learner: bool = False) -> RegionRole:
    """The ``role`` label of a replica from its raft state.

    A learner is reported as ``learner`` whatever its raft state (it is always a follower that
    cannot vote); pre-candidates count as candidates, since both mean "no leader known here".

    Example::

        region_role(raw_node.raft.state, is_learner=raw_node.raft.is_learner)
    """
    if is_learner:
        return "learner"
    if state == StateRole.Leader:
        return "leader"
    if state in (StateRole.Candidate, StateRole.PreCandidate):
        return "candidate"
    return "follower"


@dataclass(frozen=True, slots=True)
class RegionSummary:
    """What the collector needs to know about one replica at scrape time.

    The store builds these from its replicas (or keeps them up to date and yields them);
    the approximate sizes come from the split checker and may be unknown (None).
    """

    role: RegionRole
    #: The replica is hibernating (no ticks, no heartbeats until woken).
    is_hibernating: bool = False
    #: The replica has known no leader for longer than the store's abnormal-time threshold.
    leader_missing: bool = False
    #: The replica is installing a snapshot.
    is_applying_snapshot: bool = False
    #: Approximate bytes of the region's user data, if measured.
    approximate_size_bytes: int | None = None
    #: Approximate number of keys, if measured.
    approximate_keys: int | None = None


def _cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus ``le`` buckets from per-bucket counts (last count is the +Inf overflow)."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        total += n
        out.append(("+Inf" if math.isinf(bound) else repr(bound), float(total)))
    return out


class _Distribution:
    """Accumulates observations into fixed buckets, for one scrape."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = "<=").
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, documentation: str, unit: str = "") -> HistogramMetricFamily:
        buckets = _cumulative(self.bounds, self.counts)
        return HistogramMetricFamily(name, documentation, buckets, self.total, unit=unit)


_REGIONS = full_name("store", "regions")
_HIBERNATING = full_name("store", "hibernating_regions")
_LEADER_MISSING = full_name("store", "leader_missing_regions")
_APPLYING_SNAPSHOT = full_name("store", "applying_snapshot_regions")
_SIZE = full_name("store", "region_size", "bytes")
_KEYS = full_name("store", "region_keys")
_ERRORS = full_name("store", "region_collect_errors")  # CounterMetricFamily adds _total

_DOCS: Final = {
    _REGIONS: "Region replicas on this store, by raft role.",
    _HIBERNATING: "Region replicas on this store that are hibernating.",
    _LEADER_MISSING: "Region replicas that have known no leader for longer than the threshold.",
    _APPLYING_SNAPSHOT: "Region replicas installing a snapshot.",
    _SIZE: "Approximate size of the regions on this store (regions with a measurement).",
    _KEYS: "Approximate key count of the regions on this store (regions with a measurement).",
    _ERRORS: "Scrapes where the region summary callback failed.",
}


class RegionCollector:
    """A custom collector exposing per-region state as store-level aggregates.

    Args:
        regions: called once per scrape; yields one :class:`RegionSummary` per replica.

    Example::

        registry.register(RegionCollector(lambda: (r.summary() for r in store.replicas())))

    Exposes ``multiraft_store_regions{role}``, ``multiraft_store_hibernating_regions``,
    ``multiraft_store_leader_missing_regions``, ``multiraft_store_applying_snapshot_regions``,
    ``multiraft_store_region_size_bytes`` and ``multiraft_store_region_keys`` (histograms),
    and ``multiraft_store_region_collect_errors_total``.
    """

    def __init__(self, regions: Callable[[], Iterable[RegionSummary]]) -> None:
        self._regions = regions
        self._errors = 0

    def describe(self) -> list[Metric]:
        """The families this collector produces, without calling the callback.

        The registry calls this at ``register`` time to detect duplicate names.
        """
        return [
            GaugeMetricFamily(_REGIONS, _DOCS[_REGIONS], labels=["role"]),
            GaugeMetricFamily(_HIBERNATING, _DOCS[_HIBERNATING]),
            GaugeMetricFamily(_LEADER_MISSING, _DOCS[_LEADER_MISSING]),
            GaugeMetricFamily(_APPLYING_SNAPSHOT, _DOCS[_APPLYING_SNAPSHOT]),
            HistogramMetricFamily(_SIZE, _DOCS[_SIZE], unit="bytes"),
            HistogramMetricFamily(_KEYS, _DOCS[_KEYS]),
            CounterMetricFamily(_ERRORS, _DOCS[_ERRORS]),
        ]

    def collect(self) -> Iterator[Metric]:
        """Walk the summaries once and yield the aggregated families."""
        try:
            families = self._aggregate()
        except Exception:
            # A bug in the callback must not take the whole /metrics page down with it:
            # operators would lose every other metric exactly when something is wrong.
            self._errors += 1
            log.exception("region summary callback failed; region metrics left out")
            families = []
        yield from families
        yield CounterMetricFamily(_ERRORS, _DOCS[_ERRORS], value=self._errors)

    def _aggregate(self) -> list[Metric]:
        by_role = dict.fromkeys(ROLES, 0)
        hibernating = leader_missing = applying = 0
        sizes = _Distribution(REGION_SIZE_BUCKETS)
        keys = _Distribution(REGION_KEYS_BUCKETS)
        for summary in self._regions():
            by_role[summary.role] += 1  # KeyError on an unknown role: caught as a callback bug
            hibernating += summary.is_hibernating
            leader_missing += summary.leader_missing
            applying += summary.is_applying_snapshot
            if summary.approximate_size_bytes is not None:
                sizes.observe(summary.approximate_size_bytes)
            if summary.approximate_keys is not None:
                keys.observe(summary.approximate_keys)

        regions = GaugeMetricFamily(_REGIONS, _DOCS[_REGIONS], labels=["role"])
        for role in ROLES:
            regions.add_metric([role], by_role[role])
        return [
            regions,
            GaugeMetricFamily(_HIBERNATING, _DOCS[_HIBERNATING], value=hibernating),
            GaugeMetricFamily(_LEADER_MISSING, _DOCS[_LEADER_MISSING], value=leader_missing),
            GaugeMetricFamily(_APPLYING_SNAPSHOT, _DOCS[_APPLYING_SNAPSHOT], value=applying),
            sizes.family(_SIZE, _DOCS[_SIZE], unit="bytes"),
            keys.family(_KEYS, _DOCS[_KEYS]),
        ]
