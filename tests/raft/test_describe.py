"""The canonical text forms of multiraft.raft.describe (etcd's util.go Describe*)."""

from __future__ import annotations

import doctest
from dataclasses import dataclass, field

import pytest

from multiraft.raft import describe
from multiraft.raft.confchange_codec import encode_conf_change, encode_conf_change_v2
from multiraft.raft.describe import (
    describe_conf_state,
    describe_entries,
    describe_entry,
    describe_hard_state,
    describe_message,
    describe_read_state,
    describe_ready,
    describe_snapshot,
    describe_soft_state,
    quote,
)
from multiraft.raft.types import (
    ConfChange,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateRole,
    parse_conf_change,
)

MT = MessageType


def snap(index: int, term: int, voters: list[int]) -> Snapshot:
    return Snapshot(b"state", SnapshotMetadata(ConfState(voters=voters), index, term))


def test_doctests() -> None:
    assert doctest.testmod(describe).failed == 0


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", '""'),
        (b"foo bar", '"foo bar"'),
        (b'a"b\\c', r'"a\"b\\c"'),
        (b"\n\r\t\x00\x7f\xff", r'"\n\r\t\x00\x7f\xff"'),
    ],
)
def test_quote(data: bytes, text: str) -> None:
    assert quote(data) == text


@pytest.mark.parametrize(
    ("entry", "text"),
    [
        (Entry(term=1, index=5, data=b"data"), '1/5 EntryNormal "data"'),
        (Entry(term=2, index=1), '2/1 EntryNormal ""'),  # a new leader's no-op
        (
            Entry(
                EntryType.EntryConfChange,
                1,
                2,
                encode_conf_change(ConfChange(0, ConfChangeType.AddLearnerNode, 4)),
            ),
            "1/2 EntryConfChange l4",
        ),
        (
            Entry(
                EntryType.EntryConfChangeV2,
                2,
                3,
                encode_conf_change_v2(ConfChangeV2(changes=parse_conf_change("v2 v3"))),
            ),
            "2/3 EntryConfChangeV2 v2 v3",
        ),
        (
            Entry(
                EntryType.EntryConfChangeV2,
                2,
                4,
                encode_conf_change_v2(
                    ConfChangeV2(ConfChangeTransition.Explicit, parse_conf_change("r1 l1"))
                ),
            ),
            "2/4 EntryConfChangeV2 r1 l1 transition=Explicit",
        ),
        (Entry(EntryType.EntryConfChangeV2, 2, 5), "2/5 EntryConfChangeV2"),  # leave joint
        (
            Entry(EntryType.EntryConfChange, 3, 6, b"\x02junk"),
            r'3/6 EntryConfChange <undecodable: not a v1 conf change> "\x02junk"',
        ),
    ],
)
def test_describe_entry(entry: Entry, text: str) -> None:
    assert describe_entry(entry) == text


def test_describe_entry_with_formatter() -> None:
    e = Entry(term=1, index=2, data=b"put k v")
    assert describe_entry(e, lambda data: data.decode().upper()) == "1/2 EntryNormal PUT K V"
    # A formatter renders normal entries only.
    cc = Entry(
        EntryType.EntryConfChangeV2,
        1,
        3,
        encode_conf_change_v2(ConfChangeV2(changes=parse_conf_change("v2"))),
    )
    assert describe_entry(cc, lambda data: "X") == "1/3 EntryConfChangeV2 v2"


def test_describe_entries() -> None:
    assert describe_entries([]) == ""
    ents = [Entry(term=1, index=1, data=b"a"), Entry(term=1, index=2, data=b"b")]
    assert describe_entries(ents) == '1/1 EntryNormal "a"\n1/2 EntryNormal "b"'
    assert describe_entries(ents, lambda d: d.decode()) == "1/1 EntryNormal a\n1/2 EntryNormal b"


