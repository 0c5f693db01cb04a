"""The replica checker: missing, extra, down and offline replicas, on a simulated cluster."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from regions.conf_change import add_learner, enter_joint, is_joint
from regions.region import Peer, PeerRole
from regions.scheduling.cluster import StoreState, StoreView
from regions.scheduling.operators import (
    AddLearner,
    Operator,
    OperatorKind,
    PromoteLearner,
    RemovePeer,
    make_transfer_leader,
)
from regions.scheduling.replica_checker import (
    ReplicaConfig,
    check_region,
    check_replicas,
    is_peer_down,
)
from tests.regions.cluster_sim import SimCluster

DOWN = 600.0
CFG = ReplicaConfig(max_replicas=3, max_store_down_seconds=DOWN, store_limit=10)


def cluster(n_stores: int = 5) -> SimCluster:
    sim = SimCluster()
    for sid in range(1, n_stores + 1):
        sim.add_store(sid)
    return sim


def check(sim: SimCluster, rid: int, config: ReplicaConfig = CFG) -> Operator | None:
    return check_region(
        sim.snapshot(), sim.view(rid), now=0.0, alloc_id=sim.alloc_id, config=config
    )


def fix_all(sim: SimCluster, config: ReplicaConfig = CFG, max_rounds: int = 50) -> int:
    """Run the checker and apply its operators until it has nothing to do; the operator count."""
    done = 0
    for _ in range(max_rounds):
        ops = check_replicas(sim.snapshot(), now=0.0, alloc_id=sim.alloc_id, config=config)
        if not ops:
            return done
        assert len({op.region_id for op in ops}) == len(ops)  # one per region
        for op in ops:
            sim.run(op)
            done += 1
    raise AssertionError("the replica checker did not settle")


def test_healthy_region_needs_nothing() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2, 3])
    assert check(sim, 1) is None


def test_missing_replica_is_added_on_the_emptiest_store() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2])
    sim.add_region(2, [4, 2, 1])  # stores 1, 2, 4 are busier than 3 and 5
    op = check(sim, 1)
    assert op is not None and op.kind == OperatorKind.ADD_PEER
    assert [type(s) for s in op.steps] == [AddLearner, PromoteLearner]
    assert op.steps[0].store_ids() == (3,) and op.desc == "replica-checker: missing replica"
    sim.run(op)
    assert sim.voter_stores(1) == {1, 2, 3}


def test_a_leftover_learner_is_promoted_instead() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2], learners=[4])
    op = check(sim, 1)
    assert op is not None and [type(s) for s in op.steps] == [PromoteLearner]
    sim.run(op)
    assert sim.voter_stores(1) == {1, 2, 4}


def test_extra_voter_and_extra_learner_are_removed() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2, 3, 4], leader=1)
    sim.add_region(2, [4, 5])  # store 4 holds most: its replica of region 1 goes
    op = check(sim, 1)
    assert op is not None and op.kind == OperatorKind.REMOVE_PEER
    sim.run(op)
    assert sim.voter_stores(1) == {1, 2, 3}
    sim.regions[1] = add_learner(sim.regions[1], Peer(99, 5))
    op = check(sim, 1)
    assert op is not None and [type(s) for s in op.steps] == [RemovePeer]
    assert op.desc == "replica-checker: extra learner"


def test_the_leader_is_removed_last_and_hands_over_first() -> None:
    sim = cluster(4)
    sim.add_region(1, [1, 2, 3, 4], leader=4)
    sim.add_region(2, [4])
    sim.add_region(3, [4])
    sim.stores[1] = StoreView(1, StoreState.DISCONNECTED)  # not up: removed first
    op = check(sim, 1)
    assert op is not None and op.steps[-1].store_ids() == (1,)
    sim.stores[1] = StoreView(1)
    op = check(sim, 1)
    assert op is not None and op.steps[-1].store_ids() != (4,)  # store 4 is busiest but leads


def test_down_store_replicas_are_replaced() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2, 3], leader=1)
    sim.stores[3] = StoreView(3, StoreState.DISCONNECTED, silent_seconds=DOWN - 1)
    assert check(sim, 1) is None  # disconnected, not down yet
    sim.stores[3] = StoreView(3, StoreState.DISCONNECTED, silent_seconds=DOWN)
    op = check(sim, 1)
    assert op is not None and op.kind == OperatorKind.MOVE_PEER
    assert op.desc == "replica-checker: replace down peer"
    sim.run(op)
    assert 3 not in sim.voter_stores(1) and len(sim.voter_stores(1)) == 3


def test_down_peer_reported_by_the_leader() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2, 3], leader=1)
    peer2 = sim.regions[1].peer_on_store(2)
    assert peer2 is not None
    sim.down_peers[1] = {peer2.id: DOWN - 1}
    assert check(sim, 1) is None
    sim.down_peers[1] = {peer2.id: DOWN}
    assert is_peer_down(sim.snapshot(), sim.view(1), peer2, DOWN)
    op = check(sim, 1)
    assert op is not None and op.desc == "replica-checker: replace down peer"


def test_down_peer_of_an_over_replicated_region_is_just_removed() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2, 3, 4], leader=1)
    sim.stores[4] = StoreView(4, StoreState.DOWN)
    op = check(sim, 1)
    assert op is not None and op.kind == OperatorKind.REMOVE_PEER
    assert op.desc == "replica-checker: remove down peer"


def test_the_leaders_store_is_never_down() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2, 3], leader=1)
    sim.stores[1] = StoreView(1, silent_seconds=DOWN * 2)  # a stale store view; it still leads
    assert check(sim, 1) is None


def test_no_target_no_operator() -> None:
    sim = cluster(3)
    sim.add_region(1, [1, 2, 3])
    sim.stores[3] = StoreView(3, StoreState.DOWN)
    assert check(sim, 1) is None  # nowhere to put a replacement: nothing is removed either


def test_draining_a_store_moves_everything_off_it() -> None:
    sim = cluster(5)
    for rid in range(1, 9):
        stores = [1 + (rid + i) % 5 for i in range(3)]
        sim.add_region(rid, stores, leader=stores[rid % 3])
    sim.stores[2] = StoreView(2, StoreState.OFFLINE)
    fix_all(sim, ReplicaConfig(max_store_down_seconds=DOWN, store_limit=2))
    for rid, r in sim.regions.items():
        assert 2 not in {p.store_id for p in r.peers}, rid
        assert len(sim.voter_stores(rid)) == 3 and sim.leaders[rid] != 2


def test_joint_state_is_left() -> None:
    sim = cluster()
    r = sim.add_region(1, [1, 2, 3], leader=1)
    demoted = r.peer_on_store(3)
    assert demoted is not None
    sim.regions[1] = enter_joint(add_learner(r, Peer(50, 5)), [Peer(50, 5)], [demoted])
    op = check(sim, 1)
    assert op is not None and op.kind == OperatorKind.LEAVE_JOINT
    fix_all(sim)
    assert sim.voter_stores(1) == {1, 2, 5} and not sim.regions[1].learner_ids()


def test_no_leader_no_operator() -> None:
    sim = cluster()
    sim.add_region(1, [1, 2])
    sim.leaders[1] = 9  # a leader the descriptor does not know
    assert check(sim, 1) is None


def test_limits_and_busy_regions() -> None:
    sim = cluster(4)
    for rid in range(1, 7):
        sim.add_region(rid, [1, 2])
    cfg = ReplicaConfig(store_limit=2)
    ops = check_replicas(sim.snapshot(), now=0.0, alloc_id=sim.alloc_id, config=cfg)
    assert len(ops) == 4  # two new replicas for each of stores 3 and 4
    load: dict[int, int] = {}
    for op in ops:
        for sid in op.store_ids():
            load[sid] = load.get(sid, 0) + 1
    assert load == {3: 2, 4: 2}
    running = [make_transfer_leader(sim.regions[5], 1, 2, now=0.0)]
    ops = check_replicas(
        sim.snapshot(),
        now=0.0,
        alloc_id=sim.alloc_id,
        running=running,
        config=ReplicaConfig(max_operators=3),
    )
    assert len(ops) == 3 and 5 not in {op.region_id for op in ops}


@st.composite
def damaged_clusters(draw: st.DrawFn) -> SimCluster:
    # At least 4 stores stay up: 3 for the voters, and one more in case a voter on an
    # up store is reported down (a replacement cannot go to the store that holds it).
    n_stores = draw(st.integers(4, 8))
    sim = cluster(n_stores)
    bad = draw(st.lists(st.integers(1, n_stores), max_size=n_stores - 4, unique=True))
    for sid in bad:
        state = draw(st.sampled_from([StoreState.DOWN, StoreState.OFFLINE, StoreState.TOMBSTONE]))
        sim.stores[sid] = StoreView(sid, state)
    live = [
        sid
        for sid in range(1, n_stores + 1)
        if sid not in bad or sim.stores[sid].state == StoreState.OFFLINE
    ]
    for rid in range(1, draw(st.integers(1, 15)) + 1):
        stores = draw(st.permutations(range(1, n_stores + 1)))
        n_voters = draw(st.integers(1, 5))
        voters, rest = list(stores[:n_voters]), list(stores[n_voters:])
        learners = rest[: draw(st.integers(0, len(rest)))]
        leader_choices = [s for s in voters if s in live]
        if not leader_choices:
            continue  # every replica lost: beyond repair, and beyond this checker
        sim.add_region(rid, voters, leader=draw(st.sampled_from(leader_choices)), learners=learners)
        if draw(st.booleans()):  # a peer the leader has not heard from for long
            peer = draw(st.sampled_from(sim.regions[rid].peers))
            if peer.store_id != sim.leaders[rid]:
                sim.down_peers[rid] = {peer.id: DOWN * 2}
    return sim


@given(damaged_clusters(), st.booleans())
@settings(derandomize=True, max_examples=100, deadline=None)
def test_the_checker_restores_the_replica_count(sim: SimCluster, joint: bool) -> None:
    config = ReplicaConfig(
        max_replicas=3, max_store_down_seconds=DOWN, store_limit=3, use_joint=joint
    )
    fix_all(sim, config)
    snap = sim.snapshot()
    for rid, r in sim.regions.items():
        rv = snap.regions[rid]
        assert not is_joint(r)
        assert [p.role for p in r.peers] == [PeerRole.Voter] * 3, (rid, r.peers)
        for p in r.peers:
            assert snap.stores[p.store_id].state == StoreState.UP
            assert rv.down_peers.get(p.id, 0.0) < DOWN
        assert sim.leaders[rid] in sim.voter_stores(rid)
