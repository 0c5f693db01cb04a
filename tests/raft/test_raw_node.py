# Covers raft-rs harness/tests/integration_cases/test_raw_node.rs (all 27 between this
# file and test_raw_node_persistence.py, which holds the apply and persistence scenarios):
#   test_raw_node_step, test_raw_node_read_index_to_old_leader,
#   test_raw_node_propose_and_conf_change, test_raw_node_joint_auto_leave,
#   test_raw_node_propose_add_duplicate_node, test_raw_node_propose_add_learner_node,
#   test_raw_node_read_index, test_raw_node_start, test_raw_node_restart,
#   test_raw_node_restart_from_snapshot, test_skip_bcast_commit, test_set_priority,
#   test_bounded_uncommitted_entries_growth_with_partition, test_raw_node_with_async_entries,
#   test_raw_node_with_async_entries_to_removed_node, test_raw_node_with_async_entries_on_follower,
#   test_raw_node_async_entries_with_leader_change, test_raw_node_with_async_apply,
#   test_raw_node_entries_after_snapshot, test_raw_node_overwrite_entries, test_async_ready_leader,
#   test_async_ready_follower, test_async_ready_become_leader, test_async_ready_multiple_snapshot,
#   test_committed_entries_pagination, test_committed_entries_pagination_after_restart,
#   test_disable_proposal_forwarding.
# Skipped: none. Differences from raft-rs: conf-change entry data is compared against
# multiraft.raft.confchange_codec encodings (not protobuf); test_raw_node_with_async_apply
# draws its proposal counts from a seeded RNG.
# Own addition here: test_on_entries_fetched_ignores_async_empty_context.
"""RawNode: Ready/LightReady semantics, async persistence, conf changes, reads, restarts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from multiraft.raft.confchange_codec import (
    decode_conf_change,
    decode_conf_change_v2,
    encode_conf_change,
    encode_conf_change_v2,
)
from multiraft.raft.config import Config
from multiraft.raft.errors import ProposalDropped, RaftError, RaftFatal, StepLocalMsg
from multiraft.raft.raw_node import RawNode
from multiraft.raft.storage import GetEntriesContext, MemStorage
from multiraft.raft.testing import (
    SOME_DATA,
    Network,
    conf_change_v2,
    conf_state,
    conf_state_v2,
    empty_entry,
    hard_state,
    new_entry,
    new_message,
    new_message_with_entries,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_raft,
    new_test_raft_with_config,
    remove_node,
    soft_state,
)
from multiraft.raft.types import (
    NO_LIMIT,
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ReadState,
    StateRole,
    is_local_msg,
    new_conf_change_single,
)
from tests.raft.raw_node_support import (
    apply_conf_changes,
    become_leader_via_ready,
    conf_change,
    must_cmp_ready,
    new_raw_node,
    new_raw_node_with_config,
)

MT = MessageType


# ---------------------------------------------------------------------------


def test_raw_node_step() -> None:
    """RawNode.step refuses every local message type with StepLocalMsg."""
    for msg_t in MessageType:
        raw_node = new_raw_node(1, [1], 10, 1, new_storage())
        m = new_message(0, 0, msg_t, 0)
        if is_local_msg(msg_t):
            with pytest.raises(StepLocalMsg):
                raw_node.step(m)
        else:
            try:
                raw_node.step(m)
            except StepLocalMsg:  # pragma: no cover - the failure being tested for
                pytest.fail(f"{msg_t!r} is not local")
            except RaftError:
                pass


def test_raw_node_read_index_to_old_leader() -> None:
    """Followers forward MsgReadIndex with term 0 and the original from; an old leader re-forwards."""
    r1 = new_test_raft(1, [1, 2, 3], 10, 1, new_storage())
    r2 = new_test_raft(2, [1, 2, 3], 10, 1, new_storage())
    r3 = new_test_raft(3, [1, 2, 3], 10, 1, new_storage())
    nt = Network([r1, r2, r3])

    nt.send([new_message(1, 1, MT.MsgHup, 0)])

    test_entries = Entry(data=b"testdata")

    r2.step(new_message_with_entries(2, 2, MT.MsgReadIndex, [test_entries]))
    assert len(r2.msgs) == 1
    read_index_msg1 = new_message_with_entries(2, 1, MT.MsgReadIndex, [test_entries])
    assert r2.msgs[0] == read_index_msg1

    r3.step(new_message_with_entries(3, 3, MT.MsgReadIndex, [test_entries]))
    assert len(r3.msgs) == 1
    read_index_msg2 = new_message_with_entries(3, 1, MT.MsgReadIndex, [test_entries])
    assert r3.msgs[0] == read_index_msg2

    # Elect 3; then 1 (now a follower) steps the two requests it was sent.
    nt.send([new_message(3, 3, MT.MsgHup, 0)])
    r1.step(read_index_msg1)
    r1.step(read_index_msg2)

    assert len(r1.msgs) == 2
    assert r1.msgs[0] == new_message_with_entries(2, 3, MT.MsgReadIndex, [test_entries])
    assert r1.msgs[1] == new_message_with_entries(3, 3, MT.MsgReadIndex, [test_entries])


def _v2(
    changes: Sequence[tuple[int, ConfChangeType]],
    transition: ConfChangeTransition = ConfChangeTransition.Auto,
) -> ConfChangeV2:
    cc = conf_change_v2([new_conf_change_single(id, t) for id, t in changes])
    cc.transition = transition
    return cc


_ADD, _LEARNER = ConfChangeType.AddNode, ConfChangeType.AddLearnerNode
_DEMOTE_AND_ADD = [(2, _ADD), (1, _LEARNER), (3, _LEARNER)]

PROPOSE_AND_CONF_CHANGE_CASES = [
    pytest.param(conf_change(_ADD, 2), conf_state([1, 2], []), None, id="v1"),
    pytest.param(_v2([(2, _ADD)]), conf_state([1, 2], []), None, id="v2-simple"),
    pytest.param(_v2([(2, _LEARNER)]), conf_state([1], [2]), None, id="v2-learner"),
    pytest.param(
        _v2([(2, _LEARNER)], ConfChangeTransition.Explicit),
        conf_state_v2([1], [2], [1], [], False),
        conf_state([1], [2]),
        id="explicit",
    ),
    pytest.param(
        _v2([(2, _LEARNER)], ConfChangeTransition.Implicit),
        conf_state_v2([1], [2], [1], [], True),
        conf_state([1], [2]),
        id="implicit",
    ),
    pytest.param(
        _v2(_DEMOTE_AND_ADD),
        conf_state_v2([2], [3], [1], [1], True),
        conf_state([2], [1, 3]),
        id="demote-auto",
    ),
    pytest.param(
        _v2(_DEMOTE_AND_ADD, ConfChangeTransition.Explicit),
        conf_state_v2([2], [3], [1], [1], False),
        conf_state([2], [1, 3]),
        id="demote-explicit",
    ),
    pytest.param(
        _v2(_DEMOTE_AND_ADD, ConfChangeTransition.Implicit),
        conf_state_v2([2], [3], [1], [1], True),
        conf_state([2], [1, 3]),
        id="demote-implicit",
    ),
]


@pytest.mark.parametrize(("cc", "exp", "exp2"), PROPOSE_AND_CONF_CHANGE_CASES)
def test_raw_node_propose_and_conf_change(
    cc: ConfChange | ConfChangeV2, exp: ConfState, exp2: ConfState | None
) -> None:
    """A proposed conf change is stored bit-exact, applies, and joint configs are left (auto or manual)."""
    s = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, s)
    raw_node.campaign()
    proposed = False
    ccdata = b""
    cs: ConfState | None = None
    while cs is None:
        rd = raw_node.ready()
        s.append(rd.entries)
        cs = apply_conf_changes(raw_node, rd.committed_entries) or cs
        is_leader = rd.ss is not None and rd.ss.leader_id == raw_node.raft.id
        light = raw_node.advance(rd)
        cs = apply_conf_changes(raw_node, light.committed_entries) or cs
        raw_node.advance_apply()

        if not proposed and is_leader:
            raw_node.propose(b"", SOME_DATA)
            v1 = cc.as_v1()
            if v1 is not None:
                ccdata = encode_conf_change(v1)
                raw_node.propose_conf_change(b"", v1)
            else:
                ccdata = encode_conf_change_v2(cc.as_v2())
                raw_node.propose_conf_change(b"", cc.as_v2())
            proposed = True

    # The stored log ends with the command and the conf change, down to the bytes.
    last_index = s.last_index()
    entries = s.entries(last_index - 1, last_index + 1, NO_LIMIT, GetEntriesContext.empty(False))
    assert len(entries) == 2
    assert entries[0].data == SOME_DATA
    if cc.as_v1() is not None:
        assert entries[1].entry_type == EntryType.EntryConfChange
    else:
        assert entries[1].entry_type == EntryType.EntryConfChangeV2
    assert entries[1].data == ccdata
    assert cs == exp

    # An auto-leaving joint change has already appended (unstably) the leave entry.
    conf_index = last_index + 1 if cc.as_v2().enter_joint() is True else last_index
    assert raw_node.raft.pending_conf_index == conf_index

    rd = raw_node.ready()
    context = b""
    if not exp.auto_leave:
        assert rd.entries == []
        if exp2 is None:
            return
        context = b"manual"
        leave = conf_change_v2([])
        leave.context = context
        raw_node.propose_conf_change(b"", leave)
        rd = raw_node.ready()
    assert len(rd.entries) == 1
    assert rd.entries[0].entry_type == EntryType.EntryConfChangeV2
    if not context:
        assert rd.entries[0].data == b""
    leave_cc = decode_conf_change_v2(rd.entries[0].data)
    assert leave_cc.context == context
    # Pretend the leave applied (it cannot commit alone under a joint quorum... of one node here).
    assert raw_node.apply_conf_change(leave_cc) == exp2


def test_raw_node_joint_auto_leave() -> None:
    """A leader that loses leadership while applying a joint change does not auto-leave;
    once re-elected it appends the empty leave entry."""
    test_cc = _v2([(2, _LEARNER)], ConfChangeTransition.Implicit)
    exp_cs = conf_state_v2([1], [2], [1], [], True)
    exp_cs2 = conf_state([1], [2])

    s = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, s)
    raw_node.campaign()
    proposed = False
    ccdata = encode_conf_change_v2(test_cc)
    cs: ConfState | None = None

    def handle_committed(rn: RawNode, committed: Sequence[Entry]) -> ConfState | None:
        out = None
        for e in committed:
            if e.entry_type == EntryType.EntryConfChangeV2:
                cc = decode_conf_change_v2(e.data)
                # Force a step-down just before applying.
                msg = new_message(1, 1, MT.MsgHeartbeatResponse, 0)
                msg.term = rn.raft.term + 1
                rn.step(msg)
                out = rn.apply_conf_change(cc)
        return out

    while cs is None:
        rd = raw_node.ready()
        s.append(rd.entries)
        cs = handle_committed(raw_node, rd.committed_entries) or cs
        is_leader = rd.ss is not None and rd.ss.leader_id == raw_node.raft.id
        light = raw_node.advance(rd)
        cs = handle_committed(raw_node, light.committed_entries) or cs
        raw_node.advance_apply()
        if not proposed and is_leader:
            raw_node.propose(b"", SOME_DATA)
            raw_node.propose_conf_change(b"", test_cc)
            proposed = True

    last_index = s.last_index()
    entries = s.entries(last_index - 1, last_index + 1, NO_LIMIT, GetEntriesContext.empty(False))
    assert len(entries) == 2
    assert entries[0].data == SOME_DATA
    assert entries[1].entry_type == EntryType.EntryConfChangeV2
    assert entries[1].data == ccdata
    assert cs == exp_cs
    assert raw_node.raft.pending_conf_index == 0

    # A follower does not leave the joint state.
    rd = raw_node.ready()
    assert rd.entries == []
    raw_node.advance(rd)

    # Leader again: it leaves automatically once its apply index moves.
    raw_node.campaign()
    rd = raw_node.ready()
    s.append(rd.entries)
    raw_node.advance(rd)

    rd = raw_node.ready()
    s.append(rd.entries)
    assert len(rd.entries) == 1
    assert rd.entries[0].entry_type == EntryType.EntryConfChangeV2
    assert rd.entries[0].data == b""
    leave_cc = decode_conf_change_v2(rd.entries[0].data)
    assert leave_cc.context == b""
    assert raw_node.apply_conf_change(leave_cc) == exp_cs2


def test_raw_node_propose_add_duplicate_node() -> None:
    """Adding an existing node again is harmless; a later AddNode still applies."""
    s = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, s)
    become_leader_via_ready(raw_node, s)

    def propose_conf_change_and_apply(cc: ConfChange) -> None:
        raw_node.propose_conf_change(b"", cc)
        rd = raw_node.ready()
        s.append(rd.entries)
        apply_conf_changes(raw_node, rd.committed_entries)
        light = raw_node.advance(rd)
        apply_conf_changes(raw_node, light.committed_entries)
        raw_node.advance_apply()

    cc1 = conf_change(ConfChangeType.AddNode, 1)
    ccdata1 = encode_conf_change(cc1)
    propose_conf_change_and_apply(cc1)
    propose_conf_change_and_apply(cc1)
    cc2 = conf_change(ConfChangeType.AddNode, 2)
    ccdata2 = encode_conf_change(cc2)
    propose_conf_change_and_apply(cc2)

    last_index = s.last_index()
    entries = s.entries(last_index - 2, last_index + 1, None, GetEntriesContext.empty(False))
    assert len(entries) == 3
    assert entries[0].data == ccdata1
    assert entries[1].data == ccdata1
    assert entries[2].data == ccdata2
    assert set(raw_node.raft.prs().conf().voters.ids()) == {1, 2}


def test_raw_node_propose_add_learner_node() -> None:
    s = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, s)
    rd = raw_node.ready()
    must_cmp_ready(rd, None, None, [], [], None, True, True, False)
    raw_node.advance(rd)

    become_leader_via_ready(raw_node, s)

    raw_node.propose_conf_change(b"", conf_change(ConfChangeType.AddLearnerNode, 2))
    rd = raw_node.ready()
    s.append(rd.entries)
    light = raw_node.advance(rd)
    assert len(light.committed_entries) == 1, "should commit the conf change entry"
    e = light.committed_entries[0]
    assert e.entry_type == EntryType.EntryConfChange
    cs = raw_node.apply_conf_change(decode_conf_change(e.data))
    assert cs.voters == [1]
    assert cs.learners == [2]


def test_raw_node_read_index() -> None:
    """A single-node leader answers read_index with a ReadState in the next Ready."""
    wrequest_ctx = SOME_DATA
    wrs = [ReadState(index=2, request_ctx=wrequest_ctx)]

    s = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, s)
    become_leader_via_ready(raw_node, s)
    raw_node.read_index(wrequest_ctx)

    assert raw_node.raft.read_states
    assert raw_node.has_ready()
    rd = raw_node.ready()
    assert rd.read_states == wrs
    s.append(rd.entries)
    raw_node.advance(rd)

    assert not raw_node.has_ready()
    assert raw_node.raft.read_states == []


def test_raw_node_start() -> None:
    store = new_storage()
    raw_node = new_raw_node(1, [1], 10, 1, store)

    rd = raw_node.ready()
    must_cmp_ready(rd, None, None, [], [], None, True, True, False)
    raw_node.advance(rd)

    raw_node.campaign()
    rd = raw_node.ready()
    must_cmp_ready(
        rd,
        soft_state(1, StateRole.Leader),
        hard_state(2, 1, 1),
        [new_entry(2, 2)],
        [],
        None,
        True,
        True,
        True,
    )
    store.append(rd.entries)
    light = raw_node.advance(rd)
    assert light.commit_index == 2
    assert light.committed_entries == [new_entry(2, 2)]
    assert not raw_node.has_ready()

    raw_node.propose(b"", SOME_DATA)
    rd = raw_node.ready()
    must_cmp_ready(rd, None, None, [new_entry(2, 3, SOME_DATA)], [], None, True, True, True)
    store.append(rd.entries)
    light = raw_node.advance(rd)
    assert light.commit_index == 3
    assert light.committed_entries == [new_entry(2, 3, SOME_DATA)]
    assert not raw_node.has_ready()


def test_raw_node_restart() -> None:
    entries = [empty_entry(1, 1), new_entry(1, 2, b"foo")]
    store = new_storage()
    store.set_hardstate(hard_state(1, 1, 0))
    store.append(entries)
    raw_node = new_raw_node(1, [], 10, 1, store)

    rd = raw_node.ready()
    must_cmp_ready(rd, None, None, [], entries[:1], None, True, True, False)
    raw_node.advance(rd)
    assert not raw_node.has_ready()


def test_raw_node_restart_from_snapshot() -> None:
    snap = new_snapshot(2, 1, [1, 2])
    entries = [new_entry(1, 3, b"foo")]
    store = new_storage()
    store.apply_snapshot(snap)
    store.append(entries)
    store.set_hardstate(hard_state(1, 3, 0))
    raw_node = RawNode(new_test_config(1, 10, 1), store)

    rd = raw_node.ready()
    must_cmp_ready(rd, None, None, [], entries, None, True, True, False)
    raw_node.advance(rd)
    assert not raw_node.has_ready()


def test_skip_bcast_commit() -> None:
    """With skip_bcast_commit followers learn the commit index only from the next append or
    heartbeat; the flag toggles at run time; a pending conf change forces the broadcast."""
    config = new_test_config(1, 10, 1)
    config.skip_bcast_commit = True
    r1 = new_test_raft_with_config(config, MemStorage.new_with_conf_state(ConfState([1, 2, 3])))
    r2 = new_test_raft(2, [1, 2, 3], 10, 1, new_storage())
    r3 = new_test_raft(3, [1, 2, 3], 10, 1, new_storage())
    nt = Network([r1, r2, r3])

    nt.send([new_message(1, 1, MT.MsgHup, 0)])

    msg = new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"testdata")])
    nt.send([msg])
    assert [r.raft_log.committed for r in (r1, r2, r3)] == [2, 1, 1]

    # A heartbeat round tells the followers the real commit index.
    for _ in range(r1.randomized_election_timeout()):
        r1.tick()
    nt.send([new_message(1, 1, MT.MsgHup, 0)])
    assert r2.raft_log.committed == 2
    assert r3.raft_log.committed == 2

    r1.skip_bcast_commit(False)
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"testdata")])])
    assert [r.raft_log.committed for r in (r1, r2, r3)] == [3, 3, 3]

    r1.skip_bcast_commit(True)
    # A later proposal carries the commit of the former one.
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"testdata")])])
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [Entry(data=b"testdata")])])
    assert [r.raft_log.committed for r in (r1, r2, r3)] == [5, 4, 4]

    cc_entry = Entry(
        entry_type=EntryType.EntryConfChange,
        data=encode_conf_change(conf_change(ConfChangeType.RemoveNode, 3)),
    )
    nt.send([new_message_with_entries(1, 1, MT.MsgPropose, [cc_entry])])
    assert r1.should_bcast_commit()
    assert r2.should_bcast_commit()
    assert r3.should_bcast_commit()
    assert [r.raft_log.committed for r in (r1, r2, r3)] == [6, 6, 6]


def test_set_priority() -> None:
    raw_node = new_raw_node(1, [1], 10, 1, new_storage())
    for p in [0, 1, 5, 10, 10000]:
        raw_node.set_priority(p)
        assert raw_node.raft.priority == p


def test_bounded_uncommitted_entries_growth_with_partition() -> None:
    """max_uncommitted_size bounds a leader's uncommitted log: proposals are dropped until it commits."""
    config = Config(id=1, max_uncommitted_size=12)
    s = new_storage()
    raw_node = new_raw_node_with_config([1], config, s)

    raw_node.campaign()
    while True:
        rd = raw_node.ready()
        assert rd.hs is not None
        s.set_hardstate(rd.hs)
        s.append(rd.entries)
        done = rd.ss is not None and rd.ss.leader_id == raw_node.raft.leader_id
        raw_node.advance(rd)
        if done:
            break

    data = b"hello world!"
    raw_node.propose(b"", data)
    with pytest.raises(ProposalDropped):
        raw_node.propose(b"", data)

    rd = raw_node.ready()
    s.append(rd.entries)
    raw_node.advance(rd)

    raw_node.propose(b"", data)
    assert raw_node.raft.raft_log.last_index() == 4


