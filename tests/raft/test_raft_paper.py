# Ports of raft-rs harness/tests/integration_cases/test_raft_paper.rs: the rules of the Raft paper
# (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm"), §5.1-§5.4.
#
# Covered raft-rs tests (all 25):
#   test_follower_update_term_from_message, test_candidate_update_term_from_message,
#   test_leader_update_term_from_message, test_start_as_follower, test_leader_bcast_beat,
#   test_follower_start_election, test_candidate_start_new_election,
#   test_leader_election_in_one_round_rpc, test_follower_vote, test_candidate_fallback,
#   test_follower_election_timeout_randomized, test_candidate_election_timeout_randomized,
#   test_follower_election_timeout_nonconflict, test_candidates_election_timeout_nonconf,
#   test_leader_start_replication, test_leader_commit_entry, test_leader_acknowledge_commit,
#   test_leader_commit_preceding_entries, test_follower_commit_entry,
#   test_follower_check_msg_append, test_follower_append_entries, test_leader_sync_follower_log,
#   test_vote_request, test_voter, test_leader_only_commits_log_from_current_term.
# Skipped: none.
#
# The statistical tests (election timeout randomization) draw from a seeded random.Random, so
# they are deterministic.

from __future__ import annotations

import random

import pytest

from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    NOP_STEPPER,
    SOME_DATA,
    Network,
    empty_entry,
    hard_state,
    ltoa,
    new_entry,
    new_message,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
    persist,
    read_messages,
)
from multiraft.raft.types import INVALID_ID, Entry, Message, MessageType, StateRole

MT = MessageType


# ---------------------------------------------------------------------------
# Helpers (raft-rs's per-file helpers of test_raft_paper.rs)


def accept_and_reply(m: Message) -> Message:
    """The follower's successful answer to a MsgAppend."""
    assert m.msg_type == MT.MsgAppend
    reply = new_message(m.to, m.from_, MT.MsgAppendResponse)
    reply.term = m.term
    reply.index = m.index + len(m.entries)
    return reply


def commit_noop_entry(r: Raft, s: MemStorage) -> None:
    """Have every follower ack the new leader's no-op, persist it and apply it."""
    assert r.state == StateRole.Leader
    r.bcast_append()
    for m in read_messages(r):
        assert m.msg_type == MT.MsgAppend
        assert len(m.entries) == 1
        assert m.entries[0].data == b""
        r.step(accept_and_reply(m))
    # Drop the commit-index refresh the acks triggered.
    read_messages(r)
    unstable = list(r.raft_log.unstable_entries())
    if unstable:
        last = unstable[-1]
        r.raft_log.stable_entries(last.index, last.term)
        s.append(unstable)
        r.on_persist_entries(last.index, last.term)
        r.commit_apply(r.raft_log.committed)


def by_to(msgs: list[Message]) -> list[Message]:
    return sorted(msgs, key=lambda m: (m.to, m.msg_type))


def new_raft_with_entries(
    id: int, voters: list[int], ents: list[Entry], rng: random.Random | None = None
) -> Raft:
    store = MemStorage.new_with_conf_state((voters, []))
    store.append(ents)
    return new_test_raft_with_config(new_test_config(id, 10, 1), store, rng=rng)


def become(r: Raft, state: StateRole) -> None:
    if state == StateRole.Follower:
        r.become_follower(1, 2)
    elif state == StateRole.PreCandidate:
        r.become_pre_candidate()
    elif state == StateRole.Candidate:
        r.become_candidate()
    else:
        r.become_candidate()
        r.become_leader()


# ---------------------------------------------------------------------------
# §5.1 terms


def _check_update_term_from_message(state: StateRole) -> None:
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    become(r, state)
    m = new_message(0, 0, MT.MsgAppend)
    m.term = 2
    r.step(m)
    assert r.term == 2
    assert r.state == StateRole.Follower


def test_follower_update_term_from_message() -> None:
    """Raft paper §5.1: a server seeing a larger term adopts it (follower stays follower)."""
    _check_update_term_from_message(StateRole.Follower)


def test_candidate_update_term_from_message() -> None:
    """Raft paper §5.1: a candidate that discovers a larger term reverts to follower."""
    _check_update_term_from_message(StateRole.Candidate)


