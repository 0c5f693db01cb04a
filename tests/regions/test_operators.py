"""Operators: builders, step epochs, progress by observation, stale, timeout, cancel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regions.conf_change import add_learner, enter_joint, is_joint
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.scheduling.cluster import StoreStats
from regions.scheduling.operators import (
    AddLearner,
    DemoteVoter,
    JointEnter,
    JointLeave,
    Operator,
    OperatorError,
    OperatorKind,
    OperatorStatus,
    OperatorTimeouts,
    PromoteLearner,
    RemovePeer,
    SplitRegion,
    TransferLeader,
    make_add_peer,
    make_leave_joint,
    make_move_peer,
    make_promote_learner,
    make_remove_peer,
    make_split_region,
    make_transfer_leader,
)
from regions.split import apply_batch_split
from tests.regions.cluster_sim import SimCluster

T = OperatorTimeouts(fast_step=10.0, slow_step=100.0)


def three() -> SimCluster:
    sim = SimCluster()
    for sid in range(1, 6):
        sim.add_store(sid)
    sim.add_region(1, [1, 2, 3], leader=1, size=500, start=b"a", end=b"z")
    return sim


def kinds(op: Operator) -> list[type]:
    return [type(s) for s in op.steps]


def test_move_a_follower_with_joint_consensus() -> None:
    sim = three()
    r = sim.regions[1]
    op = make_move_peer(r, 1, 2, 4, 99, now=5.0, desc="test", region_size=500, timeouts=T)
    assert op.kind == OperatorKind.MOVE_PEER and op.region_epoch == r.epoch
    assert kinds(op) == [AddLearner, JointEnter, JointLeave, RemovePeer]
    # Each step carries the epoch it is made for: the one the previous step leads to.
    assert [s.epoch.conf_ver for s in op.steps] == [1, 2, 4, 6]
    assert all(s.epoch.version == 1 for s in op.steps)
    assert op.timeout == 100.0 + 3 * 10.0 and op.deadline == 135.0
    assert op.store_ids() == {2, 4}
    assert op.influence() == {
        4: StoreStats(region_count=1, region_size=500),
        2: StoreStats(region_count=-1, region_size=-500),
    }
    sim.run(op)
    assert sim.voter_stores(1) == {1, 3, 4}
    assert sim.regions[1].epoch == RegionEpoch(conf_ver=7, version=1)
    assert op.influence() == {} and op.progress == (4, 4)
    assert "move-peer region 1 (test) [success, 4/4]" in op.describe()


def test_a_move_waits_for_its_learner_to_catch_up() -> None:
    """PD's AddLearner is finished only once the learner is no longer pending: the joint
    step is not sent while the leader reports the new peer as catching up."""
    sim = three()
    r = sim.regions[1]
    op = make_move_peer(r, 1, 2, 4, 99, now=0.0, timeouts=T)
    learner = op.steps[0]
    assert isinstance(learner, AddLearner)
    added = add_learner(r, learner.peer)
    leader = r.peer_on_store(1)
    assert op.check(added, leader, 1.0, pending=[learner.peer.id]) is None
    assert op.step_index == 0 and not op.is_finished
    step = op.check(added, leader, 2.0, pending=[])
    assert isinstance(step, JointEnter) and op.step_index == 1


def test_move_the_leader_transfers_first() -> None:
    sim = three()
    op = make_move_peer(sim.regions[1], 1, 1, 4, 99, now=0.0, timeouts=T)
    assert kinds(op) == [AddLearner, TransferLeader, JointEnter, JointLeave, RemovePeer]
    step = op.steps[1]
    assert isinstance(step, TransferLeader) and (step.from_store, step.to_store) == (1, 2)
    sim.run(op)
    assert sim.voter_stores(1) == {2, 3, 4} and sim.leaders[1] == 2


def test_move_the_leader_to_a_chosen_voter_or_the_new_peer() -> None:
    sim = three()
    op = make_move_peer(sim.regions[1], 1, 1, 4, 99, now=0.0, transfer_to=3)
    assert isinstance(op.steps[1], TransferLeader) and op.steps[1].to_store == 3
    # Handing the leadership to the new peer needs it promoted first: the non-joint path.
    op = make_move_peer(sim.regions[1], 1, 1, 4, 99, now=0.0, transfer_to=4)
    assert kinds(op) == [AddLearner, PromoteLearner, TransferLeader, DemoteVoter, RemovePeer]
    sim.run(op)
    assert sim.leaders[1] == 4 and sim.voter_stores(1) == {2, 3, 4}


def test_move_without_joint_consensus() -> None:
    sim = three()
    op = make_move_peer(sim.regions[1], 1, 2, 4, 99, now=0.0, use_joint=False)
    assert kinds(op) == [AddLearner, PromoteLearner, DemoteVoter, RemovePeer]
    sim.run(op)
    assert sim.voter_stores(1) == {1, 3, 4}


def test_move_a_single_replica_region() -> None:
    sim = SimCluster()
    sim.add_store(1)
    sim.add_store(2)
    sim.add_region(1, [1])
    op = make_move_peer(sim.regions[1], 1, 1, 2, 99, now=0.0)
    assert kinds(op) == [AddLearner, PromoteLearner, TransferLeader, DemoteVoter, RemovePeer]
    sim.run(op)
    assert sim.voter_stores(1) == {2} and sim.leaders[1] == 2


def test_move_a_learner() -> None:
    sim = three()
    sim.regions[1] = add_learner(sim.regions[1], Peer(50, 5, PeerRole.Learner))
    op = make_move_peer(sim.regions[1], 1, 5, 4, 99, now=0.0)
    assert kinds(op) == [AddLearner, RemovePeer]
    sim.run(op)
    assert {p.store_id: p.role for p in sim.regions[1].peers}[4] == PeerRole.Learner


def test_other_builders() -> None:
    sim = three()
    op = make_transfer_leader(sim.regions[1], 1, 3, now=0.0, timeouts=T)
    assert kinds(op) == [TransferLeader] and op.timeout == 10.0
    sim.run(op)
    assert sim.leaders[1] == 3
    op = make_add_peer(sim.regions[1], 4, 77, now=0.0)
    assert kinds(op) == [AddLearner, PromoteLearner] and op.kind == OperatorKind.ADD_PEER
    sim.run(op)
    assert sim.voter_stores(1) == {1, 2, 3, 4}
    op = make_remove_peer(sim.regions[1], 3, 3, now=0.0)  # the leader: transfer first
    assert kinds(op) == [TransferLeader, DemoteVoter, RemovePeer]
    sim.run(op)
    assert sim.voter_stores(1) == {1, 2, 4} and sim.leaders[1] == 1
    sim.regions[1] = add_learner(sim.regions[1], Peer(60, 5))
    op = make_remove_peer(sim.regions[1], 1, 5, now=0.0)
    assert kinds(op) == [RemovePeer]
    sim.run(op)
    sim.regions[1] = add_learner(sim.regions[1], Peer(61, 5))
    op = make_promote_learner(sim.regions[1], 5, now=0.0)
    assert kinds(op) == [PromoteLearner]
    sim.run(op)
    assert sim.voter_stores(1) == {1, 2, 4, 5}


def test_leave_joint_operator() -> None:
    sim = three()
    demoted = sim.regions[1].peer_on_store(2)
    assert demoted is not None
    r = enter_joint(add_learner(sim.regions[1], Peer(40, 4)), [Peer(40, 4)], [demoted])
    sim.regions[1] = r
    op = make_leave_joint(r, now=0.0)
    assert kinds(op) == [JointLeave] and op.kind == OperatorKind.LEAVE_JOINT
    sim.run(op)
    assert sim.voter_stores(1) == {1, 3, 4}
    with pytest.raises(OperatorError, match="not in a joint"):
        make_leave_joint(sim.regions[1], now=0.0)


def test_leave_joint_with_a_demoting_leader_transfers_the_leadership_first() -> None:
    """The leader died inside a move and the demoting voter won the election: a store
    refuses to leave joint with a demoting leader, so the operator hands it over first."""
    sim = three()
    demoted = sim.regions[1].peer_on_store(2)
    assert demoted is not None
    r = enter_joint(add_learner(sim.regions[1], Peer(40, 4)), [Peer(40, 4)], [demoted])
    sim.regions[1] = r
    op = make_leave_joint(r, 2, now=0.0)
    assert kinds(op) == [TransferLeader, JointLeave]
    transfer = op.steps[0]
    assert isinstance(transfer, TransferLeader) and transfer.from_store == 2
    assert r.peer_on_store(transfer.to_store).role == PeerRole.Voter  # type: ignore[union-attr]
    # A leader that stays a voter needs no transfer.
    assert kinds(make_leave_joint(r, 1, now=0.0)) == [JointLeave]


def test_split_operator() -> None:
    sim = three()
    op = make_split_region(sim.regions[1], [b"m"], now=0.0)
    assert kinds(op) == [SplitRegion] and op.kind == OperatorKind.SPLIT_REGION
    assert "split region at b'm'" in op.describe()
    sim.run(op)
    assert sim.regions[1].start_key == b"m" and sim.regions[1].epoch.version == 2
    assert make_split_region(sim.regions[1], now=0.0).steps[0].describe() == "split region in half"
    with pytest.raises(OperatorError, match="not after the start key"):
        make_split_region(sim.regions[1], [b"m"], now=0.0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda r: make_move_peer(r, 1, 2, 3, 9, now=0), "already has a peer on store 3"),
        (lambda r: make_move_peer(r, 1, 5, 4, 9, now=0), "no peer on store 5"),
        (lambda r: make_move_peer(r, None, 2, 4, 9, now=0), "no known leader"),
        (lambda r: make_transfer_leader(r, 1, 1, now=0), "already leads"),
        (lambda r: make_transfer_leader(r, None, 2, now=0), "no known leader"),
        (lambda r: make_remove_peer(r, None, 2, now=0), "no known leader"),
        (lambda r: make_remove_peer(r, 1, 1, now=0, transfer_to=9), "no peer on store 9"),
        (lambda r: make_add_peer(r, 2, 9, now=0), "already has a peer"),
        (lambda r: make_promote_learner(r, 2, now=0), "already a Voter"),
    ],
)
def test_builders_refuse(build: Callable[[Region], Operator], message: str) -> None:
    r = three().regions[1]
    with pytest.raises(OperatorError, match=message):
        build(r)


def test_refuse_to_remove_the_only_voter_or_transfer_to_a_learner() -> None:
    r = Region(1, peers=[Peer(1, 1), Peer(2, 2, PeerRole.Learner)])
    with pytest.raises(OperatorError, match="only voter"):
        make_remove_peer(r, 1, 1, now=0)
    with pytest.raises(OperatorError, match="Learner on store 2"):
        make_transfer_leader(r, 1, 2, now=0)


def test_check_ignores_old_reports_and_is_idempotent() -> None:
    sim = three()
    old = sim.regions[1]
    op = make_move_peer(old, 1, 2, 4, 99, now=0.0)
    sim.apply_step(1, op.steps[0])
    sim.apply_step(1, op.steps[1])
    new = sim.regions[1]
    assert op.check(new, sim.leader_peer(1)) is op.steps[2]
    # A late report from before the operator started changes nothing.
    assert op.check(old, old.peers[0]) is op.steps[2]
    assert op.check(new, sim.leader_peer(1)) is op.steps[2]
    assert op.status == OperatorStatus.RUNNING


def test_check_catches_up_over_skipped_reports() -> None:
    sim = three()
    op = make_move_peer(sim.regions[1], 1, 2, 4, 99, now=0.0)
    for step in op.steps:
        sim.apply_step(1, step)
    # One report shows everything done: the demoted peer is gone, yet the operator succeeds.
    assert op.check(sim.regions[1], sim.leader_peer(1)) is None
    assert op.status == OperatorStatus.SUCCESS


def test_a_foreign_change_makes_it_stale() -> None:
    sim = three()
    op = make_move_peer(sim.regions[1], 1, 2, 4, 99, now=0.0)
    sim.apply_step(1, op.steps[0])
    assert op.check(sim.regions[1], sim.leader_peer(1)) is op.steps[1]
    # Someone else adds a learner on store 5: conf_ver moved, and not by this operator.
    sim.regions[1] = add_learner(sim.regions[1], Peer(55, 5))
    assert op.check(sim.regions[1], sim.leader_peer(1), now=3.0) is None
    assert op.status == OperatorStatus.STALE and op.finished_at == 3.0
    assert op.check(sim.regions[1], sim.leader_peer(1)) is None  # final


def test_a_split_makes_a_move_stale() -> None:
    sim = three()
    op = make_transfer_leader(sim.regions[1], 1, 2, now=0.0)
    *_, derived = apply_batch_split(sim.regions[1], [b"m"], [2], [[21, 22, 23]])
    assert op.check(derived, derived.peers[0]) is None
    assert op.status == OperatorStatus.STALE


def test_timeout_and_cancel() -> None:
    sim = three()
    op = make_move_peer(sim.regions[1], 1, 2, 4, 99, now=100.0, timeouts=T)
    leader = sim.leader_peer(1)
    assert op.check(sim.regions[1], leader, now=100.0 + 129.9) is op.steps[0]
    assert not op.check_timeout(100.0 + 129.9)
    assert op.check(sim.regions[1], leader, now=100.0 + 130.0) is None
    assert op.status == OperatorStatus.TIMEOUT and op.finished_at == 230.0
    assert not op.cancel()
    op = make_transfer_leader(sim.regions[1], 1, 2, now=0.0)
    assert op.cancel(now=1.0) and op.status == OperatorStatus.CANCELED
    assert op.current_step is None and op.influence() == {}
    assert op.check(sim.regions[1], leader) is None


def test_a_report_showing_success_beats_the_deadline() -> None:
    sim = three()
    op = make_transfer_leader(sim.regions[1], 1, 2, now=0.0, timeouts=T)
    sim.apply_step(1, op.steps[0])
    assert op.check(sim.regions[1], sim.leader_peer(1), now=1000.0) is None
    assert op.status == OperatorStatus.SUCCESS


def test_check_refuses_another_region() -> None:
    sim = three()
    op = make_transfer_leader(sim.regions[1], 1, 2, now=0.0)
    with pytest.raises(ValueError, match="got region 2"):
        op.check(Region(2), None)


@st.composite
def move_cases(draw: st.DrawFn) -> tuple[int, int, int, bool, int | None, int]:
    n = draw(st.integers(1, 4))  # replicas on stores 1..n
    leader = draw(st.integers(1, n))
    source = draw(st.integers(1, n))
    target = draw(st.integers(n + 1, 6))
    joint = draw(st.booleans())
    transfer = draw(st.one_of(st.none(), st.integers(1, n).filter(lambda s: s != source)))
    foreign_at = draw(st.integers(0, 6))
    return n, leader, source * 100 + target, joint, transfer, foreign_at


@given(move_cases())
@settings(derandomize=True, max_examples=200, deadline=None)
def test_moves_succeed_and_go_stale_on_foreign_changes(
    case: tuple[int, int, int, bool, int | None, int],
) -> None:
    n, leader, pair, joint, transfer, foreign_at = case
    source, target = divmod(pair, 100)

    def fresh() -> tuple[SimCluster, Operator]:
        sim = SimCluster()
        for sid in range(1, 8):
            sim.add_store(sid)
        sim.add_region(1, range(1, n + 1), leader=leader, start=b"a", end=b"z")
        op = make_move_peer(
            sim.regions[1],
            leader,
            source,
            target,
            99,
            now=0.0,
            use_joint=joint,
            transfer_to=transfer,
        )
        return sim, op

    sim, op = fresh()
    sim.run(op)  # every step is safe, and the operator sees each one finish
    assert sim.voter_stores(1) == (set(range(1, n + 1)) - {source}) | {target}
    assert all(p.role == PeerRole.Voter for p in sim.regions[1].peers)

    sim, op = fresh()
    k = foreign_at % len(op.steps)
    for step in op.steps[:k]:
        assert op.check(sim.regions[1], sim.leader_peer(1)) is step
        sim.apply_step(1, step)
    # Someone else changes the region: adds a learner on store 7 or, inside a joint
    # state where no other membership change applies, splits it.
    if is_joint(sim.regions[1]):
        new_ids = [[800 + i for i in range(len(sim.regions[1].peers))]]
        *_, sim.regions[1] = apply_batch_split(sim.regions[1], [b"m"], [2], new_ids)
    else:
        sim.regions[1] = add_learner(sim.regions[1], Peer(777, 7))
    assert op.check(sim.regions[1], sim.leader_peer(1)) is None
    assert op.status == OperatorStatus.STALE