# ---------------------------------------------------------------------------
# Asynchronous entry fetching


def new_async_entries_node() -> tuple[RawNode, MemStorage]:
    cfg = new_test_config(1, 10, 1)
    cfg.max_size_per_msg = 2048
    s = new_storage()
    return new_raw_node_with_config([1, 2], cfg, s), s


def start_async_entries(raw_node: RawNode, s: MemStorage) -> None:
    """Leader at term 2 with ten 1000-byte proposals; node 2 still probing."""
    raw_node.raft.become_candidate()
    raw_node.raft.become_leader()

    rd = raw_node.ready()
    s.append(rd.entries)
    raw_node.advance(rd)

    data = bytes([1]) * 1000
    for _ in range(10):
        raw_node.propose(b"", data)

    rd = raw_node.ready()
    assert len(rd.entries) == 10
    s.append(rd.entries)
    # A probing peer gets one MsgAppend: the no-op and the first proposal.
    assert len(rd.messages) == 1
    assert rd.messages[0].msg_type == MT.MsgAppend
    assert len(rd.messages[0].entries) == 2
    raw_node.advance_append(rd)


def make_entries_async_and_replicate(raw_node: RawNode, s: MemStorage) -> None:
    s.trigger_log_unavailable(True)
    append_response = new_message(2, 1, MT.MsgAppendResponse, 0)
    append_response.term = 2
    append_response.index = 2
    raw_node.step(append_response)


