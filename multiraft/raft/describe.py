"""Canonical text forms of the core's values, for scenario tests and debugging.

Every value has exactly one rendering, the same on every run: id lists are
printed sorted, bytes as double-quoted ASCII with Go-style escapes
(``"a\\"b\\x00"``), booleans as ``true``/``false``. The forms follow etcd's
``util.go`` (``DescribeEntry``, ``DescribeMessage``, ``DescribeReady``), so our
golden files read like etcd's testdata. No function here returns a trailing
newline.

Formats
-------
* entry: ``term/index Type data``, e.g. ``1/5 EntryNormal "data"``. A conf change
  entry shows its decoded changes (``v`` voter, ``l`` learner, ``r`` removal):
  ``2/3 EntryConfChangeV2 v2 v3``; the empty leave-joint change shows nothing
  after the type, a non-Auto transition shows ``transition=Explicit``.
* message: ``from->to Type Term:t`` followed only by what the message carries:
  ``Log:logterm/index`` (appends, votes and append responses), ``Index:i`` (read
  index responses), ``Rejected (Hint: h)``, ``Commit:c`` (when non-zero),
  ``Entries:[e1, e2]``, ``Snapshot: <snapshot>``, ``Context:"..."``,
  ``RequestSnapshot:i`` and ``Priority:p`` (each when non-empty). For example
  ``1->2 MsgAppend Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "foo"]``.
  A message's description is also a deterministic sort key:
  ``sorted(msgs, key=describe_message)``.
* hard state: ``Term:2 Vote:1 Commit:2`` (``Vote`` omitted when 0).
* soft state: ``Lead:1 State:StateLeader``.
* conf state: ``Voters:[1 2 3] Learners:[]``; a joint configuration adds
  ``VotersOutgoing:[..]``, ``LearnersNext:[..]`` (when non-empty) and ``AutoLeave:..``.
* snapshot: ``Index:5 Term:2 ConfState:Voters:[1 2 3] Learners:[]``.
* ready: a block, see :func:`describe_ready`.

An ``EntryFormatter`` renders the data of normal entries (the default quotes the
bytes); a store passes one that decodes its commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from multiraft.raft.confchange_codec import (
    ConfChangeDecodeError,
    decode_conf_change,
    decode_conf_change_v2,
)
from multiraft.raft.types import (
    ConfChangeSingle,
    ConfChangeTransition,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateRole,
    stringify_conf_change,
)

__all__ = [
    "EntryFormatter",
    "ReadyLike",
    "describe_conf_state",
    "describe_entries",
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_read_state",
    "describe_ready",
    "describe_snapshot",
    "describe_soft_state",
    "quote",
]

#: Renders the data of an ``EntryNormal``.
EntryFormatter = Callable[[bytes], str]


class ReadyLike(Protocol):
    """What :func:`describe_ready` reads: the fields of ``raw_node.Ready``."""

    @property
    def ss(self) -> SoftState | None: ...
    @property
    def hs(self) -> HardState | None: ...
    @property
    def read_states(self) -> Sequence[ReadState]: ...
    @property
    def entries(self) -> Sequence[Entry]: ...
    @property
    def snapshot(self) -> Snapshot | None: ...
    @property
    def committed_entries(self) -> Sequence[Entry]: ...
    @property
    def messages(self) -> Sequence[Message]: ...
    @property
    def persisted_messages(self) -> Sequence[Message]: ...
    @property
    def must_sync(self) -> bool: ...


_ESCAPES = {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}

#: The message types whose (log_term, index) name a log position.
_LOG_TYPES = frozenset(
    {
        MessageType.MsgAppend,
        MessageType.MsgAppendResponse,
        MessageType.MsgRequestVote,
        MessageType.MsgRequestPreVote,
    }
)


def quote(data: bytes) -> str:
    r"""``data`` as a double-quoted ASCII string: printable bytes as is, the rest escaped.

    Example:
        >>> print(quote(b'say "hi"\n\xff'))
        "say \"hi\"\n\xff"
    """
    parts = ['"']
    for b in data:
        esc = _ESCAPES.get(b)
        if esc is not None:
            parts.append(esc)
        elif 0x20 <= b < 0x7F:
            parts.append(chr(b))
        else:
            parts.append(f"\\x{b:02x}")
    parts.append('"')
    return "".join(parts)


def _ids(ids: Iterable[int]) -> str:
    return "[" + " ".join(map(str, sorted(ids))) + "]"


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _conf_change_text(changes: list[ConfChangeSingle], transition: ConfChangeTransition) -> str:
    text = stringify_conf_change(changes)
    if transition != ConfChangeTransition.Auto:
        text = f"{text} transition={transition.name}".lstrip()
    return text


def describe_entry(e: Entry, fmt: EntryFormatter | None = None) -> str:
    """``term/index Type data``, e.g. ``1/5 EntryNormal "data"`` or ``2/3 EntryConfChangeV2 v2 v3``.

    Args:
        e: the entry.
        fmt: renders the data of a normal entry; :func:`quote` by default.
    """
    entry_type = EntryType(e.entry_type)
    try:
        if entry_type == EntryType.EntryConfChange:
            cc = decode_conf_change(e.data)
            text = _conf_change_text(cc.into_v2().changes, ConfChangeTransition.Auto)
        elif entry_type == EntryType.EntryConfChangeV2:
            cc2 = decode_conf_change_v2(e.data)
            text = _conf_change_text(cc2.changes, cc2.transition)
        else:
            text = (fmt or quote)(e.data)
    except ConfChangeDecodeError as err:
        text = f"<undecodable: {err}> {quote(e.data)}"
    head = f"{e.term}/{e.index} {entry_type.name}"
    return f"{head} {text}" if text else head


def describe_entries(entries: Iterable[Entry], fmt: EntryFormatter | None = None) -> str:
    """One :func:`describe_entry` line per entry ("" for none)."""
    return "\n".join(describe_entry(e, fmt) for e in entries)


def describe_hard_state(hs: HardState) -> str:
    """``Term:2 Vote:1 Commit:2``; ``Vote`` is left out when there is none."""
    vote = f" Vote:{hs.vote}" if hs.vote else ""
    return f"Term:{hs.term}{vote} Commit:{hs.commit}"


def describe_soft_state(ss: SoftState) -> str:
    """``Lead:1 State:StateLeader``."""
    return f"Lead:{ss.leader_id} State:State{StateRole(ss.raft_state).name}"


def describe_conf_state(cs: ConfState) -> str:
    """``Voters:[1 2 3] Learners:[]``, with the joint parts only while joint.

    Example:
        >>> describe_conf_state(ConfState(voters=[3, 1], voters_outgoing=[1, 2], auto_leave=True))
        'Voters:[1 3] VotersOutgoing:[1 2] Learners:[] AutoLeave:true'
    """
    parts = [f"Voters:{_ids(cs.voters)}"]
    if cs.voters_outgoing:
        parts.append(f"VotersOutgoing:{_ids(cs.voters_outgoing)}")
    parts.append(f"Learners:{_ids(cs.learners)}")
    if cs.learners_next:
        parts.append(f"LearnersNext:{_ids(cs.learners_next)}")
    if cs.voters_outgoing or cs.learners_next or cs.auto_leave:
        parts.append(f"AutoLeave:{_bool(cs.auto_leave)}")
    return " ".join(parts)


def describe_snapshot(snap: Snapshot) -> str:
    """``Index:5 Term:2 ConfState:Voters:[1 2 3] Learners:[]`` (the data is not shown)."""
    m = snap.metadata
    return f"Index:{m.index} Term:{m.term} ConfState:{describe_conf_state(m.conf_state)}"


def describe_read_state(rs: ReadState) -> str:
    """``Index:5 RequestCtx:"ctx"``."""
    return f"Index:{rs.index} RequestCtx:{quote(rs.request_ctx)}"


def describe_message(m: Message, fmt: EntryFormatter | None = None) -> str:
    """``from->to Type Term:t`` and the fields that this message carries.

    Example:
        >>> from multiraft.raft.types import Entry, Message, MessageType
        >>> describe_message(Message(msg_type=MessageType.MsgAppend, from_=1, to=2, term=1,
        ...     log_term=1, index=3, commit=3, entries=[Entry(term=1, index=4, data=b"foo")]))
        '1->2 MsgAppend Term:1 Log:1/3 Commit:3 Entries:[1/4 EntryNormal "foo"]'
    """
    msg_type = MessageType(m.msg_type)
    parts = [f"{m.from_}->{m.to} {msg_type.name} Term:{m.term}"]
    if msg_type in _LOG_TYPES:
        parts.append(f"Log:{m.log_term}/{m.index}")
    elif msg_type == MessageType.MsgReadIndexResp:
        parts.append(f"Index:{m.index}")
    if m.reject:
        parts.append(f"Rejected (Hint: {m.reject_hint})")
    if m.commit:
        parts.append(f"Commit:{m.commit}")
    if m.entries:
        parts.append("Entries:[" + ", ".join(describe_entry(e, fmt) for e in m.entries) + "]")
    if m.snapshot is not None and not m.snapshot.is_empty():
        parts.append(f"Snapshot: {describe_snapshot(m.snapshot)}")
    if m.context:
        parts.append(f"Context:{quote(m.context)}")
    if m.request_snapshot:
        parts.append(f"RequestSnapshot:{m.request_snapshot}")
    if m.get_priority():
        parts.append(f"Priority:{m.get_priority()}")
    return " ".join(parts)


def describe_ready(rd: ReadyLike, fmt: EntryFormatter | None = None) -> str:
    """A Ready as a block of lines, printing only its non-empty parts, in this order::

        Ready MustSync=true:
        Lead:1 State:StateLeader                  (soft state)
        HardState Term:2 Vote:1 Commit:2
        ReadStates:                               (one describe_read_state per line)
        Entries:                                  (one describe_entry per line)
        Snapshot Index:5 Term:2 ConfState:...
        CommittedEntries:
        Messages:                                 (one describe_message per line)
        PersistedMessages:

    An empty Ready is ``<empty Ready>``. An all-zero HardState counts as absent.
    """
    lines: list[str] = []
    if rd.ss is not None:
        lines.append(describe_soft_state(rd.ss))
    if rd.hs is not None and rd.hs != HardState():
        lines.append(f"HardState {describe_hard_state(rd.hs)}")
    if rd.read_states:
        lines += ["ReadStates:", *map(describe_read_state, rd.read_states)]
    if rd.entries:
        lines += ["Entries:", *(describe_entry(e, fmt) for e in rd.entries)]
    if rd.snapshot is not None and not rd.snapshot.is_empty():
        lines.append(f"Snapshot {describe_snapshot(rd.snapshot)}")
    if rd.committed_entries:
        lines += ["CommittedEntries:", *(describe_entry(e, fmt) for e in rd.committed_entries)]
    if rd.messages:
        lines += ["Messages:", *(describe_message(m, fmt) for m in rd.messages)]
    if rd.persisted_messages:
        lines += ["PersistedMessages:", *(describe_message(m, fmt) for m in rd.persisted_messages)]
    if not lines:
        return "<empty Ready>"
    return "\n".join([f"Ready MustSync={_bool(rd.must_sync)}:", *lines])