def test_leader_update_term_from_message() -> None:
    """Raft paper §5.1: a leader that discovers a larger term reverts to follower."""
    _check_update_term_from_message(StateRole.Leader)


# ---------------------------------------------------------------------------
# §5.2 leader election


def test_start_as_follower() -> None:
    """Raft paper §5.2: servers start up as followers."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    assert r.state == StateRole.Follower
    assert r.term == 0
    assert r.leader_id == INVALID_ID


def test_leader_bcast_beat() -> None:
    """Raft paper §5.2: on a heartbeat tick the leader sends empty heartbeats to every follower."""
    hi = 1
    r = new_test_raft(1, [1, 2, 3], 10, hi)
    r.become_candidate()
    r.become_leader()
    for i in range(10):
        r.append_entry([empty_entry(0, i + 1)])
    for _ in range(hi):
        r.tick()

    msgs = by_to(read_messages(r))
    want = [
        Message(msg_type=MT.MsgHeartbeat, from_=1, to=2, term=1, commit=0),
        Message(msg_type=MT.MsgHeartbeat, from_=1, to=3, term=1, commit=0),
    ]
    assert msgs == want


def _check_nonleader_start_election(state: StateRole) -> None:
    et = 10
    r = new_test_raft(1, [1, 2, 3], et, 1)
    if state == StateRole.Follower:
        r.become_follower(1, 2)
    else:
        r.become_candidate()

    for _ in range(1, 2 * et):
        r.tick()

    assert r.term == 2
    assert r.state == StateRole.Candidate
    assert r.prs().votes[r.id] is True
    msgs = by_to(read_messages(r))
    want = [
        Message(msg_type=MT.MsgRequestVote, from_=1, to=2, term=2),
        Message(msg_type=MT.MsgRequestVote, from_=1, to=3, term=2),
    ]
    assert msgs == want


def test_follower_start_election() -> None:
    """Raft paper §5.2: a follower hearing nothing for an election timeout becomes candidate,
    increments its term, votes for itself and sends RequestVote to every other server."""
    _check_nonleader_start_election(StateRole.Follower)


def test_candidate_start_new_election() -> None:
    """Raft paper §5.2: a candidate that neither wins nor loses times out and starts a new
    election with a higher term."""
    _check_nonleader_start_election(StateRole.Candidate)


@pytest.mark.parametrize(
    ("size", "votes", "state"),
    [
        # Wins with a majority of votes.
        (1, {}, StateRole.Leader),
        (3, {2: True, 3: True}, StateRole.Leader),
        (3, {2: True}, StateRole.Leader),
        (5, {2: True, 3: True, 4: True, 5: True}, StateRole.Leader),
        (5, {2: True, 3: True, 4: True}, StateRole.Leader),
        (5, {2: True, 3: True}, StateRole.Leader),
        # Returns to follower when a majority refuses.
        (3, {2: False, 3: False}, StateRole.Follower),
        (5, {2: False, 3: False, 4: False, 5: False}, StateRole.Follower),
        (5, {2: True, 3: False, 4: False, 5: False}, StateRole.Follower),
        # Stays candidate without a majority either way.
        (3, {}, StateRole.Candidate),
        (5, {2: True}, StateRole.Candidate),
        (5, {2: False, 3: False}, StateRole.Candidate),
        (5, {}, StateRole.Candidate),
    ],
)
def test_leader_election_in_one_round_rpc(
    size: int, votes: dict[int, bool], state: StateRole
) -> None:
    """Raft paper §5.2: one round of RequestVote either wins, loses or leaves the outcome open."""
    r = new_test_raft(1, list(range(1, size + 1)), 10, 1)
    r.step(new_message(1, 1, MT.MsgHup))
    for id, vote in votes.items():
        m = new_message(id, 1, MT.MsgRequestVoteResponse)
        m.term = r.term
        m.reject = not vote
        r.step(m)
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize(
    ("vote", "nvote", "wreject"),
    [
        (INVALID_ID, 1, False),
        (INVALID_ID, 2, False),
        (1, 1, False),
        (2, 2, False),
        (1, 2, True),
        (2, 1, True),
    ],
)
def test_follower_vote(vote: int, nvote: int, wreject: bool) -> None:
    """Raft paper §5.2: a follower votes for at most one candidate per term, first come first
    served."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.load_state(hard_state(1, 0, vote))

    m = new_message(nvote, 1, MT.MsgRequestVote)
    m.term = 1
    r.step(m)

    want = Message(msg_type=MT.MsgRequestVoteResponse, from_=1, to=nvote, term=1, reject=wreject)
    assert read_messages(r) == [want]