def prepare_async_entries(raw_node: RawNode, s: MemStorage) -> None:
    start_async_entries(raw_node, s)
    make_entries_async_and_replicate(raw_node, s)


def test_raw_node_with_async_entries() -> None:
    """LogTemporarilyUnavailable suppresses sends; on_entries_fetched resumes them."""
    raw_node, s = new_async_entries_node()
    prepare_async_entries(raw_node, s)

    rd = raw_node.ready()
    s.append(rd.entries)
    assert rd.messages == []
    raw_node.advance_append(rd)

    s.trigger_log_unavailable(False)
    context = s.take_get_entries_context()
    assert context is not None
    raw_node.on_entries_fetched(context)
    rd = raw_node.ready()
    s.append(rd.entries)
    assert len(rd.messages) == 5
    assert all(m.msg_type == MT.MsgAppend for m in rd.messages)
    assert len(rd.messages[0].entries) == 2
    assert [e.index for m in rd.messages for e in m.entries] == list(range(3, 13))
    raw_node.advance_append(rd)


def test_raw_node_with_async_entries_to_removed_node() -> None:
    """A fetched context for a peer removed meanwhile sends nothing."""
    raw_node, s = new_async_entries_node()
    prepare_async_entries(raw_node, s)

    raw_node.apply_conf_change(remove_node(2))

    s.trigger_log_unavailable(False)
    context = s.take_get_entries_context()
    assert context is not None
    raw_node.on_entries_fetched(context)
    rd = raw_node.ready()
    assert rd.entries == []
    assert rd.messages == []
    raw_node.advance_append(rd)