@pytest.mark.parametrize(
    ("msg", "text"),
    [
        (
            Message(
                MT.MsgAppend,
                to=2,
                from_=1,
                term=1,
                log_term=1,
                index=3,
                commit=3,
                entries=[Entry(term=1, index=4, data=b"foo")],
            ),
            '1->2 MsgAppend Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "foo"]',
        ),
        (
            Message(
                MT.MsgAppend,
                to=2,
                from_=1,
                term=1,
                entries=[Entry(term=1, index=1), Entry(term=1, index=2, data=b"x")],
            ),
            '1->2 MsgAppend Term:1 Log:0/0 Entries:[1/1 EntryNormal "", 1/2 EntryNormal "x"]',
        ),
        (
            Message(MT.MsgAppendResponse, to=1, from_=2, term=1, index=4, commit=4),
            "2->1 MsgAppendResponse Term:1 Log:0/4 Commit:4",
        ),
        (
            Message(
                MT.MsgAppendResponse,
                to=1,
                from_=2,
                term=3,
                log_term=1,
                index=7,
                reject=True,
                reject_hint=5,
            ),
            "2->1 MsgAppendResponse Term:3 Log:1/7 Rejected (Hint: 5)",
        ),
        (
            Message(
                MT.MsgAppendResponse,
                to=1,
                from_=2,
                term=3,
                index=7,
                reject=True,
                reject_hint=5,
                request_snapshot=7,
            ),
            "2->1 MsgAppendResponse Term:3 Log:0/7 Rejected (Hint: 5) RequestSnapshot:7",
        ),
        (
            Message(
                MT.MsgRequestVote,
                to=2,
                from_=1,
                term=2,
                log_term=1,
                index=3,
                commit=3,
                context=b"CampaignTransfer",
            ),
            '1->2 MsgRequestVote Term:2 Log:1/3 Commit:3 Context:"CampaignTransfer"',
        ),
        (
            Message(MT.MsgRequestPreVote, to=3, from_=1, term=2, log_term=1, index=3, priority=5),
            "1->3 MsgRequestPreVote Term:2 Log:1/3 Priority:5",
        ),
        (
            Message(MT.MsgRequestVoteResponse, to=1, from_=2, term=2),
            "2->1 MsgRequestVoteResponse Term:2",
        ),
        (
            Message(MT.MsgRequestPreVoteResponse, to=1, from_=2, term=2, reject=True),
            "2->1 MsgRequestPreVoteResponse Term:2 Rejected (Hint: 0)",
        ),
        (
            Message(MT.MsgHeartbeat, to=2, from_=1, term=2, commit=2, context=b"ctx"),
            '1->2 MsgHeartbeat Term:2 Commit:2 Context:"ctx"',
        ),
        (
            Message(MT.MsgHeartbeatResponse, to=1, from_=2, term=2),
            "2->1 MsgHeartbeatResponse Term:2",
        ),
        (
            Message(MT.MsgSnapshot, to=3, from_=1, term=2, snapshot=snap(5, 2, [3, 1, 2])),
            "1->3 MsgSnapshot Term:2 Snapshot: Index:5 Term:2 ConfState:Voters:[1 2 3] Learners:[]",
        ),
        (
            Message(MT.MsgSnapshot, to=3, from_=1, term=2, snapshot=Snapshot()),
            "1->3 MsgSnapshot Term:2",
        ),
        (
            Message(MT.MsgReadIndex, to=1, from_=2, term=2, entries=[Entry(data=b"rctx")]),
            '2->1 MsgReadIndex Term:2 Entries:[0/0 EntryNormal "rctx"]',
        ),
        (
            Message(
                MT.MsgReadIndexResp, to=2, from_=1, term=2, index=9, entries=[Entry(data=b"rctx")]
            ),
            '1->2 MsgReadIndexResp Term:2 Index:9 Entries:[0/0 EntryNormal "rctx"]',
        ),
        (
            Message(MT.MsgPropose, to=1, from_=0, entries=[Entry(data=b"v")]),
            '0->1 MsgPropose Term:0 Entries:[0/0 EntryNormal "v"]',
        ),
        (Message(MT.MsgTimeoutNow, to=2, from_=1, term=4), "1->2 MsgTimeoutNow Term:4"),
        (Message(MT.MsgHup, to=1, from_=1), "1->1 MsgHup Term:0"),
        (
            Message(MT.MsgSnapStatus, to=1, from_=3, reject=True),
            "3->1 MsgSnapStatus Term:0 Rejected (Hint: 0)",
        ),
    ],
)
def test_describe_message(msg: Message, text: str) -> None:
    assert describe_message(msg) == text


def test_describe_message_is_a_sort_key() -> None:
    msgs = [
        Message(MT.MsgHeartbeat, to=3, from_=1, term=2),
        Message(MT.MsgAppend, to=2, from_=1, term=2),
        Message(MT.MsgAppendResponse, to=1, from_=2, term=2),
    ]
    ordered = sorted(msgs, key=describe_message)
    assert [describe_message(m) for m in ordered] == [
        "1->2 MsgAppend Term:2 Log:0/0",
        "1->3 MsgHeartbeat Term:2",
        "2->1 MsgAppendResponse Term:2 Log:0/0",
    ]
    assert sorted(reversed(msgs), key=describe_message) == ordered


def test_describe_message_with_formatter() -> None:
    m = Message(MT.MsgAppend, to=2, from_=1, term=1, entries=[Entry(term=1, index=1, data=b"x")])
    assert (
        describe_message(m, lambda d: f"<{d.decode()}>")
        == "1->2 MsgAppend Term:1 Log:0/0 Entries:[1/1 EntryNormal <x>]"
    )


@pytest.mark.parametrize(
    ("hs", "text"),
    [
        (HardState(term=2, vote=1, commit=2), "Term:2 Vote:1 Commit:2"),
        (HardState(term=3, commit=7), "Term:3 Commit:7"),
        (HardState(), "Term:0 Commit:0"),
    ],
)
def test_describe_hard_state(hs: HardState, text: str) -> None:
    assert describe_hard_state(hs) == text


