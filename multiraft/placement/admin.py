"""Administrative requests of the placement service: manual operators, store states, status.

Pure, synchronous helpers that :class:`~multiraft.placement.cluster.Cluster` calls under
its lock, with its state passed in (stores, routing table, region runtime, the time).
They raise :class:`~multiraft.placement.errors.PlacementFailure` for a refusal.

Store states (PD ``metapb.StoreState``; multiraft-design §6.4)
---------------------------------------------------------------
``Up`` → ``Offline`` (:func:`check_state_change`, ``multiraft store drain``): refused when
fewer than ``max_replicas`` stores would stay up besides it (its replicas would have
nowhere to go). While Offline the store keeps serving; the replica checker moves every
replica off it, leaders first handing over. ``Offline`` → ``Up`` cancels the drain.

``Offline`` → ``Tombstone`` happens by itself (:func:`tombstone_blocker`) once **all** hold:

* no region in the routing table has a peer on the store;
* no running operator puts work on it (an AddLearner onto it may be in flight);
* the store itself reported 0 regions in a store heartbeat received *after* the service
  first saw it empty (``StoreRuntime.empty_seen_at``, a heartbeat count, so the rule
  does not depend on clock resolution): a report from before its last replica was
  removed does not count. A store silent for ``max_store_down_seconds`` is exempt (it
  cannot report, and its replicas were replaced as down).

A Tombstone is final: the id never comes back (``StoreTombstoned`` to its heartbeats and
to ``PutStore``), and no request sets a store Tombstone directly.
"""

from __future__ import annotations

from collections.abc import Mapping

from multiraft.metrics.placement import UNHEALTHY_REGION_KINDS
from multiraft.placement.errors import PlacementFailure
from multiraft.placement.heartbeats import RegionRuntime, StoreRuntime, store_liveness
from multiraft.placement.scheduler import SchedulerConfig
from multiraft.wire.placement_messages import (
    AddOperator,
    ManualOperator,
    OperatorInfo,
    PlacementErrorCode,
    RegionRoute,
    RegionStatus,
    StoreInfo,
    StoreState,
    StoreStatus,
)
from regions.region import PeerRole, Region
from regions.region_map import RegionMap
from regions.scheduling import (
    BalanceConfig,
    ClusterSnapshot,
    Operator,
    OperatorError,
    RegionView,
    StoreView,
    make_move_peer,
    make_split_region,
    make_transfer_leader,
)
from regions.scheduling import StoreState as ScheduleStoreState
from regions.scheduling.replica_checker import is_peer_down
from regions.scheduling.scores import leader_score, region_score

__all__ = [
    "build_snapshot",
    "check_state_change",
    "manual_operator",
    "operator_info",
    "region_status",
    "store_scores",
    "store_status",
    "tombstone_blocker",
    "unhealthy_regions",
]

_Code = PlacementErrorCode
#: The scores ``store show`` and the metrics report are the balancers' (default policies).
_BALANCE = BalanceConfig()


def build_snapshot(
    stores: Mapping[int, StoreRuntime],
    routes: RegionMap,
    runtime: Mapping[int, RegionRuntime],
    now: float,
    down_after: float,
) -> ClusterSnapshot:
    """Stores and regions as the heartbeats describe them at ``now`` (for the schedulers)."""
    views = [
        StoreView(
            sid,
            ScheduleStoreState(store_liveness(s, now, down_after=down_after)),
            silent_seconds=max(now - s.last_heartbeat, 0.0),
        )
        for sid, s in stores.items()
    ]
    regions = []
    for region in routes.scan(b"", b"", len(routes) + 1):
        rt = runtime.get(region.id)
        if rt is None:
            regions.append(RegionView(region))
            continue
        regions.append(
            RegionView(
                region,
                rt.leader,
                rt.approximate_size,
                rt.approximate_keys,
                {d.peer.id: float(d.down_seconds) for d in rt.down_peers},
                frozenset(p.id for p in rt.pending_peers),
            )
        )
    return ClusterSnapshot(views, regions)


def operator_info(op: Operator) -> OperatorInfo:
    """The wire record of an operator."""
    return OperatorInfo(
        region_id=op.region_id,
        kind=str(op.kind),
        desc=op.desc,
        status=str(op.status),
        step_index=op.step_index,
        steps=list(op.steps),
        created_at=float(op.created_at),
        finished_at=None if op.finished_at is None else float(op.finished_at),
    )


