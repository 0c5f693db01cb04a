"""Scheduling, operators and store states: the administrative half of the placement
service's :class:`~multiraft.placement.cluster.Cluster`.

:class:`ClusterAdmin` is a mixin of ``Cluster`` (which holds the state, the persistence and
the routing; see :mod:`multiraft.placement.cluster`): the scheduling pass, manual
operators, store drains and tombstones, and the status reports ``store show`` and
``region show`` use. The rules themselves are pure functions in
:mod:`multiraft.placement.admin`; this class applies them under ``Cluster``'s lock and
persists the changes (every change is committed before it is applied in memory, as in
``Cluster``).

Draining is an explicit request, so it proceeds even with ``schedule_enabled`` off: the
controller then runs the replica checker on the regions with a replica on an offline
store only (:meth:`~multiraft.placement.scheduler.OperatorController.tick`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import trio

from multiraft.metrics.placement import PlacementMetrics
from multiraft.placement.admin import (
    build_snapshot,
    check_state_change,
    manual_operator,
    operator_info,
    region_status,
    store_scores,
    store_status,
    tombstone_blocker,
    unhealthy_regions,
)
from multiraft.placement.cluster_meta import MetaWrite
from multiraft.placement.errors import PlacementFailure
from multiraft.placement.heartbeats import RegionRuntime, StoreRuntime
from multiraft.placement.scheduler import OperatorController
from multiraft.wire.placement_messages import (
    AddOperator,
    Ids,
    ManualOperator,
    OperatorInfo,
    PlacementErrorCode,
    RegionRoute,
    RegionStatus,
    StoreInfo,
    StoreState,
    StoreStatus,
)
from regions.region import Region
from regions.region_map import RegionMap
from regions.scheduling import ClusterSnapshot, Operator, OperatorError

__all__ = ["ClusterAdmin"]

log = logging.getLogger("multiraft.placement.cluster")

#: Ids kept ready for the scheduling pass (which allocates synchronously).
_ID_POOL: Final = 128
_Code = PlacementErrorCode


class ClusterAdmin:
    """The scheduling and administrative requests of ``Cluster`` (a mixin: see the module)."""

    # What ``Cluster`` provides.
    operators: OperatorController
    _stores: dict[int, StoreRuntime]
    _routes: RegionMap
    _region_runtime: dict[int, RegionRuntime]
    _lock: trio.Lock
    _clock: Callable[[], float]
    _metrics: PlacementMetrics | None
    _bootstrapped: bool
    _id_pool: list[int]
    _newest_id: int

    if TYPE_CHECKING:

        async def alloc_ids(self, count: int) -> Ids: ...
        async def _reserve_ids(self, count: int) -> int: ...
        async def _commit(self, w: MetaWrite) -> None: ...
        def _require_bootstrapped(self) -> None: ...
        def _route(self, region: Region) -> RegionRoute: ...
        def refresh_metrics(self) -> None: ...

    # -- scheduling --------------------------------------------------------------------------

    @property
    def _down_after(self) -> float:
        return self.operators.config.max_store_down_seconds

    def snapshot(self) -> ClusterSnapshot:
        """Stores and regions as the heartbeats describe them now (for the schedulers)."""
        return build_snapshot(
            self._stores, self._routes, self._region_runtime, self._clock(), self._down_after
        )

    async def schedule_tick(self) -> list[Operator]:
        """One scheduling pass: time out operators, create new ones; the new ones."""
        if not self._bootstrapped:
            return []
        if len(self._id_pool) < _ID_POOL:
            n = _ID_POOL - len(self._id_pool)
            first = await self._reserve_ids(n)
            # Only ids newer than every id handed out otherwise (see ``Cluster.alloc_ids``):
            # the pool is kept in increasing order, so peer ids only grow.
            if first > self._newest_id:
                self._id_pool.extend(range(first, first + n))
        async with self._lock:
            pool = self._id_pool

            def alloc_id() -> int:
                if not pool:
                    raise OperatorError("the scheduling pass ran out of ids")
                return pool.pop(0)

            snapshot = self.snapshot()
            try:
                made = self.operators.tick(snapshot, self._clock(), alloc_id)
            except OperatorError as e:
                log.warning("scheduling pass stopped: %s", e)
                made = []
            await self._maybe_tombstone(snapshot)
        self._publish_balance(snapshot)
        return made

    def list_operators(self) -> list[OperatorInfo]:
        """Running operators by region, then finished ones, newest first."""
        running = [operator_info(op) for op in self.operators.running()]
        done = [operator_info(f.operator) for f in reversed(self.operators.history())]
        return running + done

    def cancel_operator(self, region_id: int) -> OperatorInfo:
        op = self.operators.cancel(region_id, self._clock())
        if op is None:
            raise PlacementFailure(
                _Code.RegionNotFound, f"region {region_id} has no running operator"
            )
        return operator_info(op)

    async def add_operator(self, req: AddOperator) -> OperatorInfo:
        """Start a manual operator (transfer-leader, move-peer, split-region)."""
        self._require_bootstrapped()
        new_peer = 0
        if req.kind == ManualOperator.MovePeer:
            new_peer = (await self.alloc_ids(1)).first
        async with self._lock:
            region = self._routes.get(req.region_id)
            if region is None:
                raise PlacementFailure(_Code.RegionNotFound, f"region {req.region_id} not found")
            now = self._clock()
            op = manual_operator(req, region, self._region_runtime.get(region.id), self._stores,
                                 new_peer, self.operators.config, now)  # fmt: skip
            try:
                self.operators.add(op, now)
            except OperatorError as e:
                raise PlacementFailure(_Code.InvalidArgument, str(e)) from None
            return operator_info(op)

    def region_status(self, region_id: int) -> RegionStatus | None:
        """The region, its last heartbeat's report and its operator (None: unknown region)."""
        self._require_bootstrapped()
        region = self._routes.get(region_id)
        if region is None:
            return None
        rt = self._region_runtime.get(region_id)
        return region_status(self._route(region), rt, self._clock(), self.operators.get(region_id))

    # -- store states: drain and tombstone (see placement.admin) ------------------------------

    async def set_store_state(self, store_id: int, state: StoreState) -> StoreInfo:
        """Drain a store (Offline), or cancel its drain (Up); the store's record after."""
        async with self._lock:
            store = self._stores.get(store_id)
            if store is None:
                raise PlacementFailure(_Code.StoreNotFound, f"store {store_id} is not registered")
            config = self.operators.config
            info = check_state_change(store, state, self._stores, self._clock(), config)
            if info is not None:
                await self._commit(MetaWrite(stores=[info]))
                store.info = info
                store.empty_seen_at = None
                log.info("store %d is now %s", store_id, info.state.name)
            if state == StoreState.Offline:
                await self._maybe_tombstone()  # an empty store goes at once
        self.refresh_metrics()
        return self._stores[store_id].info

    async def _maybe_tombstone(self, snapshot: ClusterSnapshot | None = None) -> None:
        """Turn every drained offline store into a tombstone (call under the lock)."""
        offline = [s for s in self._stores.values() if s.info.state == StoreState.Offline]
        if not offline:
            return
        if snapshot is None:
            snapshot = self.snapshot()
        load = self.operators.store_load()
        now = self._clock()
        for store in offline:
            sid = store.info.id
            count = snapshot.stats[sid].region_count if sid in snapshot.stats else 0
            if tombstone_blocker(store, count, load.get(sid, 0) > 0, now, self._down_after):
                continue
            i = store.info
            info = StoreInfo(i.id, i.address, i.metrics_address, StoreState.Tombstone, i.version)
            await self._commit(MetaWrite(stores=[info]))
            store.info = info
            log.info("store %d is drained: now a tombstone", sid)
            if self._metrics is not None:
                self._metrics.forget_store(sid)
        self.refresh_metrics()

    def store_statuses(self, store_id: int = 0) -> list[StoreStatus]:
        """One store's status (``store_id``), or every store's by id (0)."""
        if store_id and store_id not in self._stores:
            raise PlacementFailure(_Code.StoreNotFound, f"store {store_id} is not registered")
        snapshot = self.snapshot()
        now = self._clock()
        ids = [store_id] if store_id else sorted(self._stores)
        return [store_status(self._stores[sid], snapshot, now, self._down_after) for sid in ids]

    # -- metrics -------------------------------------------------------------------------------

    def _publish_balance(self, snapshot: ClusterSnapshot) -> None:
        """Per-store counts and scores, and unhealthy regions, into the metrics."""
        m = self._metrics
        if m is None:
            return
        for sid, (rscore, lscore) in store_scores(snapshot).items():
            if self._stores[sid].info.state == StoreState.Tombstone:
                continue
            stats = snapshot.stats[sid]
            m.set_store_balance(sid, regions=stats.region_count, leaders=stats.leader_count,
                                region_score=rscore, leader_score=lscore)  # fmt: skip
        for kind, n in unhealthy_regions(snapshot, self.operators.config).items():
            m.unhealthy_regions.labels(kind).set(n)