@pytest.mark.parametrize("term", [2, 3])
def test_candidate_fallback(term: int) -> None:
    """Raft paper §5.2: a candidate receiving AppendEntries from a leader whose term is at least
    its own recognises that leader and returns to follower."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.step(new_message(1, 1, MT.MsgHup))
    assert r.state == StateRole.Candidate

    m = new_message(2, 1, MT.MsgAppend)
    m.term = term
    r.step(m)

    assert r.state == StateRole.Follower
    assert r.term == term
    assert r.leader_id == 2


def _check_non_leader_election_timeout_randomized(state: StateRole, seed: int) -> None:
    et = 10
    store = MemStorage.new_with_conf_state(([1, 2, 3], []))
    r = new_test_raft_with_config(new_test_config(1, et, 1), store, rng=random.Random(seed))
    timeouts: set[int] = set()
    for _ in range(1000 * et):
        if state == StateRole.Follower:
            r.become_follower(r.term + 1, 2)
        else:
            r.become_candidate()
        time = 0
        while not read_messages(r):
            r.tick()
            time += 1
        timeouts.add(time)

    assert et - 1 <= len(timeouts) <= et
    assert all(et <= t < 2 * et for t in timeouts)
    for d in range(et + 1, 2 * et):
        assert d in timeouts


def test_follower_election_timeout_randomized() -> None:
    """Raft paper §5.2: a follower's election timeout is drawn at random from [et, 2et)."""
    _check_non_leader_election_timeout_randomized(StateRole.Follower, seed=1)


def test_candidate_election_timeout_randomized() -> None:
    """Raft paper §5.2: a candidate's election timeout is drawn at random from [et, 2et)."""
    _check_non_leader_election_timeout_randomized(StateRole.Candidate, seed=2)


def _check_nonleaders_election_timeout_nonconflict(state: StateRole, seed: int) -> None:
    et = 10
    size = 5
    ids = list(range(1, size + 1))
    rs = []
    for id in ids:
        store = MemStorage.new_with_conf_state((ids, []))
        rng = random.Random(seed * 100 + id)
        rs.append(new_test_raft_with_config(new_test_config(id, et, 1), store, rng=rng))

    conflicts = 0
    for _ in range(1000):
        for r in rs:
            if state == StateRole.Follower:
                r.become_follower(r.term + 1, INVALID_ID)
            else:
                r.become_candidate()
        timeout_num = 0
        while timeout_num == 0:
            for r in rs:
                r.tick()
                if read_messages(r):
                    timeout_num += 1
        # Several nodes timing out on the same tick is a conflict.
        if timeout_num > 1:
            conflicts += 1

    assert conflicts / 1000 <= 0.3


def test_follower_election_timeout_nonconflict() -> None:
    """Raft paper §5.2: randomized timeouts make it rare that several followers time out at
    once (at most 30% of rounds among 5 nodes)."""
    _check_nonleaders_election_timeout_nonconflict(StateRole.Follower, seed=3)


def test_candidates_election_timeout_nonconf() -> None:
    """Raft paper §5.2: randomized timeouts make it rare that several candidates time out at
    once (at most 30% of rounds among 5 nodes)."""
    _check_nonleaders_election_timeout_nonconflict(StateRole.Candidate, seed=4)


# ---------------------------------------------------------------------------
# §5.3 log replication


def test_leader_start_replication() -> None:
    """Raft paper §5.3: the leader appends a proposal to its log and sends AppendEntries with the
    preceding entry's index and term to every follower; the entry awaits stable storage."""
    s = new_storage()
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()

    r.step(new_message(1, 1, MT.MsgPropose, 1))

    assert r.raft_log.last_index() == li + 1
    assert r.raft_log.committed == li
    msgs = by_to(read_messages(r))
    wents = [new_entry(1, li + 1, SOME_DATA)]
    want = [
        Message(
            msg_type=MT.MsgAppend,
            from_=1,
            to=to,
            term=1,
            index=li,
            log_term=1,
            commit=li,
            entries=list(wents),
        )
        for to in (2, 3)
    ]
    assert msgs == want
    assert list(r.raft_log.unstable_entries()) == wents


