"""The replica checker: every region keeps ``max_replicas`` healthy voters.

For one region it returns at most one operator, trying in this order (PD
``checker/replica_checker.go`` plus its joint-state and learner checkers):

1. **joint state left behind** (an operator timed out inside it): leave it;
2. **down peer**: its store is down (state ``down``/``tombstone``, or silent for
   ``max_store_down_seconds``), or the leader has not heard from it for that
   long. A down learner, or a down voter of a region with more voters than
   wanted, is removed; otherwise it is replaced (a ``move-peer`` onto the best
   store). The leader is never down: it sent the report;
3. **offline peer** (its store is being drained): replaced the same way; when
   it leads, the leadership moves first to the best other voter;
4. **missing replicas** (fewer voters than ``max_replicas``): a healthy learner
   left behind is promoted, else a new peer (learner, then promoted) is added
   on the best store;
5. **extra replicas**: the worst voter (not up, then the highest region score;
   the leader last) is demoted and removed; then any learner left behind.

The *best store* is an ``up`` store with no replica of the region and room for
one more operator, with the lowest region score (influence included); ties go
to the lower store id. If none exists the region waits (nothing is removed to
make room). :func:`check_replicas` runs the checker over every region without
a running operator, in region-id order, within ``max_operators`` and the
per-store limit. Pure: the caller passes the time and an id allocator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypedDict

from regions.conf_change import is_joint
from regions.region import Peer, PeerRole
from regions.scheduling.cluster import ClusterSnapshot, RegionView, StoreState
from regions.scheduling.operators import (
    DEFAULT_TIMEOUTS,
    Operator,
    OperatorTimeouts,
    make_add_peer,
    make_leave_joint,
    make_move_peer,
    make_promote_learner,
    make_remove_peer,
)
from regions.scheduling.scores import BalancePolicy, SchedulePass, leader_score, region_score

__all__ = [
    "DEFAULT_REPLICA",
    "ReplicaConfig",
    "check_region",
    "check_replicas",
    "is_peer_down",
]


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    #: Voters every region should have (PD ``max-replicas``).
    max_replicas: int = 3
    #: Seconds after which a silent store's (or unheard peer's) replicas are replaced
    #: (PD ``max-store-down-time``: 30 min; the local cluster sets far less).
    max_store_down_seconds: float = 30 * 60.0
    #: At most this many operators per :func:`check_replicas` call (PD ``replica-schedule-limit``).
    max_operators: int = 64
    #: At most this many running-or-new operators per up store.
    store_limit: int = 2
    #: How the best store is chosen.
    region_policy: BalancePolicy = BalancePolicy.SIZE
    use_joint: bool = True
    timeouts: OperatorTimeouts = field(default=DEFAULT_TIMEOUTS)

    def __post_init__(self) -> None:
        if self.max_replicas < 1 or self.store_limit < 1 or self.max_operators < 0:
            raise ValueError("need max_replicas >= 1, store_limit >= 1 and max_operators >= 0")


DEFAULT_REPLICA = ReplicaConfig()


class _Kw(TypedDict):
    now: float
    region_size: int
    timeouts: OperatorTimeouts


@dataclass(frozen=True, slots=True)
class _Common:
    """The keyword arguments every operator this checker makes shares."""

    now: float
    region_size: int
    timeouts: OperatorTimeouts

    def kw(self) -> _Kw:
        return {"now": self.now, "region_size": self.region_size, "timeouts": self.timeouts}


def is_peer_down(snapshot: ClusterSnapshot, rv: RegionView, peer: Peer, max_down: float) -> bool:
    """Whether ``peer`` counts as lost: its store is down or unknown, or it is unheard that long."""
    store = snapshot.stores.get(peer.store_id)
    if store is None or store.is_down(max_down):
        return True
    return rv.down_peers.get(peer.id, 0.0) >= max_down


def _best_target(sp: SchedulePass, rv: RegionView, policy: BalancePolicy) -> int | None:
    holders = rv.store_ids()
    best: tuple[float, int] | None = None
    for s in sp.snapshot.up_stores():
        if s.id in holders or not sp.has_room([s.id]):
            continue
        key = (region_score(sp.stats[s.id], s, policy), s.id)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def _best_leader(sp: SchedulePass, rv: RegionView, excluded: int, max_down: float) -> int | None:
    """The healthy voter (not on ``excluded``) with the lowest leader score."""
    best: tuple[float, int] | None = None
    for p in rv.voters():
        store = sp.snapshot.stores.get(p.store_id)
        if p.store_id == excluded or store is None or not store.is_up:
            continue
        if is_peer_down(sp.snapshot, rv, p, max_down) or p.id in rv.pending_peers:
            continue
        key = (leader_score(sp.stats[p.store_id], store, BalancePolicy.COUNT), p.store_id)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def check_region(
    snapshot: ClusterSnapshot,
    rv: RegionView,
    *,
    now: float,
    alloc_id: Callable[[], int],
    config: ReplicaConfig = DEFAULT_REPLICA,
    sp: SchedulePass | None = None,
) -> Operator | None:
    """The operator that fixes the region's most urgent replica problem, or None.

    ``sp`` carries the pass's influence and per-store load (a fresh one, with
    no running operator, if not given). ``alloc_id`` is called only when an
    operator that adds a peer is made.
    """
    if sp is None:
        sp = SchedulePass(snapshot, (), config.store_limit)
    region = rv.region
    if rv.leader is None or region.peer_by_id(rv.leader.id) is None:
        return None  # only a leader can change the membership
    leader = rv.leader.store_id
    common = _Common(now, rv.size, config.timeouts)
    if is_joint(region):
        return make_leave_joint(region, leader, desc="replica-checker: leave joint", **common.kw())
    op = _fix_lost_peers(sp, rv, leader, alloc_id, config, common)
    if op is not None:
        return op
    voters = rv.voters()
    max_down = config.max_store_down_seconds
    if len(voters) < config.max_replicas:
        for p in rv.learners():
            store = snapshot.stores.get(p.store_id)
            healthy = store is not None and store.is_up and p.id not in rv.pending_peers
            if healthy and sp.has_room([p.store_id]):
                return make_promote_learner(
                    region, p.store_id, desc="replica-checker: promote learner", **common.kw()
                )
        target = _best_target(sp, rv, config.region_policy)
        if target is None:
            return None
        return make_add_peer(
            region, target, alloc_id(), desc="replica-checker: missing replica", **common.kw()
        )
    if len(voters) > config.max_replicas:

        def badness(p: Peer) -> tuple[bool, bool, float, int]:
            store = snapshot.stores.get(p.store_id)
            up = store is not None and store.is_up
            score = (
                region_score(sp.stats[p.store_id], store, config.region_policy) if store else 0.0
            )
            return (p.store_id != leader, not up, score, p.store_id)

        worst = max((p for p in voters if sp.has_room([p.store_id])), key=badness, default=None)
        if worst is None:
            return None
        transfer_to = None
        if worst.store_id == leader:
            transfer_to = _best_leader(sp, rv, leader, max_down)
            if transfer_to is None:
                return None
        return make_remove_peer(
            region,
            leader,
            worst.store_id,
            transfer_to=transfer_to,
            desc="replica-checker: extra replica",
            **common.kw(),
        )
    for p in rv.learners():
        if sp.has_room([p.store_id]):
            return make_remove_peer(
                region, leader, p.store_id, desc="replica-checker: extra learner", **common.kw()
            )
    return None


def _fix_lost_peers(
    sp: SchedulePass,
    rv: RegionView,
    leader: int,
    alloc_id: Callable[[], int],
    config: ReplicaConfig,
    common: _Common,
) -> Operator | None:
    """Remove or replace the first down peer, else the first peer on an offline store."""
    snapshot = sp.snapshot
    region = rv.region
    max_down = config.max_store_down_seconds

    def offline(p: Peer) -> bool:
        store = snapshot.stores.get(p.store_id)
        return store is not None and store.state == StoreState.OFFLINE

    voters = rv.voters()
    for why, lost in (
        ("down", lambda p: p.store_id != leader and is_peer_down(snapshot, rv, p, max_down)),
        ("offline", offline),
    ):
        for p in region.peers:
            if not lost(p):
                continue
            if p.role == PeerRole.Learner or len(voters) > config.max_replicas:
                transfer_to = None
                if p.store_id == leader:
                    transfer_to = _best_leader(sp, rv, leader, max_down)
                    if transfer_to is None:
                        continue
                return make_remove_peer(
                    region,
                    leader,
                    p.store_id,
                    transfer_to=transfer_to,
                    desc=f"replica-checker: remove {why} peer",
                    **common.kw(),
                )
            target = _best_target(sp, rv, config.region_policy)
            if target is None:
                continue
            transfer_to = None
            if p.store_id == leader:
                transfer_to = _best_leader(sp, rv, leader, max_down)
            return make_move_peer(
                region,
                leader,
                p.store_id,
                target,
                alloc_id(),
                use_joint=config.use_joint,
                transfer_to=transfer_to,
                desc=f"replica-checker: replace {why} peer",
                **common.kw(),
            )
    return None


def check_replicas(
    snapshot: ClusterSnapshot,
    *,
    now: float,
    alloc_id: Callable[[], int],
    running: Iterable[Operator] = (),
    config: ReplicaConfig = DEFAULT_REPLICA,
) -> list[Operator]:
    """One operator per region that needs one (see the module docstring), within the limits."""
    sp = SchedulePass(snapshot, running, config.store_limit)
    for rv in snapshot.regions.values():
        if len(sp.made) >= config.max_operators:
            break
        if rv.id in sp.busy:
            continue
        op = check_region(snapshot, rv, now=now, alloc_id=alloc_id, config=config, sp=sp)
        if op is not None and sp.has_room(op.store_ids()):
            sp.add(op)
    return sp.made