def _require_usable(stores: Mapping[int, StoreRuntime], store_id: int, now: float,
                    down_after: float, role: str) -> None:  # fmt: skip
    """``store_id`` is registered and may receive work as ``role`` (a target)."""
    s = stores.get(store_id)
    if s is None:
        raise PlacementFailure(_Code.StoreNotFound, f"store {store_id} is not registered")
    live = store_liveness(s, now, down_after=down_after)
    if live != "up":
        why = {"offline": "offline (being drained)", "tombstone": "removed (tombstone)"}
        silent = f"{live} (no heartbeat for {now - s.last_heartbeat:.0f} s)"
        raise PlacementFailure(
            _Code.InvalidArgument,
            f"store {store_id} cannot be the {role}: it is {why.get(live, silent)}",
        )


def manual_operator(
    req: AddOperator,
    region: Region,
    rt: RegionRuntime | None,
    stores: Mapping[int, StoreRuntime],
    new_peer: int,
    config: SchedulerConfig,
    now: float,
) -> Operator:
    """The operator an ``AddOperator`` request asks for (not yet started).

    Raises:
        PlacementFailure: ``StoreNotFound`` for an unknown store, ``InvalidArgument`` for a
            target that is not up or a plan the region refuses.
    """
    leader = rt.leader.store_id if rt is not None and rt.leader is not None else None
    size = rt.approximate_size if rt is not None else 0
    down = config.max_store_down_seconds
    timeouts = config.timeouts
    try:
        if req.kind == ManualOperator.TransferLeader:
            _require_usable(stores, req.to_store, now, down, "new leader")
            return make_transfer_leader(region, leader, req.to_store, now=now, desc="admin",
                                        region_size=size, timeouts=timeouts)  # fmt: skip
        if req.kind == ManualOperator.MovePeer:
            if req.from_store == req.to_store:
                raise OperatorError(
                    f"the source and the target are the same store ({req.to_store})"
                )
            if req.from_store not in stores:
                raise PlacementFailure(
                    _Code.StoreNotFound, f"store {req.from_store} is not registered"
                )
            _require_usable(stores, req.to_store, now, down, "target")
            return make_move_peer(region, leader, req.from_store, req.to_store, new_peer,
                                  now=now, desc="admin", region_size=size,
                                  use_joint=config.use_joint, timeouts=timeouts)  # fmt: skip
        keys = [req.split_key] if req.split_key else []
        return make_split_region(region, keys, now=now, desc="admin", region_size=size,
                                 timeouts=timeouts)  # fmt: skip
    except OperatorError as e:
        raise PlacementFailure(_Code.InvalidArgument, str(e)) from None


def check_state_change(
    store: StoreRuntime,
    state: StoreState,
    stores: Mapping[int, StoreRuntime],
    now: float,
    config: SchedulerConfig,
) -> StoreInfo | None:
    """The store's new record for ``SetStoreState``, or None when nothing changes.

    Raises:
        PlacementFailure: ``StoreTombstoned`` for a removed store, ``InvalidArgument`` for a
            drain that would leave too few stores, or a direct Tombstone.
    """
    info = store.info
    if info.state == StoreState.Tombstone:
        raise PlacementFailure(_Code.StoreTombstoned, f"store {info.id} was removed (tombstone)")
    if state == info.state:
        return None
    if state == StoreState.Tombstone:
        raise PlacementFailure(
            _Code.InvalidArgument,
            f"store {info.id} cannot be set Tombstone directly: drain it (set it Offline, "
            "`multiraft store drain`) and it becomes Tombstone once it holds no replica",
        )
    if state == StoreState.Offline:
        down = config.max_store_down_seconds
        others = sorted(
            sid
            for sid, s in stores.items()
            if sid != info.id and store_liveness(s, now, down_after=down) in ("up", "disconnected")
        )
        if len(others) < config.max_replicas:
            have = f"stores {', '.join(map(str, others))}" if others else "none"
            raise PlacementFailure(
                _Code.InvalidArgument,
                f"cannot drain store {info.id}: regions keep {config.max_replicas} replicas, "
                f"and only {len(others)} other store(s) are up ({have})",
            )
    return StoreInfo(info.id, info.address, info.metrics_address, state, info.version)