def test_raw_node_with_async_entries_on_follower() -> None:
    """A fetched context after the leader stepped down sends nothing."""
    raw_node, s = new_async_entries_node()
    prepare_async_entries(raw_node, s)

    pr = raw_node.raft.mut_prs().get_mut(2)
    assert pr is not None
    pr.recent_active = False
    raw_node.raft.step(Message(msg_type=MT.MsgCheckQuorum, to=1))
    assert raw_node.raft.state != StateRole.Leader

    s.trigger_log_unavailable(False)
    context = s.take_get_entries_context()
    assert context is not None
    raw_node.on_entries_fetched(context)
    rd = raw_node.ready()
    assert rd.entries == []
    assert rd.messages == []
    assert rd.persisted_messages == []
    raw_node.advance_append(rd)


def test_raw_node_async_entries_with_leader_change() -> None:
    """A fetched context from an older term sends nothing, even if the node leads again."""
    raw_node, s = new_async_entries_node()
    start_async_entries(raw_node, s)
    make_entries_async_and_replicate(raw_node, s)

    raw_node.raft.become_follower(raw_node.raft.term + 1, 2)
    raw_node.raft.become_candidate()
    raw_node.raft.become_leader()

    s.trigger_log_unavailable(False)
    context = s.take_get_entries_context()
    assert context is not None
    raw_node.on_entries_fetched(context)
    rd = raw_node.ready()
    assert len(rd.entries) == 1  # the new no-op
    assert rd.messages == []
    raw_node.advance_append(rd)


def test_on_entries_fetched_ignores_async_empty_context() -> None:
    """An async-capable context not issued by the core is a no-op; a sync one is a caller bug."""
    raw_node, s = new_async_entries_node()
    prepare_async_entries(raw_node, s)
    raw_node.ready()  # drain
    raw_node.on_entries_fetched(GetEntriesContext.empty(True))
    assert raw_node.raft.msgs == []
    with pytest.raises(RaftFatal):
        raw_node.on_entries_fetched(GetEntriesContext.empty(False))


