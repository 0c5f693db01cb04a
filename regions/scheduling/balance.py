"""Balance schedulers: spread leaders, and replicas, evenly over the stores.

Both are pure functions of a :class:`~regions.scheduling.cluster.ClusterSnapshot`
and the operators already running; each returns at most
``config.max_operators`` new operators (PD's ``batch``) and never more than
``config.store_limit`` running-or-new operators on one ``up`` store.

**balance-leader** (PD ``schedulers/balance_leader.go``). Stores are visited
from the highest leader score down; for each region it leads, its other
voters are tried from the lowest score up, and the first pair for which the
move is worth it (:func:`~regions.scheduling.scores.should_move`, amount 1 or
the region's size) becomes a ``transfer-leader`` operator.

**balance-region** (PD ``schedulers/balance_region.go``). Stores are visited
from the highest region score down; on the source the scheduler prefers
regions where it holds a follower, then those it leads (the operator then
transfers the leadership to the other voter with the lowest leader score
first). The target is the ``up`` store with the lowest region score that
holds **no replica of the region**; the move becomes a ``move-peer`` operator
with a new peer id from ``alloc_id``.

Only *healthy* regions are balanced: a known leader, no operator running, not
joint, no learner, no down or pending peer, every peer on an ``up`` store.
Anything else is the replica checker's job first.

After each operator the pass adds its influence to the statistics, so the
next choice sees the cluster as it will be. Every operator strictly lowers the
score potential (see :mod:`regions.scheduling.scores`), so applying the
operators and calling again converges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from regions.scheduling.cluster import ClusterSnapshot, RegionView, StoreView
from regions.scheduling.operators import (
    DEFAULT_TIMEOUTS,
    Operator,
    OperatorTimeouts,
    make_move_peer,
    make_transfer_leader,
)
from regions.scheduling.scores import (
    BalancePolicy,
    SchedulePass,
    leader_score,
    region_score,
    should_move,
)

__all__ = [
    "DEFAULT_BALANCE",
    "BalanceConfig",
    "balance_leaders",
    "balance_regions",
    "is_balanceable",
]


@dataclass(frozen=True, slots=True)
class BalanceConfig:
    """Knobs of the balance schedulers (PD ``schedule`` config, scaled for a small cluster)."""

    #: Leader score: leader count (PD's default) or leader size.
    leader_policy: BalancePolicy = BalancePolicy.COUNT
    #: Region score: region size (PD's default) or region count.
    region_policy: BalancePolicy = BalancePolicy.SIZE
    #: At most this many operators per call (PD ``batch``: 4).
    max_operators: int = 4
    #: At most this many running-or-new operators per up store.
    store_limit: int = 2
    #: Extra score gap required before moving (0: any move that narrows the gap).
    tolerance: float = 0.0
    use_joint: bool = True
    timeouts: OperatorTimeouts = field(default=DEFAULT_TIMEOUTS)

    def __post_init__(self) -> None:
        if self.max_operators < 0 or self.store_limit < 1 or self.tolerance < 0:
            raise ValueError("need max_operators >= 0, store_limit >= 1 and tolerance >= 0")


DEFAULT_BALANCE = BalanceConfig()


def is_balanceable(snapshot: ClusterSnapshot, rv: RegionView) -> bool:
    """Whether the region is healthy enough to be moved for balance."""
    region = rv.region
    if rv.leader is None or region.peer_by_id(rv.leader.id) is None:
        return False
    if rv.down_peers or rv.pending_peers or rv.learners():
        return False
    if len(rv.voters()) != len(region.peers):  # joint roles
        return False
    for p in region.peers:
        store = snapshot.stores.get(p.store_id)
        if store is None or not store.is_up:
            return False
    return True


def _amount(rv: RegionView, policy: BalancePolicy) -> int:
    return 1 if policy == BalancePolicy.COUNT else rv.size


def balance_leaders(
    snapshot: ClusterSnapshot,
    *,
    now: float,
    running: Iterable[Operator] = (),
    config: BalanceConfig = DEFAULT_BALANCE,
) -> list[Operator]:
    """Up to ``config.max_operators`` leader transfers that even out leader scores."""
    sp = SchedulePass(snapshot, running, config.store_limit)
    led: dict[int, list[RegionView]] = {}
    for rv in snapshot.regions.values():
        if is_balanceable(snapshot, rv):
            assert rv.leader is not None
            led.setdefault(rv.leader.store_id, []).append(rv)
    up = snapshot.up_stores()
    while len(sp.made) < config.max_operators:
        op = _leader_move(sp, up, led, now, config)
        if op is None:
            break
        sp.add(op)
    return sp.made


def _leader_move(
    sp: SchedulePass,
    up: list[StoreView],
    led: dict[int, list[RegionView]],
    now: float,
    config: BalanceConfig,
) -> Operator | None:
    policy = config.leader_policy
    score = {s.id: leader_score(sp.stats[s.id], s, policy) for s in up}
    stores = {s.id: s for s in up}
    for src in sorted(up, key=lambda s: (-score[s.id], s.id)):
        if not sp.has_room([src.id]):
            continue
        for rv in led.get(src.id, ()):
            if rv.id in sp.busy:
                continue
            w = _amount(rv, policy)
            targets = [p.store_id for p in rv.voters() if p.store_id != src.id]
            for t in sorted(targets, key=lambda sid: (score[sid], sid)):
                if not sp.has_room([t]):
                    continue
                worth = should_move(
                    score[src.id],
                    score[t],
                    w,
                    src.leader_weight,
                    stores[t].leader_weight,
                    config.tolerance,
                )
                if worth:
                    return make_transfer_leader(
                        rv.region,
                        src.id,
                        t,
                        now=now,
                        desc="balance-leader",
                        region_size=rv.size,
                        timeouts=config.timeouts,
                    )
    return None


def balance_regions(
    snapshot: ClusterSnapshot,
    *,
    now: float,
    alloc_id: Callable[[], int],
    running: Iterable[Operator] = (),
    config: BalanceConfig = DEFAULT_BALANCE,
) -> list[Operator]:
    """Up to ``config.max_operators`` replica moves that even out region scores.

    ``alloc_id`` gives a new, never used peer id; it is called once per operator made.
    """
    sp = SchedulePass(snapshot, running, config.store_limit)
    up = snapshot.up_stores()
    while len(sp.made) < config.max_operators:
        op = _region_move(sp, up, now, alloc_id, config)
        if op is None:
            break
        sp.add(op)
    return sp.made


def _region_move(
    sp: SchedulePass,
    up: list[StoreView],
    now: float,
    alloc_id: Callable[[], int],
    config: BalanceConfig,
) -> Operator | None:
    snapshot = sp.snapshot
    policy = config.region_policy
    score = {s.id: region_score(sp.stats[s.id], s, policy) for s in up}
    lscore = {s.id: leader_score(sp.stats[s.id], s, config.leader_policy) for s in up}
    stores = {s.id: s for s in up}
    by_score = sorted(up, key=lambda s: (score[s.id], s.id))
    for src in reversed(by_score):
        if not sp.has_room([src.id]):
            continue
        candidates = [
            rv
            for rv in snapshot.regions_on_store(src.id)
            if rv.id not in sp.busy and is_balanceable(snapshot, rv)
        ]
        # Followers first (a cheaper move), then the regions the source leads.
        candidates.sort(key=lambda rv: (rv.leader_store_id == src.id, rv.id))
        for rv in candidates:
            w = _amount(rv, policy)
            holders = rv.store_ids()
            transfer_to: int | None = None
            if rv.leader_store_id == src.id:
                others = [p.store_id for p in rv.voters() if p.store_id != src.id]
                if others:  # else a single replica: it hands over to the new peer
                    roomy = [sid for sid in others if sp.has_room([sid])]
                    if not roomy:
                        continue
                    transfer_to = min(roomy, key=lambda sid: (lscore[sid], sid))
            for t in by_score:
                if t.id in holders or not sp.has_room([t.id]):
                    continue
                worth = should_move(
                    score[src.id],
                    score[t.id],
                    w,
                    src.region_weight,
                    stores[t.id].region_weight,
                    config.tolerance,
                )
                if not worth:
                    continue
                assert rv.leader is not None
                return make_move_peer(
                    rv.region,
                    rv.leader.store_id,
                    src.id,
                    t.id,
                    alloc_id(),
                    now=now,
                    use_joint=config.use_joint,
                    transfer_to=transfer_to,
                    desc="balance-region",
                    region_size=rv.size,
                    timeouts=config.timeouts,
                )
    return None
