"""balance-leader and balance-region: choices, limits, and convergence on a simulated cluster."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from regions.scheduling.balance import (
    BalanceConfig,
    balance_leaders,
    balance_regions,
    is_balanceable,
)
from regions.scheduling.cluster import ClusterSnapshot, RegionView, StoreState, StoreView
from regions.scheduling.operators import (
    Operator,
    OperatorKind,
    TransferLeader,
    make_transfer_leader,
)
from regions.scheduling.scores import BalancePolicy, leader_score, potential, region_score
from tests.regions.cluster_sim import SimCluster

COUNT = BalancePolicy.COUNT
SIZE = BalancePolicy.SIZE


def cluster(
    n_stores: int, placements: list[list[int]], leaders: list[int] | None = None
) -> SimCluster:
    sim = SimCluster()
    for sid in range(1, n_stores + 1):
        sim.add_store(sid)
    for i, stores in enumerate(placements):
        sim.add_region(i + 1, stores, leader=leaders[i] if leaders else stores[0], size=10)
    return sim


def leader_counts(sim: SimCluster) -> dict[int, int]:
    snap = sim.snapshot()
    return {sid: s.leader_count for sid, s in snap.stats.items()}


def region_counts(sim: SimCluster) -> dict[int, int]:
    snap = sim.snapshot()
    return {sid: s.region_count for sid, s in snap.stats.items()}


def test_leaders_move_off_the_busiest_store() -> None:
    sim = cluster(3, [[1, 2, 3]] * 6)
    ops = balance_leaders(
        sim.snapshot(), now=0.0, config=BalanceConfig(max_operators=10, store_limit=10)
    )
    assert all(
        op.kind == OperatorKind.TRANSFER_LEADER and op.desc == "balance-leader" for op in ops
    )
    for op in ops:
        sim.run(op)
    assert sorted(leader_counts(sim).values()) == [2, 2, 2]
    assert balance_leaders(sim.snapshot(), now=0.0) == []


def test_batch_and_store_limits() -> None:
    sim = cluster(3, [[1, 2, 3]] * 9)
    ops = balance_leaders(sim.snapshot(), now=0.0, config=BalanceConfig(max_operators=2))
    assert len(ops) == 2
    ops = balance_leaders(
        sim.snapshot(), now=0.0, config=BalanceConfig(max_operators=9, store_limit=3)
    )
    assert len(ops) == 3  # every one touches store 1, which takes 3 at most
    # Running operators count against the limit, and their regions are busy.
    running = ops[:2]
    more = balance_leaders(
        sim.snapshot(),
        now=0.0,
        running=running,
        config=BalanceConfig(max_operators=9, store_limit=3),
    )
    assert len(more) == 1
    assert {op.region_id for op in more}.isdisjoint(op.region_id for op in running)


def test_running_operators_influence_the_scores() -> None:
    sim = cluster(3, [[1, 2, 3]] * 4)
    # Two transfers to store 2 are already under way: the next one goes to store 3.
    running = [make_transfer_leader(sim.regions[i], 1, 2, now=0.0) for i in (1, 2)]
    cfg = BalanceConfig(store_limit=4)
    ops = balance_leaders(sim.snapshot(), now=0.0, running=running, config=cfg)
    assert [op.steps[0].to_store for op in ops if isinstance(op.steps[0], TransferLeader)] == [3]
    # Finished operators no longer count.
    for op in running:
        op.cancel()
    assert len(balance_leaders(sim.snapshot(), now=0.0, running=running, config=cfg)) == 2


def test_unhealthy_regions_and_stores_are_left_alone() -> None:
    sim = cluster(3, [[1, 2, 3]] * 4)
    sim.stores[3] = StoreView(3, StoreState.DISCONNECTED)
    snap = sim.snapshot()
    assert not any(is_balanceable(snap, rv) for rv in snap.regions.values())
    assert balance_leaders(snap, now=0.0) == []
    sim = cluster(3, [[1, 2, 3]] * 4)
    sim.down_peers[1] = {sim.regions[1].peers[1].id: 5.0}
    snap = sim.snapshot()
    assert not is_balanceable(snap, snap.regions[1])
    assert is_balanceable(snap, snap.regions[2])
    no_leader = RegionView(sim.regions[2], None)
    assert not is_balanceable(snap, no_leader)


def test_regions_move_to_an_empty_store() -> None:
    sim = cluster(4, [[1, 2, 3]] * 8)
    cfg = BalanceConfig(region_policy=COUNT, max_operators=4, store_limit=8)
    ops = balance_regions(sim.snapshot(), now=0.0, alloc_id=sim.alloc_id, config=cfg)
    assert len(ops) == 4 and all(op.kind == OperatorKind.MOVE_PEER for op in ops)
    for op in ops:
        target = op.steps[0].store_ids()[0]  # AddLearner
        assert target == 4
        assert target not in {p.store_id for p in sim.regions[op.region_id].peers}
        sim.run(op)
    counts = region_counts(sim)
    assert counts[4] == 4 and sum(counts.values()) == 24
    # A leader's replica moves only after handing the leadership to another old voter.
    leaders = leader_counts(sim)
    assert sum(leaders.values()) == 8 and leaders[4] == 0


def test_moving_a_single_replica_hands_the_leadership_to_the_new_peer() -> None:
    sim = SimCluster()
    sim.add_store(1)
    sim.add_store(4)
    sim.add_region(9, [1], size=10)
    cfg = BalanceConfig(region_policy=COUNT, max_operators=1)
    # One region on store 1, none on store 4: a gap of 1 is not worth a move.
    assert balance_regions(sim.snapshot(), now=0.0, alloc_id=sim.alloc_id, config=cfg) == []
    sim.add_region(10, [1], size=10)
    [op] = balance_regions(sim.snapshot(), now=0.0, alloc_id=sim.alloc_id, config=cfg)
    assert any(isinstance(s, TransferLeader) for s in op.steps)
    sim.run(op)
    assert sim.leaders[op.region_id] == 4 and region_counts(sim) == {1: 1, 4: 1}


def test_weights_share_regions_in_proportion() -> None:
    sim = SimCluster()
    sim.stores[1] = StoreView(1)
    sim.stores[2] = StoreView(2, region_weight=2.0)
    for rid in range(1, 31):
        sim.add_region(rid, [1], size=10)
    cfg = BalanceConfig(region_policy=COUNT, max_operators=50, store_limit=50)
    run_until_balanced(
        sim, lambda s: balance_regions(s, now=0.0, alloc_id=sim.alloc_id, config=cfg)
    )
    assert region_counts(sim) == {1: 10, 2: 20}


def run_until_balanced(
    sim: SimCluster,
    schedule: Callable[[ClusterSnapshot], list[Operator]],
    value: Callable[[ClusterSnapshot, int], float] | None = None,
    max_rounds: int = 500,
) -> int:
    """Apply the scheduler's operators until it has none; check every one lowers the potential."""
    ops_done = 0
    for _ in range(max_rounds):
        ops = schedule(sim.snapshot())
        if not ops:
            return ops_done
        for op in ops:
            before = sim.snapshot()
            sim.run(op)
            ops_done += 1
            if value is not None:
                after = sim.snapshot()
                weights = {sid: 1.0 for sid in sim.stores}
                pb = potential({sid: value(before, sid) for sid in sim.stores}, weights)
                pa = potential({sid: value(after, sid) for sid in sim.stores}, weights)
                assert pa < pb, f"{op.describe()} did not lower the potential {pb} -> {pa}"
                spread_b = _spread(before, value)
                assert _spread(after, value) <= spread_b
    raise AssertionError("balancing did not terminate")


