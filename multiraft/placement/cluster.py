"""The placement service's view of the cluster, and the handling of every request.

Theory of operation
-------------------
:class:`Cluster` holds the authoritative state in memory (stores, the routing
table, what heartbeats said, the bootstrap status) and persists every change to
the metadata (:class:`~multiraft.placement.cluster_meta.ClusterMeta`) **before**
applying it in memory and answering: an answer never describes state a restart
would lose. Persisting is an fsync, so it runs in a worker thread
(``trio.to_thread.run_sync``) behind a ``CapacityLimiter(1)``.

Concurrency: the server handles many requests at once, all in the trio thread.
Reads (lookups, ``get_store``) touch memory only and never wait. Every change
runs under one ``trio.Lock``: check against memory, persist, apply to memory; so
two heartbeats for one region cannot interleave between the check and the
write. Heartbeats that change nothing durable (the usual case: same descriptor,
new leader or statistics) hold the lock without awaiting.

Ids come from the windowed :class:`~multiraft.placement.id_alloc.IdAllocator`,
whose high-water mark is persisted the same way. Bootstrap is described in
:mod:`multiraft.placement.bootstrap`.

Scheduling, operators and store states (drain, tombstone) are the
:class:`~multiraft.placement.cluster_admin.ClusterAdmin` mixin's, in ``cluster_admin.py``.

Time is ``trio.current_time()`` (so tests may use ``MockClock``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import trio

from multiraft.metrics.placement import STORE_STATES, PlacementMetrics
from multiraft.placement import bootstrap
from multiraft.placement.admin import operator_info
from multiraft.placement.cluster_admin import ClusterAdmin
from multiraft.placement.cluster_meta import BootstrapPending, ClusterMeta, MetaWrite
from multiraft.placement.errors import PlacementFailure
from multiraft.placement.heartbeats import (
    RegionRuntime,
    StoreRuntime,
    check_region_heartbeat,
    store_liveness,
)
from multiraft.placement.id_alloc import DEFAULT_WINDOW, MAX_ALLOC, IdAllocator
from multiraft.placement.scheduler import OperatorController, SchedulerConfig
from multiraft.settings import ConfigError, parse_address
from multiraft.storage import Engine
from multiraft.wire.placement_messages import (
    AddOperator,
    AllocIds,
    CancelOperator,
    ClusterInfo,
    GetAllStores,
    GetClusterInfo,
    GetOperator,
    GetRegion,
    GetRegionById,
    GetRegionStatus,
    GetStore,
    GetStoreStatus,
    Ids,
    ListOperators,
    Ok,
    OperatorList,
    PlacementBody,
    PlacementErrorCode,
    PlacementResult,
    PutStore,
    RegionHeartbeat,
    RegionHeartbeatReply,
    RegionRoute,
    RegionRoutes,
    ScanRegions,
    SetStoreState,
    StoreHeartbeat,
    StoreHeartbeatReply,
    StoreInfo,
    StoreList,
    StoreState,
    StoreStats,
    StoreStatusList,
)
from regions.region import Region
from regions.region_map import RegionMap
from regions.scheduling import Step

__all__ = ["Cluster", "ClusterStatistics", "operator_info"]

log = logging.getLogger(__name__)

#: Most regions one ScanRegions answer carries (limit 0 or larger asks for this many).
MAX_SCAN_REGIONS = 10_000
_Code = PlacementErrorCode


@dataclass(frozen=True, slots=True)
class ClusterStatistics:
    cluster_id: int
    bootstrapped: bool
    stores: int
    regions: int
    bootstrap_pending_stores: int
    store_heartbeats: int
    region_heartbeats: int
    stale_heartbeats: int
    id_high_water: int


class Cluster(ClusterAdmin):
    """The cluster as the placement service knows it. Build with :meth:`open`.

    Every request method raises :class:`PlacementFailure` for an answer that is an
    error (unknown store, stale heartbeat, storage failure...).

    Example::

        cluster = await Cluster.open(data_dir)
        try:
            result = await cluster.handle(GetRegion(b"key"))
        finally:
            cluster.close()
    """

    def __init__(
        self,
        meta: ClusterMeta,
        *,
        bootstrap_replicas: int = 3,
        metrics: PlacementMetrics | None = None,
        id_window: int = DEFAULT_WINDOW,
        clock: Callable[[], float] = trio.current_time,
        scheduler: SchedulerConfig | None = None,
    ) -> None:
        state = meta.load()
        self._meta = meta
        self._clock = clock
        self._metrics = metrics
        self._replicas = bootstrap_replicas
        self.cluster_id = state.cluster_id
        self._bootstrapped = state.bootstrapped
        started = clock()
        self._stores = {
            sid: StoreRuntime(info, last_heartbeat=started) for sid, info in state.stores.items()
        }
        self._routes = RegionMap(state.regions)
        self._region_runtime: dict[int, RegionRuntime] = {}
        self._pending = state.bootstrap_pending
        self._writer = trio.CapacityLimiter(1)
        self._lock = trio.Lock()
        self._ids = IdAllocator(state.id_high_water, self._persist_high_water, window=id_window)
        self._store_heartbeats = 0
        self._region_heartbeats = 0
        self._stale_heartbeats = 0
        self._closed = False
        self.operators = OperatorController(scheduler, metrics=metrics)
        self._id_pool: list[int] = []
        self._newest_id = 0
        self.refresh_metrics()

    @classmethod
    async def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        sync: bool = True,
        bootstrap_replicas: int = 3,
        metrics: PlacementMetrics | None = None,
        id_window: int = DEFAULT_WINDOW,
        scheduler: SchedulerConfig | None = None,
    ) -> Cluster:
        """Open the metadata in ``data_dir`` (in a worker thread) and load it.

        Raises:
            DataDirLocked: another process holds the directory.
            MetaCorrupted: a damaged record, or a store's data directory.
        """
        meta = await trio.to_thread.run_sync(lambda: ClusterMeta.open(data_dir, sync=sync))
        try:
            return cls(
                meta,
                bootstrap_replicas=bootstrap_replicas,
                metrics=metrics,
                id_window=id_window,
                scheduler=scheduler,
            )
        except BaseException:
            meta.close()
            raise

    def close(self) -> None:
        """Close the metadata environment. Idempotent."""
        self._closed = True
        self._meta.close()

    @property
    def bootstrapped(self) -> bool:
        return self._bootstrapped

    @property
    def meta_engine(self) -> Engine:
        """The metadata's LMDB engine (for size gauges)."""
        return self._meta.engine

    # -- dispatch ----------------------------------------------------------------------------

    async def handle(self, body: PlacementBody) -> PlacementResult:
        """Serve one request body.

        Raises:
            PlacementFailure: the answer is an error.
        """
        match body:
            case GetClusterInfo():
                return self.cluster_info()
            case AllocIds(count):
                return await self.alloc_ids(count)
            case PutStore(store):
                await self.put_store(store)
                return Ok()
            case GetStore(store_id):
                return self.get_store(store_id)
            case GetAllStores():
                return StoreList(self.get_all_stores())
            case StoreHeartbeat(stats):
                return await self.store_heartbeat(stats)
            case RegionHeartbeat():
                return RegionHeartbeatReply(await self.region_heartbeat(body))
            case GetRegion(key):
                return self.get_region(key)
            case GetRegionById(region_id):
                return self.get_region_by_id(region_id)
            case ScanRegions(start_key, end_key, limit):
                return RegionRoutes(self.scan_regions(start_key, end_key, limit))
            case ListOperators():
                return OperatorList(self.list_operators())
            case GetOperator(region_id):
                op = self.operators.get(region_id)
                return operator_info(op) if op is not None else None
            case CancelOperator(region_id):
                return self.cancel_operator(region_id)
            case AddOperator():
                return await self.add_operator(body)
            case SetStoreState(store_id, state):
                return await self.set_store_state(store_id, state)
            case GetStoreStatus(store_id):
                return StoreStatusList(self.store_statuses(store_id))
            case GetRegionStatus(region_id):
                return self.region_status(region_id)
        raise PlacementFailure(_Code.InvalidArgument, f"unknown request {type(body).__name__}")

    # -- cluster and ids ---------------------------------------------------------------------

    def cluster_info(self) -> ClusterInfo:
        return ClusterInfo(self.cluster_id, self._bootstrapped)

    async def alloc_ids(self, count: int) -> Ids:
        first = await self._reserve_ids(count)
        # Peer ids only grow (TiKV's rule: a store tells a removed peer's late messages from
        # a new peer's by it): ids reserved earlier for the scheduling pass are now older
        # than these, so they are dropped, and a refill older than these is refused.
        self._newest_id = max(self._newest_id, first + count - 1)
        self._id_pool.clear()
        return Ids(first, count)

    async def _reserve_ids(self, count: int) -> int:
        if not 1 <= count <= MAX_ALLOC:
            raise PlacementFailure(
                _Code.InvalidArgument, f"can allocate 1 to {MAX_ALLOC} ids at once, not {count}"
            )
        first = await self._ids.alloc(count)
        if self._metrics is not None:
            self._metrics.id_allocations.inc(count)
        return first

    async def _persist_high_water(self, mark: int) -> None:
        await self._commit(MetaWrite(id_high_water=mark))

    # -- stores ------------------------------------------------------------------------------

    async def put_store(self, info: StoreInfo) -> None:
        """Register or update a store; may bootstrap the cluster."""
        if info.id == 0:
            raise PlacementFailure(_Code.InvalidArgument, "store id 0 is not a store")
        try:
            parse_address(info.address, what="store address")
            if info.metrics_address:
                parse_address(info.metrics_address, what="store metrics address")
        except ConfigError as e:
            raise PlacementFailure(_Code.InvalidArgument, str(e)) from None
        async with self._lock:
            current = self._stores.get(info.id)
            if current is not None and current.info.state == StoreState.Tombstone:
                raise PlacementFailure(
                    _Code.StoreTombstoned, f"store {info.id} was removed (tombstone)"
                )
            for other in self._stores.values():
                o = other.info
                if (
                    o.id != info.id
                    and o.address == info.address
                    and o.state != StoreState.Tombstone
                ):
                    raise PlacementFailure(
                        _Code.InvalidArgument,
                        f"address {info.address} is already used by store {o.id}",
                    )
            # The state is the service's (SetStoreState): a restarting store that
            # re-registers as Up must not cancel its drain.
            state = StoreState.Up if current is None else current.info.state
            info = StoreInfo(info.id, info.address, info.metrics_address, state, info.version)
            if current is None or current.info != info:
                await self._commit(MetaWrite(stores=[info]))
                if current is None:
                    self._stores[info.id] = StoreRuntime(info, last_heartbeat=self._clock())
                    log.info("store %d registered at %s", info.id, info.address)
                else:
                    current.info = info
            await self._maybe_bootstrap()
        self.refresh_metrics()

    def get_store(self, store_id: int) -> StoreInfo:
        s = self._stores.get(store_id)
        if s is None:
            raise PlacementFailure(_Code.StoreNotFound, f"store {store_id} is not registered")
        return s.info

    def get_all_stores(self) -> list[StoreInfo]:
        return [self._stores[sid].info for sid in sorted(self._stores)]

    def store_runtime(self, store_id: int) -> StoreRuntime | None:
        """What the service knows of a store's liveness and statistics."""
        return self._stores.get(store_id)

    async def store_heartbeat(self, stats: StoreStats) -> StoreHeartbeatReply:
        store = self._stores.get(stats.store_id)
        if store is None:
            raise PlacementFailure(
                _Code.StoreNotFound, f"store {stats.store_id} is not registered: put it first"
            )
        if store.info.state == StoreState.Tombstone:
            raise PlacementFailure(
                _Code.StoreTombstoned, f"store {stats.store_id} was removed (tombstone)"
            )
        store.stats = stats
        store.last_heartbeat = self._clock()
        store.heartbeats += 1
        self._store_heartbeats += 1
        if self._metrics is not None:
            self._metrics.heartbeats.labels("store").inc()
        if not self._bootstrapped:
            async with self._lock:
                await self._maybe_bootstrap()
            self.refresh_metrics()
        if store.info.state == StoreState.Offline:
            async with self._lock:
                await self._maybe_tombstone()
        pending = self._pending
        region = self._routes.get(pending.region_id) if pending is not None else None
        return StoreHeartbeatReply(
            bootstrap.bootstrap_regions_for(pending, stats.store_id, region),
            self._operator_regions_led_by(stats.store_id),
        )

    def _operator_regions_led_by(self, store_id: int) -> list[int]:
        """Regions with a running operator whose last reported leader is on ``store_id``."""
        out = []
        for op in self.operators.running():
            rt = self._region_runtime.get(op.region_id)
            if rt is not None and rt.leader is not None and rt.leader.store_id == store_id:
                out.append(op.region_id)
        return out

    # -- bootstrap ---------------------------------------------------------------------------

    async def _maybe_bootstrap(self) -> None:
        """Create the first region once enough stores are up (call under the lock)."""
        if self._bootstrapped:
            return
        chosen = bootstrap.choose_stores((s.info for s in self._stores.values()), self._replicas)
        if chosen is None:
            return
        first = (await self.alloc_ids(1 + len(chosen))).first
        peer_ids = list(range(first + 1, first + 1 + len(chosen)))
        region = bootstrap.first_region(first, peer_ids, chosen)
        pending = BootstrapPending(region.id, frozenset(s.id for s in chosen))
        await self._commit(
            MetaWrite(regions=[region], bootstrapped=True, bootstrap_pending=pending)
        )
        self._routes.put(region)
        self._pending = pending
        self._bootstrapped = True
        log.info(
            "cluster %d bootstrapped: region %d on stores %s",
            self.cluster_id,
            region.id,
            ", ".join(str(s.id) for s in chosen),
        )

    # -- regions -----------------------------------------------------------------------------

    def _require_bootstrapped(self) -> None:
        if not self._bootstrapped:
            raise PlacementFailure(
                _Code.NotBootstrapped,
                f"the cluster has no region yet: it starts once {self._replicas} stores have "
                f"joined ({len(self._stores)} so far)",
            )

    async def region_heartbeat(self, hb: RegionHeartbeat) -> Step | None:
        """Accept a region leader's report, or raise ``StaleEpoch``; the region's operator
        step to send back (None: nothing to do)."""
        self._require_bootstrapped()
        reporter = self._stores.get(hb.leader.store_id)
        if reporter is not None and reporter.info.state == StoreState.Tombstone:
            raise PlacementFailure(
                _Code.StoreTombstoned, f"store {hb.leader.store_id} was removed (tombstone)"
            )
        async with self._lock:
            try:
                update = check_region_heartbeat(self._routes, self._region_runtime, hb)
            except PlacementFailure as e:
                if e.code == _Code.StaleEpoch:
                    self._stale_heartbeats += 1
                raise
            pending = self._pending
            if pending is not None:
                after = bootstrap.confirmed_by(pending, hb)
                pending_changed = after != pending
            else:
                after, pending_changed = None, False
            if update.changed or pending_changed:
                await self._commit(
                    MetaWrite(
                        regions=[update.region] if update.changed else [],
                        deleted_regions=[r.id for r in update.replaced],
                        bootstrap_pending=after if pending_changed else None,
                    )
                )
                if update.changed:
                    for r in self._routes.put(update.region):
                        self._region_runtime.pop(r.id, None)
                if pending_changed:
                    self._pending = after if after is not None and after.store_ids else None
            self._region_runtime[hb.region.id] = RegionRuntime(
                hb.leader,
                hb.term,
                list(hb.down_peers),
                list(hb.pending_peers),
                hb.approximate_size,
                hb.approximate_keys,
                self._clock(),
            )
            step = self.operators.on_region_heartbeat(
                update.region, hb.leader, self._clock(), [p.id for p in hb.pending_peers]
            )
        self._region_heartbeats += 1
        if self._metrics is not None:
            self._metrics.heartbeats.labels("region").inc()
            self._metrics.regions.set(len(self._routes))
        return step

    def _route(self, region: Region) -> RegionRoute:
        rt = self._region_runtime.get(region.id)
        return RegionRoute(region, rt.leader if rt is not None else None)

    def get_region(self, key: bytes) -> RegionRoute | None:
        """The region holding ``key`` and its leader, or None (a gap after a split)."""
        self._require_bootstrapped()
        region = self._routes.get_by_key(key)
        return self._route(region) if region is not None else None

    def get_region_by_id(self, region_id: int) -> RegionRoute | None:
        self._require_bootstrapped()
        region = self._routes.get(region_id)
        return self._route(region) if region is not None else None

    def scan_regions(self, start_key: bytes, end_key: bytes, limit: int = 0) -> list[RegionRoute]:
        """Regions overlapping ``[start_key, end_key)`` in key order, at most ``limit``."""
        self._require_bootstrapped()
        cap = min(limit, MAX_SCAN_REGIONS) if limit else MAX_SCAN_REGIONS
        if end_key and start_key >= end_key:
            return []
        return [self._route(r) for r in self._routes.scan(start_key, end_key, cap)]

    def region_runtime(self, region_id: int) -> RegionRuntime | None:
        """What the last accepted heartbeat of a region said (None: none since startup)."""
        return self._region_runtime.get(region_id)

    # -- persistence, metrics, statistics ----------------------------------------------------

    async def _commit(self, w: MetaWrite) -> None:
        if self._closed:
            raise PlacementFailure(_Code.Internal, "the placement service is shutting down")
        try:
            await trio.to_thread.run_sync(self._meta.commit, w, limiter=self._writer)
        except Exception as e:
            log.exception("persisting placement metadata failed")
            raise PlacementFailure(_Code.Internal, f"persisting metadata failed: {e}") from e

    def refresh_metrics(self) -> None:
        """Set the store and region gauges from the current view (also run periodically, so
        that a silent store shows as disconnected, then down)."""
        m = self._metrics
        if m is None:
            return
        now = self._clock()
        counts = dict.fromkeys(STORE_STATES, 0)
        for s in self._stores.values():
            counts[store_liveness(s, now, down_after=self._down_after)] += 1
        for state, n in counts.items():
            m.stores.labels(state).set(n)
        m.regions.set(len(self._routes))

    def statistics(self) -> ClusterStatistics:
        pending = self._pending
        return ClusterStatistics(
            cluster_id=self.cluster_id,
            bootstrapped=self._bootstrapped,
            stores=len(self._stores),
            regions=len(self._routes),
            bootstrap_pending_stores=len(pending.store_ids) if pending is not None else 0,
            store_heartbeats=self._store_heartbeats,
            region_heartbeats=self._region_heartbeats,
            stale_heartbeats=self._stale_heartbeats,
            id_high_water=self._ids.high_water,
        )

