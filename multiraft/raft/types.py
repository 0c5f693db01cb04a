"""The Raft wire and state types (raft-rs's ``eraftpb``), as compact Python classes.

Theory of operation
-------------------
These are plain mutable records with ``__slots__``: a store keeps millions of
entries and messages in flight, so every instance must be small and cheap to
build. Field names follow raft-rs in snake_case; ``Message.from`` is ``from_``
because ``from`` is a Python keyword. Defaults mirror protobuf: integers 0,
bytes ``b""``, lists empty, so two messages compare equal field for field
exactly when raft-rs's would.

Nothing here does I/O. Serialisation for the network lives in
:mod:`multiraft.wire`; the only encoding in this package is
:mod:`multiraft.raft.confchange_codec`, which the core needs to read the
conf-change entries it proposes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

#: A u64 "no limit" value, as raft-rs's ``NO_LIMIT``.
NO_LIMIT = 2**64 - 1
#: Node id 0 is never a valid node.
INVALID_ID = 0
#: Log index 0 holds no entry.
INVALID_INDEX = 0

CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"


class EntryType(IntEnum):
    EntryNormal = 0
    EntryConfChange = 1
    EntryConfChangeV2 = 2


class MessageType(IntEnum):
    MsgHup = 0
    MsgBeat = 1
    MsgPropose = 2
    MsgAppend = 3
    MsgAppendResponse = 4
    MsgRequestVote = 5
    MsgRequestVoteResponse = 6
    MsgSnapshot = 7
    MsgHeartbeat = 8
    MsgHeartbeatResponse = 9
    MsgUnreachable = 10
    MsgSnapStatus = 11
    MsgCheckQuorum = 12
    MsgTransferLeader = 13
    MsgTimeoutNow = 14
    MsgReadIndex = 15
    MsgReadIndexResp = 16
    MsgRequestPreVote = 17
    MsgRequestPreVoteResponse = 18


class ConfChangeType(IntEnum):
    AddNode = 0
    RemoveNode = 1
    AddLearnerNode = 2


class ConfChangeTransition(IntEnum):
    Auto = 0
    Implicit = 1
    Explicit = 2


class StateRole(IntEnum):
    Follower = 0
    Candidate = 1
    Leader = 2
    PreCandidate = 3


class SnapshotStatus(IntEnum):
    Finish = 0
    Failure = 1


class ReadOnlyOption(IntEnum):
    """How a leader answers ReadIndex: ``Safe`` confirms leadership with a heartbeat
    round; ``LeaseBased`` trusts the check-quorum lease (needs bounded clock drift)."""

    Safe = 0
    LeaseBased = 1


_LOCAL_MSGS = frozenset(
    {
        MessageType.MsgHup,
        MessageType.MsgBeat,
        MessageType.MsgUnreachable,
        MessageType.MsgSnapStatus,
        MessageType.MsgCheckQuorum,
    }
)
_RESPONSE_MSGS = frozenset(
    {
        MessageType.MsgAppendResponse,
        MessageType.MsgRequestVoteResponse,
        MessageType.MsgHeartbeatResponse,
        MessageType.MsgUnreachable,
        MessageType.MsgRequestPreVoteResponse,
    }
)


def is_local_msg(t: MessageType) -> bool:
    """Messages that only a node sends to itself; ``RawNode.step`` refuses them."""
    return t in _LOCAL_MSGS


def is_response_msg(t: MessageType) -> bool:
    """Responses; ``RawNode.step`` refuses them from peers without a Progress."""
    return t in _RESPONSE_MSGS


def vote_resp_msg_type(t: MessageType) -> MessageType:
    """The response type that answers a (pre-)vote request."""
    if t == MessageType.MsgRequestVote:
        return MessageType.MsgRequestVoteResponse
    if t == MessageType.MsgRequestPreVote:
        return MessageType.MsgRequestPreVoteResponse
    raise ValueError(f"not a vote message: {t!r}")


@dataclass(slots=True)
class Entry:
    """One log entry. An ``EntryNormal`` with empty ``data`` is a leader's no-op."""

    entry_type: EntryType = EntryType.EntryNormal
    term: int = 0
    index: int = 0
    data: bytes = b""
    context: bytes = b""
    sync_log: bool = False  # deprecated in raft-rs; kept for field parity


@dataclass(slots=True)
class ConfState:
    """The membership a snapshot or an applied conf change leaves behind.

    Invariant: the configuration is joint iff ``voters_outgoing`` is non-empty;
    ``learners_next`` and ``auto_leave`` are only meaningful while joint.
    """

    voters: list[int] = field(default_factory=list)
    learners: list[int] = field(default_factory=list)
    voters_outgoing: list[int] = field(default_factory=list)
    learners_next: list[int] = field(default_factory=list)
    auto_leave: bool = False


def conf_state_eq(a: ConfState, b: ConfState) -> bool:
    """Order-insensitive equality of two ConfStates (raft-rs ``conf_state_eq``)."""
    return (
        sorted(a.voters) == sorted(b.voters)
        and sorted(a.learners) == sorted(b.learners)
        and sorted(a.voters_outgoing) == sorted(b.voters_outgoing)
        and sorted(a.learners_next) == sorted(b.learners_next)
        and a.auto_leave == b.auto_leave
    )