@pytest.mark.parametrize(
    ("ss", "text"),
    [
        (SoftState(1, StateRole.Leader), "Lead:1 State:StateLeader"),
        (SoftState(0, StateRole.Follower), "Lead:0 State:StateFollower"),
        (SoftState(0, StateRole.Candidate), "Lead:0 State:StateCandidate"),
        (SoftState(0, StateRole.PreCandidate), "Lead:0 State:StatePreCandidate"),
    ],
)
def test_describe_soft_state(ss: SoftState, text: str) -> None:
    assert describe_soft_state(ss) == text


@pytest.mark.parametrize(
    ("cs", "text"),
    [
        (ConfState(), "Voters:[] Learners:[]"),
        (ConfState(voters=[3, 1, 2], learners=[5, 4]), "Voters:[1 2 3] Learners:[4 5]"),
        (
            ConfState(voters=[1, 2, 3], voters_outgoing=[1, 2], auto_leave=False),
            "Voters:[1 2 3] VotersOutgoing:[1 2] Learners:[] AutoLeave:false",
        ),
        (
            ConfState(
                voters=[2, 3],
                voters_outgoing=[1, 2, 3],
                learners=[4],
                learners_next=[1],
                auto_leave=True,
            ),
            "Voters:[2 3] VotersOutgoing:[1 2 3] Learners:[4] LearnersNext:[1] AutoLeave:true",
        ),
    ],
)
def test_describe_conf_state(cs: ConfState, text: str) -> None:
    assert describe_conf_state(cs) == text


def test_describe_snapshot_and_read_state() -> None:
    assert (
        describe_snapshot(snap(5, 2, [1, 2, 3]))
        == "Index:5 Term:2 ConfState:Voters:[1 2 3] Learners:[]"
    )
    assert describe_snapshot(Snapshot()) == "Index:0 Term:0 ConfState:Voters:[] Learners:[]"
    assert describe_read_state(ReadState(5, b"ctx")) == 'Index:5 RequestCtx:"ctx"'


@dataclass
class FakeReady:
    """Duck-typed like raw_node.Ready, so these tests need only the describe module."""

    ss: SoftState | None = None
    hs: HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot = field(default_factory=Snapshot)
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    persisted_messages: list[Message] = field(default_factory=list)
    must_sync: bool = False


def test_describe_ready_leader() -> None:
    e = Entry(term=2, index=3, data=b"foo")
    rd = FakeReady(
        ss=SoftState(1, StateRole.Leader),
        hs=HardState(2, 1, 2),
        entries=[e],
        messages=[
            Message(MT.MsgAppend, to=2, from_=1, term=2, log_term=2, index=2, commit=2, entries=[e])
        ],
        must_sync=True,
    )
    assert describe_ready(rd) == (
        "Ready MustSync=true:\n"
        "Lead:1 State:StateLeader\n"
        "HardState Term:2 Vote:1 Commit:2\n"
        "Entries:\n"
        '2/3 EntryNormal "foo"\n'
        "Messages:\n"
        '1->2 MsgAppend Term:2 Log:2/2 Commit:2 Entries:[2/3 EntryNormal "foo"]'
    )


def test_describe_ready_every_part() -> None:
    rd = FakeReady(
        read_states=[ReadState(4, b"a"), ReadState(5, b"b")],
        snapshot=snap(3, 1, [1, 2]),
        committed_entries=[Entry(term=1, index=4, data=b"x")],
        persisted_messages=[Message(MT.MsgAppendResponse, to=1, from_=2, term=1, index=4)],
    )
    assert describe_ready(rd) == (
        "Ready MustSync=false:\n"
        "ReadStates:\n"
        'Index:4 RequestCtx:"a"\n'
        'Index:5 RequestCtx:"b"\n'
        "Snapshot Index:3 Term:1 ConfState:Voters:[1 2] Learners:[]\n"
        "CommittedEntries:\n"
        '1/4 EntryNormal "x"\n'
        "PersistedMessages:\n"
        "2->1 MsgAppendResponse Term:1 Log:0/4"
    )


def test_describe_ready_formatter_reaches_every_entry() -> None:
    e = Entry(term=1, index=1, data=b"x")
    rd = FakeReady(
        entries=[e],
        committed_entries=[e],
        messages=[Message(MT.MsgAppend, to=2, from_=1, entries=[e])],
    )
    assert describe_ready(rd, lambda d: "X").count("EntryNormal X") == 3


def test_describe_empty_ready() -> None:
    assert describe_ready(FakeReady()) == "<empty Ready>"
    # An all-zero HardState and an empty snapshot count as absent.
    assert describe_ready(FakeReady(hs=HardState(), must_sync=True)) == "<empty Ready>"