def _spread(snap: ClusterSnapshot, value: Callable[[ClusterSnapshot, int], float]) -> float:
    vals = [value(snap, sid) for sid in snap.stores]
    return max(vals) - min(vals)


@st.composite
def random_clusters(draw: st.DrawFn) -> tuple[int, list[list[int]], list[int], list[int]]:
    n_stores = draw(st.integers(3, 6))
    n_regions = draw(st.integers(1, 30))
    placements = [draw(st.permutations(range(1, n_stores + 1)))[:3] for _ in range(n_regions)]
    leaders = [draw(st.sampled_from(p)) for p in placements]
    sizes = [draw(st.integers(1, 100)) for _ in range(n_regions)]
    return n_stores, placements, leaders, sizes


def build(case: tuple[int, list[list[int]], list[int], list[int]]) -> SimCluster:
    n_stores, placements, leaders, sizes = case
    sim = SimCluster()
    for sid in range(1, n_stores + 1):
        sim.add_store(sid)
    for i, (stores, leader, size) in enumerate(zip(placements, leaders, sizes, strict=True)):
        sim.add_region(i + 1, stores, leader=leader, size=size)
    return sim


@given(random_clusters(), st.sampled_from([COUNT, SIZE]), st.integers(1, 4))
@settings(derandomize=True, max_examples=60, deadline=None)
def test_region_balance_converges(
    case: tuple[int, list[list[int]], list[int], list[int]], policy: BalancePolicy, limit: int
) -> None:
    sim = build(case)
    cfg = BalanceConfig(region_policy=policy, max_operators=4, store_limit=limit)

    def value(snap: ClusterSnapshot, sid: int) -> float:
        return region_score(snap.stats[sid], snap.stores[sid], policy)

    total = sum(len(r.peers) for r in sim.regions.values())
    run_until_balanced(
        sim, lambda s: balance_regions(s, now=0.0, alloc_id=sim.alloc_id, config=cfg), value
    )
    assert sum(len(r.peers) for r in sim.regions.values()) == total  # moves only
    for r in sim.regions.values():
        assert len({p.store_id for p in r.peers}) == 3  # never two replicas on one store
    if policy == COUNT:
        # With every store up and every region healthy, a gap of 2 always has a move.
        assert _spread(sim.snapshot(), value) <= 1


@given(random_clusters(), st.sampled_from([COUNT, SIZE]))
@settings(derandomize=True, max_examples=60, deadline=None)
def test_leader_balance_converges(
    case: tuple[int, list[list[int]], list[int], list[int]], policy: BalancePolicy
) -> None:
    sim = build(case)
    cfg = BalanceConfig(leader_policy=policy, max_operators=4, store_limit=2)

    def value(snap: ClusterSnapshot, sid: int) -> float:
        return leader_score(snap.stats[sid], snap.stores[sid], policy)

    placements = {rid: sorted(p.store_id for p in r.peers) for rid, r in sim.regions.items()}
    run_until_balanced(sim, lambda s: balance_leaders(s, now=0.0, config=cfg), value)
    # Leader transfers never move replicas.
    assert placements == {
        rid: sorted(p.store_id for p in r.peers) for rid, r in sim.regions.items()
    }
    if policy == COUNT and len(sim.stores) == 3:
        assert _spread(sim.snapshot(), value) <= 1  # every store holds every region