@dataclass(slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(slots=True)
class Snapshot:
    """A point-in-time image of the state machine. Empty iff ``metadata.index == 0``."""

    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    def is_empty(self) -> bool:
        return self.metadata.index == 0


@dataclass(slots=True)
class HardState:
    """What must be durable before a node speaks: its term, its vote and its commit."""

    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass(slots=True)
class Message:
    """A Raft message. ``from_`` is raft-rs's ``from``.

    ``priority`` is read as ``priority if priority != 0 else deprecated_priority``.
    """

    msg_type: MessageType = MessageType.MsgHup
    to: int = 0
    from_: int = 0
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    commit_term: int = 0
    snapshot: Snapshot | None = None
    request_snapshot: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    deprecated_priority: int = 0
    priority: int = 0

    def get_snapshot(self) -> Snapshot:
        """The carried snapshot, or an empty one (protobuf default semantics)."""
        return self.snapshot if self.snapshot is not None else Snapshot()

    def get_priority(self) -> int:
        return self.priority if self.priority != 0 else self.deprecated_priority


@dataclass(slots=True)
class ConfChange:
    """A single-step membership change (raft-rs v1 ``ConfChange``)."""

    id: int = 0
    change_type: ConfChangeType = ConfChangeType.AddNode
    node_id: int = 0
    context: bytes = b""

    def into_v2(self) -> ConfChangeV2:
        return ConfChangeV2(
            changes=[ConfChangeSingle(self.change_type, self.node_id)], context=self.context
        )

    def as_v2(self) -> ConfChangeV2:
        return self.into_v2()

    def as_v1(self) -> ConfChange | None:
        return self


@dataclass(slots=True)
class ConfChangeSingle:
    change_type: ConfChangeType = ConfChangeType.AddNode
    node_id: int = 0


@dataclass(slots=True)
class ConfChangeV2:
    """A (possibly joint) membership change.

    ``enter_joint()`` is None for a simple change (Auto with at most one step),
    else whether the joint state is left automatically. ``leave_joint()`` is
    true for the empty Auto change that leaves a joint configuration.
    """

    transition: ConfChangeTransition = ConfChangeTransition.Auto
    changes: list[ConfChangeSingle] = field(default_factory=list)
    context: bytes = b""

    def enter_joint(self) -> bool | None:
        if self.transition != ConfChangeTransition.Auto or len(self.changes) > 1:
            return self.transition != ConfChangeTransition.Explicit
        return None

    def leave_joint(self) -> bool:
        return self.transition == ConfChangeTransition.Auto and not self.changes

    def into_v2(self) -> ConfChangeV2:
        return self

    def as_v2(self) -> ConfChangeV2:
        return self

    def as_v1(self) -> ConfChange | None:
        return None


@dataclass(slots=True)
class SoftState:
    """Volatile state worth telling the application about; never persisted."""

    leader_id: int = INVALID_ID
    raft_state: StateRole = StateRole.Follower


@dataclass(slots=True)
class ReadState:
    """A ReadIndex answer: serve the read once ``applied >= index``."""

    index: int = 0
    request_ctx: bytes = b""


@dataclass(slots=True)
class RaftState:
    """What a Storage reports at startup."""

    hard_state: HardState = field(default_factory=HardState)
    conf_state: ConfState = field(default_factory=ConfState)

    def initialized(self) -> bool:
        return self.conf_state != ConfState()


def new_conf_change_single(node_id: int, change_type: ConfChangeType) -> ConfChangeSingle:
    return ConfChangeSingle(change_type, node_id)


def parse_conf_change(text: str) -> list[ConfChangeSingle]:
    """Parse ``"v1 l2 r3"`` (voter add, learner add, remove) into changes.

    Raises:
        ValueError: on an unknown token.
    """
    kinds = {
        "v": ConfChangeType.AddNode,
        "l": ConfChangeType.AddLearnerNode,
        "r": ConfChangeType.RemoveNode,
    }
    out: list[ConfChangeSingle] = []
    for tok in text.split():
        if len(tok) < 2 or tok[0] not in kinds or not tok[1:].isdigit():
            raise ValueError(f"unknown token {tok}")
        out.append(ConfChangeSingle(kinds[tok[0]], int(tok[1:])))
    return out


def stringify_conf_change(ccs: list[ConfChangeSingle]) -> str:
    letters = {
        ConfChangeType.AddNode: "v",
        ConfChangeType.AddLearnerNode: "l",
        ConfChangeType.RemoveNode: "r",
    }
    return " ".join(f"{letters[cc.change_type]}{cc.node_id}" for cc in ccs)


def entry_size(e: Entry) -> int:
    """The protobuf-encoded size of an entry, as raft-rs's ``compute_size``.

    Flow control (``max_size_per_msg``, ``max_committed_size_per_ready``) counts
    this size so that entry counts per message match raft-rs exactly. A varint
    of ``v > 0`` takes ``(v.bit_length() + 6) // 7`` bytes; each present field
    adds a one-byte tag.
    """
    size = 0
    if e.entry_type:
        size = 2
    v = e.term
    if v:
        size += 1 + (v.bit_length() + 6) // 7
    v = e.index
    if v:
        size += 1 + (v.bit_length() + 6) // 7
    n = len(e.data)
    if n:
        size += 1 + (n.bit_length() + 6) // 7 + n
    n = len(e.context)
    if n:
        size += 1 + (n.bit_length() + 6) // 7 + n
    if e.sync_log:
        size += 2
    return size
