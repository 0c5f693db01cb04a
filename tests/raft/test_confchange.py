# Covers raft-rs (src/confchange/datadriven_test.rs, test_conf_change_data_driven) testdata:
# simple_safety, simple_idempotency, simple_promote_demote, joint_safety,
# joint_idempotency, joint_autoleave, joint_learners_next, zero;
# and src/confchange/restore.rs (restore round trip; etcd's TestRestore quick test).
"""Scenario tests of the Changer (simple / enter_joint / leave_joint) and of restore()."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.confchange import (
    Changer,
    MapChangeType,
    check_invariants,
    restore,
    to_conf_change_single,
)
from multiraft.raft.errors import ConfChangeError
from multiraft.raft.quorum import JointConfig
from multiraft.raft.tracker import Configuration, ProgressTracker
from multiraft.raft.types import ConfState, conf_state_eq, parse_conf_change


class Harness:
    """A tracker driven by one command at a time, like raft-rs's datadriven harness.

    Each command creates new Progresses with ``next_idx`` equal to the number of
    commands run before it (errors included), so ``next`` shows when a peer's
    Progress was created.
    """

    def __init__(self) -> None:
        self.tracker = ProgressTracker(10)
        self.step = 0

    def run(self, cmd: str, changes: str = "", auto_leave: bool = False) -> str:
        ccs = parse_conf_change(changes)
        changer = Changer(self.tracker)
        try:
            if cmd == "simple":
                cfg, map_changes = changer.simple(ccs)
            elif cmd == "enter-joint":
                cfg, map_changes = changer.enter_joint(auto_leave, ccs)
            else:
                assert cmd == "leave-joint" and not ccs
                cfg, map_changes = changer.leave_joint()
        except ConfChangeError as e:
            return f"error: {e}"
        finally:
            idx = self.step
            self.step += 1
        self.tracker.apply_conf(cfg, map_changes, idx)
        return self.render()

    def render(self) -> str:
        """The configuration, then ``id@next`` per Progress (``L`` marks learners)."""
        conf = self.tracker.conf()
        peers = [
            f"{id}@{pr.next_idx}{'L' if id in conf.learners else ''}"
            for id, pr in sorted(self.tracker.iter())
        ]
        return f"{conf} | {' '.join(peers)}"


def run_script(script: list[tuple[str, str, str]], auto_leave: bool = False) -> None:
    h = Harness()
    for i, (cmd, changes, want) in enumerate(script):
        got = h.run(cmd, changes, auto_leave)
        assert got == want, f"step {i}: {cmd} {changes!r}"


# -- simple ---------------------------------------------------------------------------------


def test_simple_add_is_idempotent() -> None:
    run_script(
        [
            ("simple", "v1", "voters=(1) | 1@0"),
            ("simple", "v1", "voters=(1) | 1@0"),  # no new Progress: next stays 0
            ("simple", "v2", "voters=(1 2) | 1@0 2@2"),
            ("simple", "v2", "voters=(1 2) | 1@0 2@2"),
            ("simple", "l3", "voters=(1 2) learners=(3) | 1@0 2@2 3@4L"),
            ("simple", "l3", "voters=(1 2) learners=(3) | 1@0 2@2 3@4L"),
        ]
    )


def test_simple_remove_is_idempotent() -> None:
    run_script(
        [
            ("simple", "v1", "voters=(1) | 1@0"),
            ("simple", "v2", "voters=(1 2) | 1@0 2@1"),
            ("simple", "l3", "voters=(1 2) learners=(3) | 1@0 2@1 3@2L"),
            ("simple", "r3", "voters=(1 2) | 1@0 2@1"),
            ("simple", "r3", "voters=(1 2) | 1@0 2@1"),
            ("simple", "r2", "voters=(1) | 1@0"),
            ("simple", "r2", "voters=(1) | 1@0"),
            ("simple", "r7", "voters=(1) | 1@0"),  # never a member
        ]
    )


def test_simple_promote_and_demote_keep_progress() -> None:
    run_script(
        [
            ("simple", "v1", "voters=(1) | 1@0"),
            ("simple", "v2", "voters=(1 2) | 1@0 2@1"),
            ("simple", "v3", "voters=(1 2 3) | 1@0 2@1 3@2"),
            # Demote: the Progress (next=1) survives.
            ("simple", "l2", "voters=(1 3) learners=(2) | 1@0 2@1L 3@2"),
            # Promote it back.
            ("simple", "v2", "voters=(1 2 3) | 1@0 2@1 3@2"),
            # Demote and promote in one change: pointless but allowed, a no-op.
            ("simple", "l1 v1", "voters=(1 2 3) | 1@0 2@1 3@2"),
            ("simple", "l3", "voters=(1 2) learners=(3) | 1@0 2@1 3@2L"),
            ("simple", "v3 l3", "voters=(1 2) learners=(3) | 1@0 2@1 3@2L"),
        ]
    )


def test_simple_refuses_to_change_two_voters() -> None:
    run_script(
        [
            ("simple", "v1", "voters=(1) | 1@0"),
            ("simple", "v2 l3", "voters=(1 2) learners=(3) | 1@0 2@1 3@1L"),
            ("simple", "v4 v5", "error: more than one voter changed without entering joint config"),
            ("simple", "r1 v6", "error: more than one voter changed without entering joint config"),
            ("simple", "l2 v3", "error: more than one voter changed without entering joint config"),
            # Learners do not count: one voter plus several learners is fine.
            ("simple", "v4 l5 l6 l7", "voters=(1 2 4) learners=(3 5 6 7) | "
             "1@0 2@1 3@1L 4@5 5@5L 6@5L 7@5L"),
            ("simple", "r5 r6 r7", "voters=(1 2 4) learners=(3) | 1@0 2@1 3@1L 4@5"),
        ]
    )  # fmt: skip


def test_simple_refuses_to_remove_every_voter() -> None:
    run_script(
        [
            ("simple", "l1", "error: removed all voters"),  # a learner-only config
            ("simple", "v1", "voters=(1) | 1@1"),
            ("simple", "r1", "error: removed all voters"),
            ("simple", "l1", "error: removed all voters"),  # demoting the last voter
        ]
    )


def test_simple_add_then_demote_in_one_change() -> None:
    h = Harness()
    h.run("simple", "v1")
    assert h.run("simple", "v2 l2") == "voters=(1) learners=(2) | 1@0 2@1L"


def test_empty_config_can_be_bootstrapped_one_voter_at_a_time() -> None:
    h = Harness()
    assert h.run("simple", "v1 v2").startswith("error: more than one voter changed")
    assert h.run("simple", "") == "error: removed all voters"
    assert h.run("simple", "v1") == "voters=(1) | 1@2"


def test_node_id_zero_is_ignored() -> None:
    run_script(
        [
            ("simple", "v1 r0 v0 l0", "voters=(1) | 1@0"),
            ("simple", "r0", "voters=(1) | 1@0"),
            ("enter-joint", "v0 v2", "voters=(1 2)&&(1) | 1@0 2@2"),
        ]
    )


def test_simple_is_refused_while_joint() -> None:
    h = Harness()
    h.run("simple", "v1")
    h.run("enter-joint", "v2")
    assert h.run("simple", "l3") == "error: can't apply simple config change in joint config"


# -- joint ----------------------------------------------------------------------------------


def test_joint_safety() -> None:
    run_script(
        [
            ("leave-joint", "", "error: can't leave a non-joint config"),
            ("enter-joint", "", "error: can't make a zero-voter config joint"),
            ("enter-joint", "v1 v2", "error: can't make a zero-voter config joint"),
            ("simple", "v1", "voters=(1) | 1@3"),
            ("leave-joint", "", "error: can't leave a non-joint config"),
            # Entering with no changes is allowed: both halves are the same.
            ("enter-joint", "", "voters=(1)&&(1) | 1@3"),
            ("enter-joint", "", "error: config is already joint"),
            ("enter-joint", "v9", "error: config is already joint"),
            ("leave-joint", "", "voters=(1) | 1@3"),
            ("leave-joint", "", "error: can't leave a non-joint config"),
            # Replace the only voter in one joint step.
            ("enter-joint", "r1 v2 v3 l4", "voters=(2 3)&&(1) learners=(4) | 1@3 2@10 3@10 4@10L"),
            ("enter-joint", "r2", "error: config is already joint"),
            ("enter-joint", "r2 r3", "error: config is already joint"),
            ("leave-joint", "", "voters=(2 3) learners=(4) | 2@10 3@10 4@10L"),
            ("simple", "l8", "voters=(2 3) learners=(4 8) | 2@10 3@10 4@10L 8@14L"),
        ]
    )


def test_enter_joint_refuses_to_remove_every_incoming_voter() -> None:
    h = Harness()
    h.run("simple", "v1")
    h.run("simple", "v2")
    assert h.run("enter-joint", "r1 r2") == "error: removed all voters"
    assert h.run("enter-joint", "l1 l2") == "error: removed all voters"
    assert h.tracker.conf() == Configuration.new([1, 2])


def test_enter_joint_keeps_progress_of_outgoing_voters() -> None:
    h = Harness()
    for v in ("v1", "v2", "v3"):
        h.run("simple", v)
    pr3 = h.tracker.get(3)
    assert h.run("enter-joint", "r3 v4") == "voters=(1 2 4)&&(1 2 3) | 1@0 2@1 3@2 4@3"
    assert h.tracker.get(3) is pr3  # 3 still votes in the outgoing half
    assert h.run("leave-joint") == "voters=(1 2 4) | 1@0 2@1 4@3"


def test_joint_auto_leave_flag_is_passed_through() -> None:
    run_script(
        [
            ("simple", "v1", "voters=(1) | 1@0"),
            ("enter-joint", "v2 v3", "voters=(1 2 3)&&(1) autoleave | 1@0 2@1 3@1"),
            ("enter-joint", "", "error: config is already joint"),
            ("leave-joint", "", "voters=(1 2 3) | 1@0 2@1 3@1"),
        ],
        auto_leave=True,
    )
    h = Harness()
    h.run("simple", "v1")
    h.run("enter-joint", "v2", auto_leave=False)
    assert not h.tracker.conf().auto_leave


def test_demoting_an_outgoing_voter_stages_it_in_learners_next() -> None:
    h = Harness()
    h.run("simple", "v1")
    pr1 = h.tracker.get(1)
    assert h.run("enter-joint", "v2 l1") == "voters=(2)&&(1) learners_next=(1) | 1@0 2@1"
    assert 1 not in h.tracker.conf().learners  # still a voter (outgoing) for now
    assert h.run("leave-joint") == "voters=(2) learners=(1) | 1@0L 2@1"
    assert h.tracker.get(1) is pr1  # the Progress was never reset


def test_promoting_a_staged_learner_unstages_it() -> None:
    h = Harness()
    h.run("simple", "v1")
    h.run("simple", "v2")
    # Staged, then promoted back within the same joint change.
    assert h.run("enter-joint", "l1 v1") == "voters=(1 2)&&(1 2) | 1@0 2@1"
    h.run("leave-joint")
    # Staged, then removed: dropped entirely at leave time.
    assert h.run("enter-joint", "l2 r2") == "voters=(1)&&(1 2) | 1@0 2@1"
    assert h.run("leave-joint") == "voters=(1) | 1@0"


def test_adding_a_new_learner_in_joint_state_is_immediate() -> None:
    h = Harness()
    h.run("simple", "v1")
    # 5 is not an outgoing voter, so it becomes a learner right away.
    assert h.run("enter-joint", "l5") == "voters=(1)&&(1) learners=(5) | 1@0 5@1L"


def test_joint_changes_are_idempotent() -> None:
    run_script(
        [
            ("simple", "v1", "voters=(1) | 1@0"),
            ("enter-joint", "v2 v2 r5 l3 l3 v4 r4 r4 l1 l1",
             "voters=(2)&&(1) learners=(3) learners_next=(1) | 1@0 2@1 3@1L"),
            ("leave-joint", "", "voters=(2) learners=(1 3) | 1@0L 2@1 3@1L"),
        ]
    )  # fmt: skip


def test_changer_does_not_mutate_the_tracker() -> None:
    h = Harness()
    h.run("simple", "v1")
    h.run("simple", "v2")
    before = h.tracker.conf().copy()
    cfg, changes = Changer(h.tracker).enter_joint(True, parse_conf_change("r2 v3 l4"))
    assert h.tracker.conf() == before
    assert sorted(h.tracker.progress) == [1, 2]
    assert cfg is not h.tracker.conf()
    assert str(cfg) == "voters=(1 3)&&(1 2) learners=(4) autoleave"
    assert changes == [(3, MapChangeType.Add), (4, MapChangeType.Add)]


def test_leave_joint_reports_removals() -> None:
    h = Harness()
    for v in ("v1", "v2", "v3"):
        h.run("simple", v)
    h.run("enter-joint", "r2 r3 v4 l5")
    _, changes = Changer(h.tracker).leave_joint()
    assert changes == [(2, MapChangeType.Remove), (3, MapChangeType.Remove)]


def test_remove_then_add_in_one_change_records_both() -> None:
    h = Harness()
    h.run("simple", "v1")
    h.run("simple", "l2")
    cfg, changes = Changer(h.tracker).simple(parse_conf_change("r2 l2"))
    assert changes == [(2, MapChangeType.Remove), (2, MapChangeType.Add)]
    h.tracker.apply_conf(cfg, changes, 42)
    pr = h.tracker.get(2)
    assert pr is not None and pr.next_idx == 42  # a fresh Progress


# -- invariants -----------------------------------------------------------------------------


def corrupt(mutate: str) -> ProgressTracker:
    h = Harness()
    h.run("simple", "v1")
    h.run("simple", "v2")
    h.run("simple", "l3")
    conf = h.tracker.conf()
    if mutate == "learner-is-voter":
        conf.learners.add(1)
    elif mutate == "learner-is-outgoing":
        conf.voters.outgoing.update({1, 2, 3})
    elif mutate == "voter-without-progress":
        conf.voters.incoming.add(9)
    elif mutate == "learner-without-progress":
        conf.learners.add(9)
    elif mutate == "learners-next-without-progress":
        conf.voters.outgoing.update({1, 9})
        conf.learners_next.add(9)
    elif mutate == "learners-next-not-outgoing":
        conf.voters.outgoing.add(1)
        conf.learners_next.add(2)
    elif mutate == "learners-next-not-joint":
        conf.learners_next.add(2)
    elif mutate == "auto-leave-not-joint":
        conf.auto_leave = True
    return h.tracker


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ("learner-is-voter", "1 is in learners and incoming voters"),
        ("learner-is-outgoing", "3 is in learners and outgoing voters"),
        ("voter-without-progress", "no progress for voter 9"),
        ("learner-without-progress", "no progress for learner 9"),
        ("learners-next-without-progress", "no progress for voter 9"),
        ("learners-next-not-outgoing", "2 is in learners_next but not in outgoing voters"),
        # learners_next must be a subset of the (here empty) outgoing half, so that
        # rule fires before "learners_next must be empty when not joint" can.
        ("learners-next-not-joint", "2 is in learners_next but not in outgoing voters"),
        ("auto-leave-not-joint", "auto_leave must be false when not joint"),
    ],
)
def test_a_broken_configuration_is_refused(mutate: str, message: str) -> None:
    tracker = corrupt(mutate)
    with pytest.raises(ConfChangeError) as exc:
        check_invariants(tracker.conf(), tracker.progress.__contains__)
    assert str(exc.value) == message
    # Every Changer entry point checks the starting configuration first.
    with pytest.raises(ConfChangeError):
        if tracker.conf().is_joint():
            Changer(tracker).leave_joint()
        else:
            Changer(tracker).simple(parse_conf_change("l4"))


def test_staged_learner_without_progress_is_named() -> None:
    conf = Configuration(JointConfig([1], [1]), learners_next={9})
    with pytest.raises(ConfChangeError, match=r"no progress for learner\(next\) 9"):
        check_invariants(conf, lambda id: id == 1)


def test_the_empty_configuration_is_valid() -> None:
    check_invariants(Configuration(), lambda id: False)


# -- restore ----------------------------------------------------------------------------------


def restored(cs: ConfState, next_idx: int = 7) -> ProgressTracker:
    tracker = ProgressTracker(16)
    restore(tracker, next_idx, cs)
    return tracker


@pytest.mark.parametrize(
    "cs",
    [
        ConfState(),
        ConfState(voters=[1]),
        ConfState(voters=[1, 2, 3]),
        ConfState(voters=[3, 1], learners=[2, 5]),
        ConfState(voters=[1, 2, 3], voters_outgoing=[1, 2, 3]),
        ConfState(voters=[4, 5], voters_outgoing=[1, 2, 3], auto_leave=True),
        ConfState(voters=[1, 2, 3], learners=[5], voters_outgoing=[1, 2, 4, 6], learners_next=[4]),
        ConfState(voters=[2], learners=[3], voters_outgoing=[1], learners_next=[1]),
    ],
    ids=[
        "empty",
        "single",
        "three",
        "learners",
        "joint-same",
        "joint-disjoint-autoleave",
        "joint-learners-next",
        "demote-only-voter",
    ],
)
def test_restore_round_trips(cs: ConfState) -> None:
    tracker = restored(cs)
    assert conf_state_eq(tracker.conf().to_conf_state(), cs)
    members = set(cs.voters) | set(cs.learners) | set(cs.voters_outgoing) | set(cs.learners_next)
    assert set(tracker.progress) == members
    assert all(pr.next_idx == 7 and pr.recent_active for _, pr in tracker.iter())


@pytest.mark.parametrize(
    ("cs", "message"),
    [
        (ConfState(learners=[1]), "removed all voters"),
        (ConfState(voters_outgoing=[1, 2], learners=[3]), "removed all voters"),
        (ConfState(learners_next=[1]), "removed all voters"),
    ],
)
def test_restore_refuses_unreachable_states(cs: ConfState, message: str) -> None:
    with pytest.raises(ConfChangeError, match=message):
        restored(cs)


def test_restore_does_not_round_trip_a_learner_that_votes() -> None:
    # Replay demotes the voter instead of failing; Raft detects the mismatch by
    # comparing the result with the ConfState, as raft-rs does.
    cs = ConfState(voters=[1, 2], learners=[2])
    assert not conf_state_eq(restored(cs).conf().to_conf_state(), cs)


def test_to_conf_change_single_orders_outgoing_first() -> None:
    cs = ConfState(voters=[1, 3], learners=[5], voters_outgoing=[1, 4], learners_next=[4])
    outgoing, incoming = to_conf_change_single(cs)
    assert [(c.change_type.name, c.node_id) for c in outgoing] == [("AddNode", 1), ("AddNode", 4)]
    assert [(c.change_type.name, c.node_id) for c in incoming] == [
        ("RemoveNode", 1),
        ("RemoveNode", 4),
        ("AddNode", 1),
        ("AddNode", 3),
        ("AddLearnerNode", 5),
        ("AddLearnerNode", 4),
    ]


ids = st.integers(1, 15)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    """Random ConfStates that a valid sequence of changes can reach."""
    if draw(st.booleans()):
        voters = draw(st.sets(ids, min_size=1, max_size=7))
        learners = draw(st.sets(ids.filter(lambda i: i not in voters), max_size=5))
        return ConfState(
            voters=draw(st.permutations(sorted(voters))),
            learners=draw(st.permutations(sorted(learners))),
        )
    outgoing = draw(st.sets(ids, min_size=1, max_size=7))
    voters = draw(st.sets(ids, min_size=1, max_size=7))
    stageable = sorted(outgoing - voters)
    learners_next = draw(st.sets(st.sampled_from(stageable))) if stageable else set()
    learners = draw(
        st.sets(ids.filter(lambda i: i not in voters and i not in outgoing), max_size=5)
    )
    return ConfState(
        voters=draw(st.permutations(sorted(voters))),
        learners=draw(st.permutations(sorted(learners))),
        voters_outgoing=draw(st.permutations(sorted(outgoing))),
        learners_next=draw(st.permutations(sorted(learners_next))),
        auto_leave=draw(st.booleans()),
    )


@pytest.mark.slow
@settings(derandomize=True, max_examples=150, deadline=None)
@given(cs=conf_states(), next_idx=st.integers(0, 100))
def test_restore_round_trips_random_conf_states(cs: ConfState, next_idx: int) -> None:
    tracker = restored(cs, next_idx)
    assert conf_state_eq(tracker.conf().to_conf_state(), cs)
    members = set(cs.voters) | set(cs.learners) | set(cs.voters_outgoing)
    assert set(tracker.progress) == members
    assert {pr.next_idx for _, pr in tracker.iter()} == {next_idx}
    # The result is a configuration the Changer accepts as a starting point.
    check_invariants(tracker.conf(), tracker.progress.__contains__)
