# Covers raft-rs (src/tracker/progress.rs): test_progress_is_paused, test_progress_resume,
# test_progress_become_probe, test_progress_become_replicate, test_progress_become_snapshot,
# test_progress_update, test_progress_maybe_decr.
# Also the ProgressTracker (src/tracker.rs) behaviours that raft-rs only exercises through
# Raft: apply_conf marks new peers recent_active (tracker half of test_add_node_check_quorum),
# quorum_recently_active, record/tally votes, maximal_committed_index (plain and group
# commit, tracker half of test_group_commit), has_quorum over joint configs.
"""Unit tests of Progress and ProgressTracker."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.errors import RaftFatal
from multiraft.raft.quorum import Index, JointConfig, VoteResult
from multiraft.raft.tracker import (
    Configuration,
    MapChangeType,
    Progress,
    ProgressState,
    ProgressTracker,
)
from multiraft.raft.types import NO_LIMIT, ConfState

Probe, Replicate, Snapshot = ProgressState.Probe, ProgressState.Replicate, ProgressState.Snapshot


def progress(
    state: ProgressState = Probe,
    matched: int = 0,
    next_idx: int = 0,
    pending_snapshot: int = 0,
    ins_size: int = 256,
) -> Progress:
    pr = Progress(next_idx, ins_size)
    pr.state = state
    pr.matched = matched
    pr.pending_snapshot = pending_snapshot
    return pr


# -- Progress: construction and pause ---------------------------------------------


def test_new_progress_defaults() -> None:
    pr = Progress(7, 16)
    assert (pr.matched, pr.next_idx, pr.state) == (0, 7, Probe)
    assert not pr.paused and not pr.recent_active
    assert (pr.pending_snapshot, pr.pending_request_snapshot) == (0, 0)
    assert (pr.commit_group_id, pr.committed_index) == (0, 0)
    assert pr.ins.cap == 16


@pytest.mark.parametrize(
    ("state", "paused", "want"),
    [
        (Probe, False, False),
        (Probe, True, True),
        (Replicate, False, False),
        (Replicate, True, False),  # Replicate ignores the flag, only the window counts
        (Snapshot, False, True),
        (Snapshot, True, True),
    ],
)
def test_is_paused_by_state(state: ProgressState, paused: bool, want: bool) -> None:
    pr = progress(state)
    pr.paused = paused
    assert pr.is_paused() is want


def test_replicate_is_paused_when_window_full() -> None:
    pr = progress(Replicate, ins_size=2)
    pr.ins.add(1)
    assert not pr.is_paused()
    pr.ins.add(2)
    assert pr.is_paused()


def test_pause_and_resume() -> None:
    pr = Progress(1, 8)
    pr.pause()
    assert pr.is_paused()
    pr.resume()
    assert not pr.is_paused()


def test_decrement_and_update_resume_a_paused_probe() -> None:
    pr = Progress(2, 256)
    pr.paused = True
    pr.maybe_decr_to(1, 1, 0)
    assert not pr.paused
    pr.paused = True
    pr.maybe_update(2)
    assert not pr.paused


# -- Progress: state transitions --------------------------------------------------


@pytest.mark.parametrize(
    ("pr", "want_next"),
    [
        (progress(Replicate, matched=1, next_idx=5), 2),
        # The snapshot at 10 arrived: probe after it.
        (progress(Snapshot, matched=1, next_idx=5, pending_snapshot=10), 11),
        # A failed snapshot (pending cleared): probe after matched.
        (progress(Snapshot, matched=1, next_idx=5, pending_snapshot=0), 2),
    ],
    ids=["from-replicate", "snapshot-done", "snapshot-failed"],
)
def test_become_probe(pr: Progress, want_next: int) -> None:
    pr.become_probe()
    assert (pr.state, pr.matched, pr.next_idx) == (Probe, 1, want_next)
    assert pr.pending_snapshot == 0


def test_become_probe_after_snapshot_never_goes_below_matched() -> None:
    pr = progress(Snapshot, matched=20, pending_snapshot=10)
    pr.become_probe()
    assert pr.next_idx == 21


def test_become_replicate() -> None:
    pr = progress(Probe, matched=1, next_idx=5)
    pr.paused = True
    pr.become_replicate()
    assert (pr.state, pr.matched, pr.next_idx, pr.paused) == (Replicate, 1, 2, False)


def test_become_snapshot() -> None:
    pr = progress(Probe, matched=1, next_idx=5)
    pr.become_snapshot(10)
    assert (pr.state, pr.matched, pr.pending_snapshot) == (Snapshot, 1, 10)
    assert pr.is_paused()


def test_state_changes_reset_the_inflight_window() -> None:
    pr = progress(Replicate, matched=3, next_idx=4, ins_size=4)
    pr.update_state(5)
    pr.update_state(6)
    assert pr.ins.count() == 2
    pr.become_probe()
    assert pr.ins.count() == 0


def test_snapshot_failure_and_caught_up() -> None:
    pr = progress(Probe, matched=3)
    pr.become_snapshot(10)
    assert not pr.is_snapshot_caught_up()
    pr.maybe_update(10)
    assert pr.is_snapshot_caught_up()
    pr.snapshot_failure()
    assert pr.pending_snapshot == 0
    pr.become_probe()
    assert pr.next_idx == 11
    assert not pr.is_snapshot_caught_up()  # only meaningful in Snapshot state


def test_reset_forgets_the_peer() -> None:
    pr = progress(Snapshot, matched=9, next_idx=10, pending_snapshot=20)
    pr.paused = True
    pr.recent_active = True
    pr.pending_request_snapshot = 4
    pr.reset(31)
    assert pr == Progress(31, 256)


# -- Progress: updates ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "want_matched", "want_next", "want_ok"),
    [
        (2, 3, 5, False),  # stale
        (3, 3, 5, False),  # same as matched
        (4, 4, 5, True),  # raises matched, next already past it
        (5, 5, 6, True),  # raises both
    ],
)
def test_maybe_update(n: int, want_matched: int, want_next: int, want_ok: bool) -> None:
    pr = progress(matched=3, next_idx=5)
    assert pr.maybe_update(n) is want_ok
    assert (pr.matched, pr.next_idx) == (want_matched, want_next)


def test_stale_update_still_raises_next() -> None:
    pr = progress(matched=8, next_idx=3)
    assert not pr.maybe_update(6)
    assert pr.next_idx == 7


def test_update_committed_is_monotonic() -> None:
    pr = Progress(1, 8)
    pr.update_committed(5)
    pr.update_committed(3)
    assert pr.committed_index == 5


@pytest.mark.parametrize(
    ("state", "matched", "next_idx", "rejected", "hint", "want_ok", "want_next"),
    [
        # Replicate: a rejection at or below matched is stale.
        (Replicate, 5, 10, 5, 5, False, 10),
        (Replicate, 5, 10, 4, 4, False, 10),
        # Replicate: a real rejection falls back to matched + 1.
        (Replicate, 5, 10, 9, 9, True, 6),
        # Probe: only the answer to the outstanding probe (next - 1) counts.
        (Probe, 0, 0, 0, 0, False, 0),
        (Probe, 0, 10, 5, 5, False, 10),
        (Probe, 0, 10, 9, 9, True, 9),
        (Probe, 0, 2, 1, 1, True, 1),
        (Probe, 0, 1, 0, 0, True, 1),  # never below matched + 1
        (Probe, 0, 10, 9, 2, True, 3),  # jump to the follower's hint + 1
        (Probe, 0, 10, 9, 0, True, 1),
        (Probe, 4, 10, 9, 1, True, 5),  # hint below matched: clamp to matched + 1
    ],
)
def test_maybe_decr_to(
    state: ProgressState,
    matched: int,
    next_idx: int,
    rejected: int,
    hint: int,
    want_ok: bool,
    want_next: int,
) -> None:
    pr = progress(state, matched=matched, next_idx=next_idx, ins_size=0)
    assert pr.maybe_decr_to(rejected, hint, 0) is want_ok
    assert (pr.matched, pr.next_idx) == (matched, want_next)


def test_maybe_decr_to_with_snapshot_request_in_replicate() -> None:
    pr = progress(Replicate, matched=5, next_idx=10)
    # At matched with a snapshot request: not stale, records the request, keeps next.
    assert pr.maybe_decr_to(5, 5, 7)
    assert (pr.pending_request_snapshot, pr.next_idx) == (7, 10)
    # Below matched is stale even with a request.
    assert not pr.maybe_decr_to(4, 4, 8)
    assert pr.pending_request_snapshot == 7


def test_maybe_decr_to_with_snapshot_request_in_probe() -> None:
    pr = progress(Probe, matched=2, next_idx=10)
    pr.paused = True
    # Not the outstanding probe, but a snapshot request is never stale.
    assert pr.maybe_decr_to(3, 3, 6)
    assert (pr.pending_request_snapshot, pr.next_idx, pr.paused) == (6, 10, False)
    # A second request does not overwrite the pending one.
    assert pr.maybe_decr_to(3, 3, 8)
    assert pr.pending_request_snapshot == 6


def test_update_state_per_state() -> None:
    rep = progress(Replicate, matched=3, next_idx=4, ins_size=2)
    rep.update_state(8)
    assert (rep.next_idx, rep.ins.inflights()) == (9, [8])
    rep.optimistic_update(11)
    assert rep.next_idx == 12

    probe = progress(Probe, next_idx=4)
    probe.update_state(8)
    assert probe.paused
    assert probe.next_idx == 4

    snap = progress(Snapshot)
    with pytest.raises(RaftFatal, match="unhandled state"):
        snap.update_state(8)


def test_update_state_into_full_window_is_fatal() -> None:
    pr = progress(Replicate, ins_size=1)
    pr.update_state(1)
    with pytest.raises(RaftFatal):
        pr.update_state(2)


def test_progress_state_display() -> None:
    assert [str(s) for s in ProgressState] == ["StateProbe", "StateReplicate", "StateSnapshot"]


# -- ProgressTracker ----------------------------------------------------------------


def tracker_with(
    voters: Iterable[int], outgoing: Iterable[int] = (), learners: Iterable[int] = ()
) -> ProgressTracker:
    tr = ProgressTracker(8)
    conf = Configuration(JointConfig(voters, outgoing), set(learners))
    members = conf.voters.ids() | conf.learners
    tr.apply_conf(conf, [(id, MapChangeType.Add) for id in sorted(members)], 1)
    return tr


def set_matched(tr: ProgressTracker, matched: dict[int, int]) -> None:
    for id, m in matched.items():
        pr = tr.get_mut(id)
        assert pr is not None
        pr.matched = m


def test_apply_conf_adds_active_progress_and_removes() -> None:
    tr = ProgressTracker(16)
    tr.apply_conf(Configuration.new([1, 2]), [(1, MapChangeType.Add), (2, MapChangeType.Add)], 5)
    pr = tr.get(1)
    assert pr is not None
    assert (pr.next_idx, pr.recent_active, pr.ins.cap) == (5, True, 16)
    tr.apply_conf(
        Configuration.new([1]),
        [(2, MapChangeType.Remove), (3, MapChangeType.Add), (3, MapChangeType.Remove)],
        9,
    )
    assert sorted(tr.progress) == [1]
    assert tr.get(1) is pr  # untouched peers keep their Progress
    assert tr.conf() == Configuration.new([1])


def test_get_mut_returns_the_live_object() -> None:
    tr = tracker_with({1, 2})
    pr = tr.get_mut(2)
    assert pr is not None
    pr.matched = 42
    assert tr.get(2) is pr
    assert dict(tr.iter())[2].matched == 42
    assert tr.get(3) is None


@pytest.mark.parametrize(
    ("voters", "outgoing", "matched", "want"),
    [
        ({1, 2, 3}, set(), {1: 5, 2: 3, 3: 4}, 4),
        ({1, 2, 3, 4, 5}, set(), {1: 2, 2: 2, 3: 2, 4: 4, 5: 5}, 2),
        ({1, 2, 3, 4}, set(), {1: 9, 2: 8, 3: 7, 4: 1}, 7),
        ({1}, set(), {1: 12}, 12),
        ({1, 2, 3}, {3, 4, 5}, {1: 9, 2: 9, 3: 9, 4: 2, 5: 1}, 2),
        ({1, 2}, {1, 2}, {1: 6, 2: 4}, 4),
    ],
)
def test_maximal_committed_index(
    voters: set[int], outgoing: set[int], matched: dict[int, int], want: int
) -> None:
    tr = tracker_with(voters, outgoing)
    set_matched(tr, matched)
    assert tr.maximal_committed_index() == (want, False)


def test_maximal_committed_index_ignores_learners() -> None:
    tr = tracker_with({1, 2, 3}, learners={4, 5})
    set_matched(tr, {1: 1, 2: 1, 3: 1, 4: 50, 5: 50})
    assert tr.maximal_committed_index() == (1, False)


def test_maximal_committed_index_of_empty_config_is_unbounded() -> None:
    assert ProgressTracker(8).maximal_committed_index() == (NO_LIMIT, True)


def test_maximal_committed_index_with_group_commit() -> None:
    tr = tracker_with({1, 2, 3})
    set_matched(tr, {1: 10, 2: 20, 3: 30})
    tr.enable_group_commit(True)
    assert tr.group_commit()
    # All peers in one group: plain quorum.
    tr.assign_commit_groups([(1, 1), (2, 1), (3, 1), (99, 2)])
    assert tr.maximal_committed_index() == (20, False)
    # Only index 10 reached a second group.
    tr.assign_commit_groups([(1, 2)])
    assert tr.maximal_committed_index() == (10, True)
    # A peer without a group: only what every voter holds.
    tr.clear_commit_group()
    tr.assign_commit_groups([(2, 1), (3, 1)])
    assert tr.maximal_committed_index() == (10, False)
    tr.enable_group_commit(False)
    assert tr.maximal_committed_index() == (20, False)


progress_maps = st.dictionaries(st.integers(1, 9), st.integers(0, 30), max_size=9)


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    incoming=st.sets(st.integers(1, 9), max_size=7),
    outgoing=st.sets(st.integers(1, 9), max_size=7),
    matched=progress_maps,
)
def test_committed_fast_path_matches_quorum_code(
    incoming: set[int], outgoing: set[int], matched: dict[int, int]
) -> None:
    tr = ProgressTracker(8)
    conf = Configuration(JointConfig(incoming, outgoing))
    tr.apply_conf(conf, [(id, MapChangeType.Add) for id in matched], 1)
    set_matched(tr, matched)

    class Acked:
        def acked_index(self, voter_id: int) -> Index | None:
            pr = tr.get(voter_id)
            return None if pr is None else Index(pr.matched)

    assert tr.maximal_committed_index() == conf.voters.committed_index(False, Acked())


def test_record_vote_keeps_the_first_vote() -> None:
    tr = tracker_with({1, 2, 3})
    tr.record_vote(1, True)
    tr.record_vote(1, False)
    assert tr.votes == {1: True}
    tr.reset_votes()
    assert tr.votes == {}


@pytest.mark.parametrize(
    ("votes", "want"),
    [
        ({}, (0, 0, VoteResult.Pending)),
        ({1: True}, (1, 0, VoteResult.Pending)),
        ({1: True, 2: True}, (2, 0, VoteResult.Won)),
        ({1: True, 2: False, 3: False}, (1, 2, VoteResult.Lost)),
        # Votes from non-voters (a learner, an unknown peer) are not counted.
        ({1: True, 4: True, 9: True}, (1, 0, VoteResult.Pending)),
    ],
)
def test_tally_votes(votes: dict[int, bool], want: tuple[int, int, VoteResult]) -> None:
    tr = tracker_with({1, 2, 3}, learners={4})
    for id, v in votes.items():
        tr.record_vote(id, v)
    assert tr.tally_votes() == want


def test_vote_result_in_joint_config_needs_both_halves() -> None:
    tr = tracker_with({1, 2, 3}, outgoing={3, 4, 5})
    assert tr.vote_result({1: True, 2: True}) == VoteResult.Pending
    assert tr.vote_result({1: True, 2: True, 3: True, 4: True}) == VoteResult.Won
    assert tr.vote_result({1: True, 2: True, 4: False, 5: False}) == VoteResult.Lost


@pytest.mark.parametrize(
    ("outgoing", "ids", "want"),
    [
        (set(), {1, 2}, True),
        (set(), {1, 4}, False),  # 4 is a learner
        (set(), set(), False),
        ({3, 4, 5}, {1, 2}, False),
        ({3, 4, 5}, {1, 3, 5}, True),
    ],
)
def test_has_quorum(outgoing: set[int], ids: set[int], want: bool) -> None:
    learners = {4} if not outgoing else set()
    tr = tracker_with({1, 2, 3}, outgoing, learners)
    assert tr.has_quorum(ids) is want


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    incoming=st.sets(st.integers(1, 9), max_size=7),
    outgoing=st.sets(st.integers(1, 9), max_size=7),
    ids=st.sets(st.integers(1, 12), max_size=9),
)
def test_has_quorum_agrees_with_vote_result(
    incoming: set[int], outgoing: set[int], ids: set[int]
) -> None:
    tr = ProgressTracker(8)
    conf = Configuration(JointConfig(incoming, outgoing))
    tr.apply_conf(conf, [(id, MapChangeType.Add) for id in conf.voters.ids()], 1)
    want = conf.voters.vote_result(lambda id: True if id in ids else None) == VoteResult.Won
    assert tr.has_quorum(ids) is want


def test_quorum_recently_active_clears_marks() -> None:
    tr = tracker_with({1, 2, 3}, learners={4})
    # Freshly added peers count as active once.
    assert tr.quorum_recently_active(1)
    assert [tr.progress[i].recent_active for i in (1, 2, 3, 4)] == [True, False, False, False]
    # Only the leader itself: no quorum.
    assert not tr.quorum_recently_active(1)
    # An active learner does not make a quorum; an active voter does.
    tr.progress[4].recent_active = True
    assert not tr.quorum_recently_active(1)
    tr.progress[3].recent_active = True
    assert tr.quorum_recently_active(1)


def test_is_singleton() -> None:
    assert tracker_with({1}).is_singleton()
    assert tracker_with({1}, learners={2}).is_singleton()
    assert not tracker_with({1, 2}).is_singleton()
    assert not tracker_with({1}, outgoing={1}).is_singleton()
    assert not ProgressTracker(8).is_singleton()


def test_clear_forgets_members_and_votes() -> None:
    tr = tracker_with({1, 2}, learners={3})
    tr.record_vote(1, True)
    tr.clear()
    assert (tr.progress, tr.votes) == ({}, {})
    assert tr.conf() == Configuration()
    assert tr.max_inflight() == 8


def test_configuration_display_and_conf_state() -> None:
    conf = Configuration(JointConfig({3, 1, 2}, {4, 1, 2}), {5}, {4}, True)
    assert str(conf) == "voters=(1 2 3)&&(1 2 4) learners=(5) learners_next=(4) autoleave"
    assert str(Configuration.new([2, 1])) == "voters=(1 2)"
    assert conf.to_conf_state() == ConfState(
        voters=[1, 2, 3],
        learners=[5],
        voters_outgoing=[1, 2, 4],
        learners_next=[4],
        auto_leave=True,
    )
    copy = conf.copy()
    copy.voters.incoming.add(9)
    copy.learners_next.clear()
    assert conf.voters.incoming == {1, 2, 3}
    assert conf.learners_next == {4}


def test_tracker_inflight_byte_limit_reaches_new_progress() -> None:
    tr = ProgressTracker(4, max_inflight_bytes=100)
    tr.apply_conf(Configuration.new([1, 2]), [(1, MapChangeType.Add), (2, MapChangeType.Add)], 1)
    pr = tr.progress[2]
    pr.become_replicate()
    pr.update_state(5, size=120)
    assert pr.is_paused()
