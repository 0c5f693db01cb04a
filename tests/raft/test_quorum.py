# Covers raft-rs (src/quorum/datadriven_test.rs, test_data_driven_quorum) testdata:
# majority_commit, majority_vote, joint_commit, joint_vote, joint_group_commit,
# including the harness's cross-checks (zero-joint and self-joint equivalence, joint
# symmetry, lowering an index that is already below the committed index changes nothing).
# Property tests against naive references follow etcd's quorum/quick_test.go.
"""Tests of majority and joint quorums: committed index and vote results."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.quorum import (
    AckIndexer,
    Index,
    JointConfig,
    MajorityConfig,
    VoteResult,
    majority,
)
from multiraft.raft.types import NO_LIMIT

Won, Lost, Pending = VoteResult.Won, VoteResult.Lost, VoteResult.Pending


def acked(indexes: dict[int, int], groups: dict[int, int] | None = None) -> AckIndexer:
    groups = groups or {}
    return AckIndexer({id: Index(i, groups.get(id, 0)) for id, i in indexes.items()})


def votes_of(text: str, ids: list[int]) -> dict[int, bool]:
    """``"yn_"`` for voters ``ids``: y granted, n rejected, _ missing."""
    return {id: c == "y" for id, c in zip(ids, text, strict=True) if c != "_"}


# -- majority: committed index ------------------------------------------------------


@pytest.mark.parametrize(
    ("voters", "indexes", "want"),
    [
        ([], {}, NO_LIMIT),
        ([1], {}, 0),
        ([1], {1: 7}, 7),
        ([1, 2], {1: 7}, 0),  # both are needed
        ([1, 2], {1: 7, 2: 3}, 3),
        ([1, 2, 3], {}, 0),
        ([1, 2, 3], {1: 7}, 0),
        ([1, 2, 3], {1: 7, 2: 3}, 3),
        ([1, 2, 3], {1: 7, 2: 3, 3: 4}, 4),
        ([1, 2, 3], {1: 7, 2: 3, 3: 2}, 3),
        ([1, 2, 3], {1: 3, 2: 3}, 3),
        ([1, 2, 3], {1: 3, 2: 3, 3: 9}, 3),
        ([1, 2, 3, 4], {1: 50, 2: 40, 3: 30}, 30),
        ([1, 2, 3, 4], {1: 50, 2: 40, 3: 30, 4: 45}, 40),
        ([1, 2, 3, 4, 5], {1: 200, 2: 204, 3: 203, 4: 203}, 203),
        ([1, 2, 3, 4, 5], {1: 200, 2: 201, 3: 203, 4: 203}, 201),
        ([1, 2, 3, 4, 5, 6, 7], {i: i * 10 for i in range(1, 8)}, 40),
        # Indexes reported for non-voters do not count.
        ([1, 2, 3], {1: 5, 8: 100, 9: 100}, 0),
    ],
)
def test_majority_committed_index(voters: list[int], indexes: dict[int, int], want: int) -> None:
    cfg = MajorityConfig(voters)
    idx = acked(indexes)
    assert cfg.committed_index(False, idx) == (want, not voters)
    # A majority config joint with the empty config, or with itself, is the same quorum.
    assert JointConfig(voters).committed_index(False, idx)[0] == want
    assert JointConfig(voters, voters).committed_index(False, idx)[0] == want


@pytest.mark.parametrize(
    ("voters", "indexes"),
    [
        ([1, 2, 3], {1: 7, 2: 3, 3: 4}),
        ([1, 2, 3, 4, 5], {1: 200, 2: 204, 3: 203, 4: 203}),
        ([1, 2, 3, 4], {1: 50, 2: 40, 3: 30, 4: 45}),
    ],
)
def test_lowering_an_index_below_the_commit_changes_nothing(
    voters: list[int], indexes: dict[int, int]
) -> None:
    cfg = MajorityConfig(voters)
    want, _ = cfg.committed_index(False, acked(indexes))
    for id, i in indexes.items():
        if i < want:
            for lowered in (i - 1, 0):
                assert cfg.committed_index(False, acked({**indexes, id: lowered}))[0] == want


# -- majority: votes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voters", "votes", "want"),
    [
        ([], "", Won),
        ([1], "_", Pending),
        ([1], "n", Lost),
        ([1], "y", Won),
        ([5, 9], "__", Pending),
        ([5, 9], "n_", Lost),  # two voters: one "no" is enough to lose
        ([5, 9], "y_", Pending),
        ([5, 9], "yn", Lost),
        ([5, 9], "yy", Won),
        ([1, 2, 3], "___", Pending),
        ([1, 2, 3], "n__", Pending),
        ([1, 2, 3], "y__", Pending),
        ([1, 2, 3], "yn_", Pending),
        ([1, 2, 3], "nn_", Lost),
        ([1, 2, 3], "yy_", Won),
        ([1, 2, 3], "yyn", Won),
        ([1, 2, 3], "nyn", Lost),
        ([1, 2, 3, 4, 5, 6, 7], "yyny___", Pending),
        ([1, 2, 3, 4, 5, 6, 7], "yynyy__", Won),
        ([1, 2, 3, 4, 5, 6, 7], "yyn_nnn", Lost),
        ([1, 2, 3, 4, 5, 6, 7], "_yn_nyn", Pending),
    ],
)
def test_majority_vote_result(voters: list[int], votes: str, want: VoteResult) -> None:
    ballot = votes_of(votes, voters)
    assert MajorityConfig(voters).vote_result(ballot.get) == want
    assert JointConfig(voters).vote_result(ballot.get) == want


# -- joint: committed index -----------------------------------------------------------


@pytest.mark.parametrize(
    ("incoming", "outgoing", "indexes", "want"),
    [
        ([1, 2, 3], [], {1: 100, 2: 101, 3: 99}, 100),
        ([], [], {}, NO_LIMIT),
        # Disjoint singletons: each half must have the index.
        ([1], [2], {}, 0),
        ([1], [2], {1: 100}, 0),
        ([1], [2], {1: 13, 2: 100}, 13),
        # Identical singletons.
        ([1], [1], {}, 0),
        ([1], [1], {1: 100}, 100),
        # Two voters joint with one disjoint voter.
        ([1, 3], [2], {1: 100, 2: 50}, 0),
        ([1, 3], [2], {1: 100, 2: 50, 3: 45}, 45),
        # Two voters joint with one overlapping voter.
        ([1, 2], [2], {1: 100}, 0),
        ([1, 2], [2], {2: 100}, 0),
        ([1, 2], [2], {1: 50, 2: 100}, 50),
        ([1, 2], [2], {1: 100, 2: 50}, 50),
        # Disjoint pairs.
        ([1, 2], [3, 4], {1: 50, 2: 48, 3: 49}, 0),
        ([1, 2], [3, 4], {1: 50, 2: 48, 3: 49, 4: 47}, 47),
        # Overlapping pairs.
        ([1, 2], [2, 3], {2: 100, 3: 99}, 0),
        ([1, 2], [2, 3], {1: 101, 2: 100, 3: 99}, 99),
        # Disjoint triples: each half's own majority, then the lower of the two.
        ([1, 2, 3], [4, 5, 6], {1: 100, 2: 99}, 0),
        ([1, 2, 3], [4, 5, 6], {2: 99, 3: 90, 4: 97, 5: 95}, 90),
        ([1, 2, 3], [4, 5, 6], {1: 50, 2: 60, 3: 70, 4: 97, 5: 95, 6: 1}, 60),
        # Overlapping triples.
        ([1, 2, 3], [3, 4, 5], {1: 10, 2: 20, 3: 30, 4: 25, 5: 5}, 20),
        ([1, 2, 3], [1, 4, 5], {1: 8, 2: 20, 3: 30, 4: 3, 5: 2}, 3),
    ],
)
def test_joint_committed_index(
    incoming: list[int], outgoing: list[int], indexes: dict[int, int], want: int
) -> None:
    idx = acked(indexes)
    assert JointConfig(incoming, outgoing).committed_index(False, idx)[0] == want
    # The halves are interchangeable.
    assert JointConfig(outgoing, incoming).committed_index(False, idx)[0] == want


# -- joint: votes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("incoming", "outgoing", "votes", "want"),
    [
        ([], [], "", Won),
        ([1], [], "_", Pending),
        ([1], [], "y", Won),
        ([1], [], "n", Lost),
        ([1], [1], "_", Pending),
        ([1], [1], "y", Won),
        ([1], [1], "n", Lost),
        ([1], [2], "__", Pending),
        ([1], [2], "y_", Pending),  # won in one half only
        ([1], [2], "yy", Won),
        ([1], [2], "yn", Lost),
        ([1], [2], "n_", Lost),
        ([1], [2], "ny", Lost),
        ([1, 2], [3, 4], "yy__", Pending),
        ([1, 2], [3, 4], "yyn_", Lost),
        ([1, 2], [3, 4], "yyyn", Lost),
        ([1, 2], [3, 4], "yyyy", Won),
        ([1, 2], [2, 3], "_n_", Lost),  # the shared voter's "no" loses both halves
        ([1, 2], [2, 3], "yy_", Pending),
        ([1, 2], [2, 3], "yyn", Lost),
        ([1, 2], [2, 3], "yyy", Won),
        ([1, 2, 3], [1, 4, 5], "yn_y_", Pending),
        ([1, 2, 3], [1, 4, 5], "ynny_", Lost),
        ([1, 2, 3], [1, 4, 5], "y_yy_", Won),
    ],
)
def test_joint_vote_result(
    incoming: list[int], outgoing: list[int], votes: str, want: VoteResult
) -> None:
    ids = sorted(set(incoming) | set(outgoing))
    ballot = votes_of(votes, ids)
    assert JointConfig(incoming, outgoing).vote_result(ballot.get) == want
    assert JointConfig(outgoing, incoming).vote_result(ballot.get) == want


# -- group commit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voters", "indexes", "groups", "want"),
    [
        # One group for everybody: group commit cannot apply; plain quorum.
        ([1, 2, 3], {1: 10, 2: 20, 3: 30}, {1: 1, 2: 1, 3: 1}, (20, False)),
        # The highest index held by a second group bounds the commit.
        ([1, 2, 3], {1: 10, 2: 20, 3: 30}, {1: 1, 2: 1, 3: 2}, (20, True)),
        ([1, 2, 3], {1: 10, 2: 20, 3: 30}, {1: 2, 2: 1, 3: 1}, (10, True)),
        (
            [1, 2, 3, 4, 5],
            {1: 1, 2: 2, 3: 3, 4: 4, 5: 5},
            {1: 1, 2: 1, 3: 1, 4: 1, 5: 2},
            (3, True),
        ),
        # A voter without a group: only what every voter holds.
        ([1, 2, 3], {1: 10, 2: 20, 3: 30}, {2: 1, 3: 1}, (10, False)),
        ([1, 2, 3], {1: 10, 2: 20, 3: 30}, {}, (10, False)),
        # ... unless a second group shows up first (scanning from the highest index).
        ([1, 2, 3], {1: 10, 2: 20, 3: 30}, {2: 1, 3: 2}, (20, True)),
        ([], {}, {}, (NO_LIMIT, True)),
    ],
)
def test_majority_group_commit(
    voters: list[int], indexes: dict[int, int], groups: dict[int, int], want: tuple[int, bool]
) -> None:
    assert MajorityConfig(voters).committed_index(True, acked(indexes, groups)) == want


@pytest.mark.parametrize(
    ("incoming", "outgoing", "indexes", "groups", "want"),
    [
        # Outgoing empty: the incoming answer, flag from incoming.
        ([1, 2, 3], [], {1: 100, 2: 101, 3: 99}, {1: 1, 2: 1, 3: 2}, (99, True)),
        ([1, 2, 3], [], {1: 100, 2: 101, 3: 99}, {1: 1, 2: 1, 3: 1}, (100, False)),
        # Both halves decided by group commit: the lower one.
        ([1, 2, 3], [4, 5, 6], {1: 9, 2: 10, 3: 11, 4: 9, 5: 10, 6: 11},
         {1: 1, 2: 1, 3: 2, 4: 1, 5: 2, 6: 1}, (10, True)),
        # One half falls back to the minimum because a voter has no group.
        ([1, 2, 3], [4, 5, 6], {1: 9, 2: 10, 3: 11, 4: 9, 5: 10, 6: 11},
         {1: 1, 2: 1, 3: 2, 4: 1, 5: 1}, (9, False)),
        # Overlapping halves: the outgoing half only reached a second group at 2.
        ([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], {1: 3, 2: 100, 3: 101, 4: 102, 5: 103, 6: 2},
         {2: 1, 3: 1, 4: 1, 5: 1, 6: 3}, (2, False)),
    ],
)  # fmt: skip
def test_joint_group_commit(
    incoming: list[int],
    outgoing: list[int],
    indexes: dict[int, int],
    groups: dict[int, int],
    want: tuple[int, bool],
) -> None:
    idx = acked(indexes, groups)
    assert JointConfig(incoming, outgoing).committed_index(True, idx) == want
    assert JointConfig(outgoing, incoming).committed_index(True, idx) == want


# -- describe, display, helpers ---------------------------------------------------------------


def test_describe_majority() -> None:
    cfg = MajorityConfig([1, 2, 3, 4])
    text = cfg.describe(acked({1: 100, 2: 101, 3: 100}))
    assert text == (
        "        idx\n"
        "x>      100    (id=1)\n"
        "xxx>    101    (id=2)\n"
        ">       100    (id=3)\n"
        "?         0    (id=4)\n"
    )
    assert MajorityConfig().describe(acked({})) == "<empty majority quorum>"


def test_describe_joint_lists_the_union() -> None:
    text = JointConfig([1], [2]).describe(acked({2: 5}))
    assert text == "      idx\n?       0    (id=1)\nx>      5    (id=2)\n"


def test_index_and_vote_display() -> None:
    assert str(Index(12)) == "12"
    assert str(Index(NO_LIMIT)) == "∞"
    assert str(Index(12, 3)) == "[3]12"
    assert str(Index(NO_LIMIT, 3)) == "[3]∞"
    assert [str(v) for v in (Pending, Lost, Won)] == ["VotePending", "VoteLost", "VoteWon"]


def test_config_display_and_helpers() -> None:
    jc = JointConfig([3, 1, 2], [2, 4])
    assert str(jc) == "(1 2 3)&&(2 4)"
    assert str(JointConfig([2, 1])) == "(1 2)"
    assert jc.ids() == {1, 2, 3, 4}
    assert jc.contains(4) and 4 in jc and not jc.contains(5)
    assert not jc.is_singleton()
    assert JointConfig([7]).is_singleton()
    assert not JointConfig([7], [7]).is_singleton()
    assert jc.incoming.slice() == [1, 2, 3]
    copy = jc.copy()
    assert copy == jc and copy.incoming is not jc.incoming
    jc.clear()
    assert jc == JointConfig() and copy != jc
    assert isinstance(MajorityConfig([1]).copy(), MajorityConfig)
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


# -- properties against naive references ------------------------------------------------------

voter_sets = st.sets(st.integers(1, 12), max_size=9)
acks = st.dictionaries(st.integers(1, 14), st.integers(0, 20), max_size=12)


def naive_committed(voters: set[int], indexes: dict[int, int]) -> int:
    """The largest index that at least a majority of voters has reached (0 if none)."""
    if not voters:
        return NO_LIMIT
    need = len(voters) // 2 + 1
    candidates = {0} | {indexes.get(v, 0) for v in voters}
    return max(c for c in candidates if sum(indexes.get(v, 0) >= c for v in voters) >= need)


def naive_vote(voters: set[int], votes: dict[int, bool]) -> VoteResult:
    if not voters:
        return Won
    need = len(voters) // 2 + 1
    yes = sum(votes.get(v) is True for v in voters)
    no = sum(votes.get(v) is False for v in voters)
    if yes >= need:
        return Won
    if len(voters) - no < need:
        return Lost
    return Pending


@pytest.mark.slow
@settings(derandomize=True, max_examples=250, deadline=None)
@given(voters=voter_sets, indexes=acks)
def test_majority_committed_matches_naive(voters: set[int], indexes: dict[int, int]) -> None:
    got, _ = MajorityConfig(voters).committed_index(False, acked(indexes))
    assert got == naive_committed(voters, indexes)


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(incoming=voter_sets, outgoing=voter_sets, indexes=acks)
def test_joint_committed_is_min_of_halves(
    incoming: set[int], outgoing: set[int], indexes: dict[int, int]
) -> None:
    got, _ = JointConfig(incoming, outgoing).committed_index(False, acked(indexes))
    assert got == min(naive_committed(incoming, indexes), naive_committed(outgoing, indexes))


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    incoming=voter_sets,
    outgoing=voter_sets,
    votes=st.dictionaries(st.integers(1, 14), st.booleans(), max_size=12),
)
def test_vote_results_match_naive(
    incoming: set[int], outgoing: set[int], votes: dict[int, bool]
) -> None:
    assert MajorityConfig(incoming).vote_result(votes.get) == naive_vote(incoming, votes)
    i, o = naive_vote(incoming, votes), naive_vote(outgoing, votes)
    want = Won if i == o == Won else Lost if Lost in (i, o) else Pending
    assert JointConfig(incoming, outgoing).vote_result(votes.get) == want


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(voters=voter_sets, indexes=acks)
def test_group_commit_never_exceeds_plain_quorum(voters: set[int], indexes: dict[int, int]) -> None:
    groups = {v: 1 + v % 3 for v in voters if v % 4}
    cfg = MajorityConfig(voters)
    plain, _ = cfg.committed_index(False, acked(indexes))
    grouped, _ = cfg.committed_index(True, acked(indexes, groups))
    assert grouped <= plain