def test_leader_commit_entry() -> None:
    """Raft paper §5.3: once an entry is replicated on a majority the leader commits it, hands it
    out for applying, and tells followers the new commit index in later AppendEntries."""
    s = new_storage()
    r = new_test_raft(1, [1, 2, 3], 10, 1, s)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)

    for m in read_messages(r):
        r.step(accept_and_reply(m))

    assert r.raft_log.committed == li + 1
    assert r.raft_log.next_entries() == [new_entry(1, li + 1, SOME_DATA)]
    msgs = by_to(read_messages(r))
    assert [m.to for m in msgs] == [2, 3]
    for m in msgs:
        assert m.msg_type == MT.MsgAppend
        assert m.commit == li + 1


@pytest.mark.parametrize(
    ("size", "acceptors", "wack"),
    [
        (1, set(), True),
        (3, set(), False),
        (3, {2}, True),
        (3, {2, 3}, True),
        (5, set(), False),
        (5, {2}, False),
        (5, {2, 3}, True),
        (5, {2, 3, 4}, True),
        (5, {2, 3, 4, 5}, True),
    ],
)
def test_leader_acknowledge_commit(size: int, acceptors: set[int], wack: bool) -> None:
    """Raft paper §5.3: an entry is committed once its leader replicated it on a majority
    (the leader itself included)."""
    s = new_storage()
    r = new_test_raft(1, list(range(1, size + 1)), 10, 1, s)
    r.become_candidate()
    r.become_leader()
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)

    for m in read_messages(r):
        if m.to in acceptors:
            r.step(accept_and_reply(m))

    assert (r.raft_log.committed > li) == wack


@pytest.mark.parametrize(
    "prior",
    [
        [],
        [empty_entry(2, 1)],
        [empty_entry(1, 1), empty_entry(2, 2)],
        [empty_entry(1, 1)],
    ],
)
def test_leader_commit_preceding_entries(prior: list[Entry]) -> None:
    """Raft paper §5.3: committing an entry commits every preceding entry, including those of
    earlier leaders, and they are applied in log order."""
    r = new_raft_with_entries(1, [1, 2, 3], [Entry(term=e.term, index=e.index) for e in prior])
    r.load_state(hard_state(2, 0, 0))
    r.become_candidate()
    r.become_leader()

    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)
    for m in read_messages(r):
        r.step(accept_and_reply(m))

    li = len(prior)
    want = [*prior, empty_entry(3, li + 1), new_entry(3, li + 2, SOME_DATA)]
    assert r.raft_log.next_entries() == want