def tombstone_blocker(
    store: StoreRuntime, region_count: int, busy: bool, now: float, down_after: float
) -> str | None:
    """Why the offline ``store`` cannot become Tombstone yet (None: it can).

    ``region_count`` is the regions with a peer on it in the routing table and ``busy``
    whether a running operator involves it. Updates ``store.empty_seen_at`` (see the
    module docstring), so call it on every check.
    """
    if region_count or busy:
        store.empty_seen_at = None
        if region_count:
            return f"{region_count} region(s) still have a replica on it"
        return "an operator still involves it"
    if store.empty_seen_at is None:
        store.empty_seen_at = store.heartbeats
    if now - store.last_heartbeat >= down_after:
        return None  # down: it cannot report, and its replicas are gone from every region
    if store.stats is None or store.heartbeats <= store.empty_seen_at:
        return "waiting for the store to report that it holds no replica"
    if store.stats.region_count:
        return f"the store still reports {store.stats.region_count} replica(s)"
    return None


def store_status(
    store: StoreRuntime, snapshot: ClusterSnapshot, now: float, down_after: float
) -> StoreStatus:
    """What ``GetStoreStatus`` answers for one store."""
    sid = store.info.id
    stats = snapshot.stats.get(sid)
    view = snapshot.stores.get(sid)
    rscore = lscore = 0.0
    if stats is not None and view is not None:
        rscore = region_score(stats, view, _BALANCE.region_policy)
        lscore = leader_score(stats, view, _BALANCE.leader_policy)
    return StoreStatus(
        info=store.info,
        liveness=store_liveness(store, now, down_after=down_after),
        heartbeat_age=max(now - store.last_heartbeat, 0.0) if store.heartbeats else None,
        stats=store.stats,
        region_count=stats.region_count if stats else 0,
        leader_count=stats.leader_count if stats else 0,
        region_size=stats.region_size if stats else 0,
        region_score=float(rscore),
        leader_score=float(lscore),
    )


def store_scores(snapshot: ClusterSnapshot) -> dict[int, tuple[float, float]]:
    """Store id -> (region score, leader score), as the balancers compute them."""
    out = {}
    for sid, view in snapshot.stores.items():
        stats = snapshot.stats[sid]
        out[sid] = (
            float(region_score(stats, view, _BALANCE.region_policy)),
            float(leader_score(stats, view, _BALANCE.leader_policy)),
        )
    return out


def region_status(
    route: RegionRoute, rt: RegionRuntime | None, now: float, operator: Operator | None
) -> RegionStatus:
    """What ``GetRegionStatus`` answers."""
    op = None if operator is None else operator_info(operator)
    if rt is None:
        return RegionStatus(route, operator=op)
    age = None if rt.last_heartbeat is None else max(now - rt.last_heartbeat, 0.0)
    return RegionStatus(
        route,
        list(rt.down_peers),
        list(rt.pending_peers),
        rt.approximate_size,
        rt.approximate_keys,
        age,
        op,
    )


def unhealthy_regions(snapshot: ClusterSnapshot, config: SchedulerConfig) -> dict[str, int]:
    """Regions by unhealthy kind (:data:`~multiraft.metrics.placement.UNHEALTHY_REGION_KINDS`;
    one region may count under several). ``oversized`` stays 0: the split threshold is
    the stores' setting, and they split by themselves."""
    counts = dict.fromkeys(UNHEALTHY_REGION_KINDS, 0)
    down_after = config.max_store_down_seconds
    for rv in snapshot.regions.values():
        peers = rv.region.peers
        voters = sum(p.role in (PeerRole.Voter, PeerRole.IncomingVoter) for p in peers)
        if voters < config.max_replicas:
            counts["miss_peer"] += 1
        elif voters > config.max_replicas:
            counts["extra_peer"] += 1
        if rv.leader is None:
            counts["no_leader"] += 1
        elif any(p.id != rv.leader.id and is_peer_down(snapshot, rv, p, down_after)
                 for p in peers):  # fmt: skip
            counts["down_peer"] += 1
        if rv.pending_peers:
            counts["pending_peer"] += 1
    return counts
