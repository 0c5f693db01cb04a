"""Metrics of the placement service: stores, regions, heartbeats, ids, operators, balance.

Subsystem ``placement``; emitted by ``multiraft.placement`` (issues 4 and 5). Cluster-wide
gauges are *set* from the service's view (each scheduling tick or heartbeat), not incremented,
so a restarted service reports the truth at its first tick.

The per-store gauges are labelled ``store`` (the store id): stores are few and bounded by the
deployment, unlike regions. When a store becomes a tombstone, ``forget_store`` removes its
series so removed stores do not linger forever.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry

from multiraft.metrics._common import OPERATOR_DURATION_BUCKETS, MetricFactory, each

#: Store states, as the placement service classifies them from heartbeats.
STORE_STATES: Final = (
    "up",  # heartbeating
    "disconnected",  # no heartbeat for a short while (a restart, a blip)
    "down",  # no heartbeat for longer than the down time: its replicas get replaced
    "offline",  # being drained on request
    "tombstone",  # drained and removed
)

#: Kinds of unhealthy region, from region heartbeats (PD's ``pd_regions_status``).
UNHEALTHY_REGION_KINDS: Final = (
    "miss_peer",  # fewer voters than the replication factor
    "extra_peer",  # more voters than the replication factor
    "down_peer",  # a peer on a down store
    "pending_peer",  # a peer far behind (being caught up by snapshot)
    "no_leader",  # no leader heartbeat within the region heartbeat timeout
    "oversized",  # larger than the split threshold and not yet split (not reported yet: 0)
)

#: How an operator ended. (Types are the ``regions.scheduling.OperatorKind`` values:
#: ``add-peer``, ``remove-peer``, ``move-peer``, ``transfer-leader``, ``split-region``,
#: ``leave-joint``; a small fixed set, never ids.)
OPERATOR_RESULTS: Final = (
    "success",
    "timeout",
    "cancelled",  # by an operator (CLI) or replaced by a higher-priority one
    "stale",  # the region's epoch moved on: the operator failed harmlessly
    "failed",
)

#: Heartbeat kinds.
HEARTBEAT_KINDS: Final = ("store", "region")


class PlacementMetrics:
    """The ``multiraft_placement_*`` metrics of the placement service process.

    Args:
        registry: the process's registry (tests: a fresh ``CollectorRegistry()``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        f = MetricFactory(registry, "placement")

        # -- cluster view ------------------------------------------------------------------
        #: Stores by state.
        self.stores = f.gauge(
            "stores",
            "Stores known to the placement service, by state.",
            ["state"],
            initial=each(*STORE_STATES),
        )
        #: Regions in the routing table.
        self.regions = f.gauge("regions", "Regions in the placement service's routing table.")
        #: Unhealthy regions, by kind (a region may count under several kinds).
        self.unhealthy_regions = f.gauge(
            "unhealthy_regions",
            "Regions in an unhealthy state, by kind (miss_peer, down_peer, no_leader...).",
            ["kind"],
            initial=each(*UNHEALTHY_REGION_KINDS),
        )
        #: Heartbeats received, by kind.
        self.heartbeats = f.counter(
            "heartbeats",
            "Heartbeats received from stores and region leaders, by kind.",
            ["kind"],
            initial=each(*HEARTBEAT_KINDS),
        )
        #: Ids handed out by the persisted allocator (regions, peers, stores).
        self.id_allocations = f.counter("id_allocations", "Ids handed out by the id allocator.")

        # -- operators (issue 5) -----------------------------------------------------------
        #: Finished operators, by type and result.
        self.operators = f.counter(
            "operators",
            "Operators finished, by operator type and result.",
            ["type", "result"],
        )
        #: Operators created and not yet finished, by type.
        self.operators_in_progress = f.gauge(
            "operators_in_progress", "Operators running, by operator type.", ["type"]
        )
        #: Creation-to-finish time of an operator, by type.
        self.operator_duration = f.histogram(
            "operator_duration",
            "Time from creating an operator to its end, by operator type.",
            ["type"],
            unit="seconds",
            buckets=OPERATOR_DURATION_BUCKETS,
        )

        # -- balance, per store (bounded: stores are few) ----------------------------------
        #: Region replicas on each store.
        self.store_regions = f.gauge(
            "store_regions", "Region replicas hosted by each store.", ["store"]
        )
        #: Region leaders on each store.
        self.store_leaders = f.gauge("store_leaders", "Region leaders on each store.", ["store"])
        #: The scheduler's region score of each store (what balance-region equalises).
        self.store_region_score = f.gauge(
            "store_region_score", "Region balance score of each store.", ["store"]
        )
        #: The scheduler's leader score of each store (what balance-leader equalises).
        self.store_leader_score = f.gauge(
            "store_leader_score", "Leader balance score of each store.", ["store"]
        )

    def set_store_balance(
        self, store_id: int, *, regions: int, leaders: int, region_score: float, leader_score: float
    ) -> None:
        """Publish one store's counts and scores (call once per store per scheduling tick)."""
        store = str(store_id)
        self.store_regions.labels(store).set(regions)
        self.store_leaders.labels(store).set(leaders)
        self.store_region_score.labels(store).set(region_score)
        self.store_leader_score.labels(store).set(leader_score)

    def forget_store(self, store_id: int) -> None:
        """Remove a tombstoned store's per-store series."""
        store = str(store_id)
        for gauge in (
            self.store_regions,
            self.store_leaders,
            self.store_region_score,
            self.store_leader_score,
        ):
            try:
                gauge.remove(store)
            except KeyError:
                pass  # never published for this store