@pytest.mark.parametrize(
    ("ents", "commit"),
    [
        ([new_entry(1, 1, SOME_DATA)], 1),
        ([new_entry(1, 1, SOME_DATA), new_entry(1, 2, b"somedata2")], 2),
        ([new_entry(1, 1, b"somedata2"), new_entry(1, 2, SOME_DATA)], 2),
        ([new_entry(1, 1, SOME_DATA), new_entry(1, 2, b"somedata2")], 1),
    ],
)
def test_follower_commit_entry(ents: list[Entry], commit: int) -> None:
    """Raft paper §5.3: a follower that learns an entry is committed applies it, in log order."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    r.become_follower(1, 2)

    m = new_message(2, 1, MT.MsgAppend)
    m.term = 1
    m.commit = commit
    m.entries = [Entry(term=e.term, index=e.index, data=e.data) for e in ents]
    r.step(m)
    persist(r)

    assert r.raft_log.committed == commit
    assert r.raft_log.next_entries() == ents[:commit]


_CHECK_ENTS = [empty_entry(1, 1), empty_entry(2, 2)]


@pytest.mark.parametrize(
    ("log_term", "index", "windex", "wcommit", "wreject", "wreject_hint", "wlog_term"),
    [
        # Matches a committed entry.
        (0, 0, 1, 1, False, 0, 0),
        (1, 1, 1, 1, False, 0, 0),
        # Matches an uncommitted entry.
        (2, 2, 2, 1, False, 0, 0),
        # Mismatches an existing entry.
        (1, 2, 2, 1, True, 1, 1),
        # Refers to an entry the follower does not have.
        (3, 3, 3, 1, True, 2, 2),
    ],
)
def test_follower_check_msg_append(
    log_term: int,
    index: int,
    windex: int,
    wcommit: int,
    wreject: bool,
    wreject_hint: int,
    wlog_term: int,
) -> None:
    """Raft paper §5.3: a follower refuses AppendEntries whose preceding (index, term) it does not
    hold, with a hint, and accepts it otherwise."""
    r = new_raft_with_entries(
        1, [1, 2, 3], [Entry(term=e.term, index=e.index) for e in _CHECK_ENTS]
    )
    r.load_state(hard_state(0, 1, 0))
    r.become_follower(2, 2)

    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    m.log_term = log_term
    m.index = index
    r.step(m)

    want = Message(
        msg_type=MT.MsgAppendResponse, from_=1, to=2, term=2, index=windex, commit=wcommit
    )
    if wreject:
        want.reject = True
        want.reject_hint = wreject_hint
        want.log_term = wlog_term
    assert read_messages(r) == [want]


@pytest.mark.parametrize(
    ("index", "log_term", "ents", "wents", "wunstable"),
    [
        (
            2,
            2,
            [empty_entry(3, 3)],
            [empty_entry(1, 1), empty_entry(2, 2), empty_entry(3, 3)],
            [empty_entry(3, 3)],
        ),
        (
            1,
            1,
            [empty_entry(3, 2), empty_entry(4, 3)],
            [empty_entry(1, 1), empty_entry(3, 2), empty_entry(4, 3)],
            [empty_entry(3, 2), empty_entry(4, 3)],
        ),
        (0, 0, [empty_entry(1, 1)], [empty_entry(1, 1), empty_entry(2, 2)], []),
        (0, 0, [empty_entry(3, 1)], [empty_entry(3, 1)], [empty_entry(3, 1)]),
    ],
)
def test_follower_append_entries(
    index: int, log_term: int, ents: list[Entry], wents: list[Entry], wunstable: list[Entry]
) -> None:
    """Raft paper §5.3: a valid AppendEntries deletes the first conflicting entry and everything
    after it, and appends the new entries (which then await stable storage)."""
    r = new_raft_with_entries(1, [1, 2, 3], [empty_entry(1, 1), empty_entry(2, 2)])
    r.become_follower(2, 2)

    m = new_message(2, 1, MT.MsgAppend)
    m.term = 2
    m.log_term = log_term
    m.index = index
    m.entries = [Entry(term=e.term, index=e.index) for e in ents]
    r.step(m)

    assert r.raft_log.all_entries() == wents
    assert list(r.raft_log.unstable_entries()) == wunstable


def _log(*terms: int) -> list[Entry]:
    """Entries with the given terms at indexes 1, 2, ..."""
    return [empty_entry(t, i) for i, t in enumerate(terms, 1)]


@pytest.mark.parametrize(
    "follower_log",
    [
        # Figure 7 (a)-(f).
        _log(1, 1, 1, 4, 4, 5, 5, 6, 6),
        _log(1, 1, 1, 4),
        _log(1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6),
        _log(1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7),
        _log(1, 1, 1, 4, 4, 4, 4),
        _log(1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),
    ],
    ids=["a", "b", "c", "d", "e", "f"],
)
def test_leader_sync_follower_log(follower_log: list[Entry]) -> None:
    """Raft paper §5.3 (Figure 7): a leader brings any follower's log, missing or extra entries
    alike, into agreement with its own."""
    term = 8
    lead = new_raft_with_entries(1, [1, 2, 3], _log(1, 1, 1, 4, 4, 5, 5, 6, 6, 6))
    lead.load_state(hard_state(term, lead.raft_log.last_index(), 0))
    follower = new_raft_with_entries(2, [1, 2, 3], follower_log)
    follower.load_state(hard_state(term - 1, 0, 0))

    # Three nodes: the follower may have the longer log, so node 1 needs node 3's vote.
    n = Network([lead, follower, NOP_STEPPER])
    n.send([new_message(1, 1, MT.MsgHup)])
    # The election runs at the term after the loaded one.
    m = new_message(3, 1, MT.MsgRequestVoteResponse)
    m.term = term + 1
    n.send([m])
    assert n.raft(1).state == StateRole.Leader

    m = new_message(1, 1, MT.MsgPropose)
    m.entries = [Entry()]
    n.send([m])
    assert ltoa(n.raft(1).raft_log) == ltoa(n.raft(2).raft_log)
    assert n.raft(2).raft_log.last_index() == 12
    assert n.raft(2).raft_log.term(12) == term + 1


# ---------------------------------------------------------------------------
# §5.4 safety


@pytest.mark.parametrize(
    ("ents", "wterm"),
    [
        ([empty_entry(1, 1)], 2),
        ([empty_entry(1, 1), empty_entry(2, 2)], 3),
    ],
)
def test_vote_request(ents: list[Entry], wterm: int) -> None:
    """Raft paper §5.4.1: RequestVote carries the candidate's term and last log index/term, and
    goes to every other server."""
    r = new_test_raft(1, [1, 2, 3], 10, 1)
    m = new_message(2, 1, MT.MsgAppend)
    m.term = wterm - 1
    m.log_term = 0
    m.index = 0
    m.entries = [Entry(term=e.term, index=e.index) for e in ents]
    r.step(m)
    read_messages(r)

    for _ in range(1, r.election_timeout() * 2):
        r.tick_election()

    msgs = by_to(read_messages(r))
    assert len(msgs) == 2
    for i, m in enumerate(msgs):
        assert m.msg_type == MT.MsgRequestVote
        assert m.to == i + 2
        assert m.term == wterm
        assert m.index == ents[-1].index
        assert m.log_term == ents[-1].term


@pytest.mark.parametrize(
    ("ents", "log_term", "index", "wreject"),
    [
        # Same last term: the longer log wins.
        ([empty_entry(1, 1)], 1, 1, False),
        ([empty_entry(1, 1)], 1, 2, False),
        ([empty_entry(1, 1), empty_entry(1, 2)], 1, 1, True),
        # The candidate's last term is higher.
        ([empty_entry(1, 1)], 2, 1, False),
        ([empty_entry(1, 1)], 2, 2, False),
        ([empty_entry(1, 1), empty_entry(1, 2)], 2, 1, False),
        # The voter's last term is higher.
        ([empty_entry(2, 1)], 1, 1, True),
        ([empty_entry(2, 1)], 1, 2, True),
        ([empty_entry(2, 1), empty_entry(1, 2)], 1, 1, True),
    ],
)
def test_voter(ents: list[Entry], log_term: int, index: int, wreject: bool) -> None:
    """Raft paper §5.4.1: a voter denies its vote to a candidate whose log is less up to date
    (compare last terms, then lengths)."""
    r = new_raft_with_entries(1, [1, 2], [Entry(term=e.term, index=e.index) for e in ents])

    m = new_message(2, 1, MT.MsgRequestVote)
    m.term = 3
    m.log_term = log_term
    m.index = index
    r.step(m)

    msgs = read_messages(r)
    assert len(msgs) == 1
    assert msgs[0].msg_type == MT.MsgRequestVoteResponse
    assert msgs[0].reject == wreject


@pytest.mark.parametrize(
    ("index", "wcommit"),
    [
        # Entries of earlier terms are not committed by counting replicas...
        (1, 0),
        (2, 0),
        # ...entries of the current term are.
        (3, 3),
    ],
)
def test_leader_only_commits_log_from_current_term(index: int, wcommit: int) -> None:
    """Raft paper §5.4.2: a leader commits by counting replicas only entries of its own term."""
    r = new_raft_with_entries(1, [1, 2], [empty_entry(1, 1), empty_entry(2, 2)])
    r.load_state(hard_state(2, 0, 0))
    # Leader at term 3.
    r.become_candidate()
    r.become_leader()
    read_messages(r)

    r.step(new_message(1, 1, MT.MsgPropose, 1))
    persist(r)

    m = new_message(2, 1, MT.MsgAppendResponse)
    m.term = r.term
    m.index = index
    r.step(m)
    assert r.raft_log.committed == wcommit
