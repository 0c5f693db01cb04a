"""RawNode: the Ready/advance protocol around :class:`Raft` (raft-rs ``RawNode``).

Theory of operation
-------------------
The application drives a RawNode in rounds::

    rd = node.ready()                   # only if node.has_ready()
    send(rd.messages)                   # leader messages: may go before the write
    storage.apply_snapshot(rd.snapshot) # if not empty, before the entries
    storage.append(rd.entries); storage.set_hardstate(rd.hs)   # one atomic write
    send(rd.persisted_messages)         # only once that write is durable
    light = node.advance(rd)            # or advance_append / advance_append_async
    ...apply rd.committed_entries and light.committed_entries, send light.messages
    node.advance_apply()                # or advance_apply_to(index)

Rules that make this safe (see docs/raft.md):

* Everything a non-leader says depends on state it has just written (a vote,
  a term, appended entries), so it arrives in ``persisted_messages``. A leader's
  messages arrive in ``messages``: it may replicate in parallel with its own
  fsync, because it counts itself toward a quorum only after persistence.
* ``committed_entries`` holds entries both committed *and* persisted locally.
* With asynchronous persistence, ``advance_append_async(rd)`` records the Ready
  and the application later calls ``on_persist_ready(rd.number)`` once that
  Ready (and every earlier one) is durable. Readies must be persisted in order.

A RawNode is single-threaded and not re-entrant: between ``ready()`` and
``advance*()`` nothing else may be called on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from multiraft.raft.confchange_codec import encode_conf_change, encode_conf_change_v2
from multiraft.raft.config import Config
from multiraft.raft.errors import RaftFatal, StepLocalMsg, StepPeerNotFound
from multiraft.raft.logger import Logger
from multiraft.raft.raft import Raft
from multiraft.raft.rng import Rng
from multiraft.raft.status import Status
from multiraft.raft.storage import GetEntriesContext, GetEntriesFor, Storage
from multiraft.raft.types import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotStatus,
    SoftState,
    StateRole,
    is_local_msg,
    is_response_msg,
)


@dataclass(slots=True)
class LightReady:
    """What ``advance_append`` releases: a new commit index, entries, leader messages."""

    #: The new commit index if it advanced (persist it with or before applying).
    commit_index: int | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)


@dataclass(slots=True)
class Ready:
    """One round's work for the application. See the module docstring for the order."""

    number: int = 0
    #: Only if (leader_id, role) changed since the last Ready; never persisted.
    ss: SoftState | None = None
    #: Only if changed; persist it together with ``entries``.
    hs: HardState | None = None
    read_states: list[ReadState] = field(default_factory=list)
    #: Unstable entries to append (truncating any conflicting tail).
    entries: list[Entry] = field(default_factory=list)
    #: Apply before ``entries``; empty (index 0) when there is none.
    snapshot: Snapshot = field(default_factory=Snapshot)
    #: Committed and persisted entries to apply; empty when ``snapshot`` is set.
    committed_entries: list[Entry] = field(default_factory=list)
    #: Leader messages: send immediately.
    messages: list[Message] = field(default_factory=list)
    #: Non-leader messages: send only after this Ready's writes are durable.
    persisted_messages: list[Message] = field(default_factory=list)
    #: Whether the write must be fsynced: term, vote, entries or snapshot changed.
    must_sync: bool = False


@dataclass(slots=True)
class _ReadyRecord:
    number: int
    last_entry: tuple[int, int] | None = None
    snapshot: tuple[int, int] | None = None


class RawNode:
    """A thread-unsafe, sans-IO Raft node with raft-rs's Ready protocol.

    ``raft`` is public, as in raft-rs: read it freely (role, term, progress), but
    mutate it only through RawNode methods outside tests.
    """

    def __init__(
        self,
        config: Config,
        store: Storage,
        logger: Logger | None = None,
        rng: Rng | None = None,
    ) -> None:
        self.raft = Raft(config, store, logger, rng)
        self._prev_hs = self.raft.hard_state()
        self._prev_ss = self.raft.soft_state()
        self._max_number = 0
        self._records: deque[_ReadyRecord] = deque()
        #: Index of the last committed entry handed to the application.
        self._commit_since_index = config.applied

    # ------------------------------------------------------------------
    # Inputs

    def tick(self) -> bool:
        return self.raft.tick()

    def campaign(self) -> None:
        """Start an election now. A learner or removed node refuses (and logs it)."""
        self.raft.step(Message(msg_type=MessageType.MsgHup))

    def propose(self, context: bytes, data: bytes) -> None:
        """Propose ``data`` (note raft-rs's argument order: context first).

        Raises:
            ProposalDropped: no leader, a transfer in progress, or over the size limit.
        """
        m = Message(
            msg_type=MessageType.MsgPropose,
            from_=self.raft.id,
            entries=[Entry(data=data, context=context)],
        )
        self.raft.step(m)

    def propose_batch(self, datas: Sequence[bytes], context: bytes = b"") -> None:
        """Propose several entries in one MsgPropose: one append, one broadcast.

        This is how a store should propose a round's worth of client commands:
        the leader appends all of them and replicates them in one message per
        follower instead of one per entry. All or nothing: on ProposalDropped
        none of them was appended.
        """
        if not datas:
            return
        m = Message(
            msg_type=MessageType.MsgPropose,
            from_=self.raft.id,
            entries=[Entry(data=d, context=context) for d in datas],
        )
        self.raft.step(m)

    def propose_conf_change(self, context: bytes, cc: ConfChange | ConfChangeV2) -> None:
        """Propose a membership change; it takes effect when applied (``apply_conf_change``)."""
        v1 = cc.as_v1()
        if v1 is not None:
            entry = Entry(
                entry_type=EntryType.EntryConfChange, data=encode_conf_change(v1), context=context
            )
        else:
            entry = Entry(
                entry_type=EntryType.EntryConfChangeV2,
                data=encode_conf_change_v2(cc.as_v2()),
                context=context,
            )
        self.raft.step(Message(msg_type=MessageType.MsgPropose, entries=[entry]))

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Apply a committed conf-change entry; persist the returned ConfState."""
        return self.raft.apply_conf_change(cc.as_v2())

    def step(self, m: Message) -> None:
        """Step a message from a peer.

        Raises:
            StepLocalMsg: ``m`` is a local message type.
            StepPeerNotFound: a response from a peer without a Progress.
        """
        t = m.msg_type
        if is_local_msg(t):
            raise StepLocalMsg()
        if is_response_msg(t) and self.raft.prs().get(m.from_) is None:
            raise StepPeerNotFound()
        self.raft.step(m)

    def ping(self) -> None:
        self.raft.ping()

    def read_index(self, rctx: bytes) -> None:
        """Request a linearizable read; the answer is a ReadState in a later Ready."""
        self.raft.step(Message(msg_type=MessageType.MsgReadIndex, entries=[Entry(data=rctx)]))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(msg_type=MessageType.MsgTransferLeader, from_=transferee))

    def report_unreachable(self, id: int) -> None:
        self.raft.step(Message(msg_type=MessageType.MsgUnreachable, from_=id))

    def report_snapshot(self, id: int, status: SnapshotStatus) -> None:
        self.raft.step(
            Message(
                msg_type=MessageType.MsgSnapStatus,
                from_=id,
                reject=status == SnapshotStatus.Failure,
            )
        )

    def request_snapshot(self) -> None:
        self.raft.request_snapshot()

    def on_entries_fetched(self, context: GetEntriesContext) -> None:
        """Resume a send that waited on an asynchronous ``Storage.entries``."""
        if context.what != GetEntriesFor.SendAppend:
            if context.what == GetEntriesFor.Empty and context.can_async():
                return
            raise RaftFatal("shouldn't call callback on non-async context")
        to, term, aggressively = context.to, context.term, context.aggressively
        raft = self.raft
        if raft.term != term or raft.state != StateRole.Leader:
            return
        pr = raft.prs().get(to)
        if pr is None:
            return
        if aggressively:
            raft._send_append_aggressively(to, pr)
        else:
            raft.send_append(to)

    def set_priority(self, priority: int) -> None:
        self.raft.set_priority(priority)

    def skip_bcast_commit(self, skip: bool) -> None:
        self.raft.skip_bcast_commit(skip)

    def set_batch_append(self, batch_append: bool) -> None:
        self.raft.set_batch_append(batch_append)

    # ------------------------------------------------------------------
    # Outputs

    def has_ready(self) -> bool:
        raft = self.raft
        if raft.msgs or raft.read_states:
            return True
        if raft.state != self._prev_ss.raft_state or raft.leader_id != self._prev_ss.leader_id:
            return True
        hs = self._prev_hs
        if raft.term != hs.term or raft.vote != hs.vote or raft.raft_log.committed != hs.commit:
            return True
        log = raft.raft_log
        if log.unstable.entries:
            return True
        snap = log.unstable.snapshot
        if snap is not None and not snap.is_empty():
            return True
        return log.has_next_entries_since(self._commit_since_index)

    def ready(self) -> Ready:
        """Collect this round's work. Call only when ``has_ready()``."""
        raft = self.raft
        self._max_number += 1
        rd = Ready(number=self._max_number)
        record = _ReadyRecord(self._max_number)

        if self._prev_ss.raft_state != StateRole.Leader and raft.state == StateRole.Leader:
            # A node becomes leader only after its vote (and log) were persisted,
            # so no earlier Ready may still carry unpersisted entries.
            for old in self._records:
                if old.last_entry is not None or old.snapshot is not None:
                    raise RaftFatal("became leader with unpersisted entries or snapshot")
            self._records.clear()

        ss = raft.soft_state()
        if ss != self._prev_ss:
            rd.ss = ss
        hs = raft.hard_state()
        if hs != self._prev_hs:
            if hs.vote != self._prev_hs.vote or hs.term != self._prev_hs.term:
                rd.must_sync = True
            rd.hs = hs
        if raft.read_states:
            rd.read_states = raft.read_states
            raft.read_states = []
        snap = raft.raft_log.unstable_snapshot()
        if snap is not None:
            rd.snapshot = snap
            idx = snap.metadata.index
            if self._commit_since_index > idx:
                raise RaftFatal(f"snapshot {idx} below handed-out commit {self._commit_since_index}")
            self._commit_since_index = idx
            if raft.raft_log.has_next_entries_since(idx):
                raise RaftFatal(f"has snapshot but also has committed entries since {idx}")
            record.snapshot = (idx, snap.metadata.term)
            rd.must_sync = True
        rd.entries = list(raft.raft_log.unstable_entries())
        if rd.entries:
            last = rd.entries[-1]
            rd.must_sync = True
            record.last_entry = (last.index, last.term)
        light = self._gen_light_ready()
        rd.committed_entries = light.committed_entries
        if raft.state == StateRole.Leader:
            rd.messages = light.messages
        else:
            rd.persisted_messages = light.messages
        self._records.append(record)
        return rd

    def _gen_light_ready(self) -> LightReady:
        raft = self.raft
        light = LightReady()
        ents = raft.raft_log.next_entries_since(
            self._commit_since_index, raft.max_committed_size_per_ready
        )
        if ents:
            light.committed_entries = ents
            raft.reduce_uncommitted_size(ents)
            last = ents[-1].index
            if last <= self._commit_since_index:
                raise RaftFatal("committed entries went backwards")
            self._commit_since_index = last
        if raft.msgs:
            light.messages = raft.msgs
            raft.msgs = []
        return light

    def _commit_ready(self, rd: Ready) -> None:
        if rd.ss is not None:
            self._prev_ss = rd.ss
        if rd.hs is not None:
            # A copy: the application owns rd.hs (a storage may keep and mutate it),
            # and advance_append updates _prev_hs.commit in place.
            self._prev_hs = HardState(rd.hs.term, rd.hs.vote, rd.hs.commit)
        record = self._records[-1]
        if record.number != rd.number:
            raise RaftFatal(f"advance of Ready {rd.number} but the last Ready is {record.number}")
        log = self.raft.raft_log
        if record.snapshot is not None:
            log.stable_snap(record.snapshot[0])
        if record.last_entry is not None:
            log.stable_entries(*record.last_entry)

    def on_persist_ready(self, number: int) -> None:
        """Every Ready numbered up to ``number`` is durable (async persistence)."""
        index = term = snap_index = 0
        records = self._records
        while records and records[0].number <= number:
            record = records.popleft()
            if record.snapshot is not None:
                snap_index = record.snapshot[0]
                index = term = 0
            if record.last_entry is not None:
                index, term = record.last_entry
        if snap_index:
            self.raft.on_persist_snap(snap_index)
        if index:
            self.raft.on_persist_entries(index, term)

    def advance(self, rd: Ready) -> LightReady:
        """``advance_append(rd)`` then ``advance_apply_to`` what ``rd`` handed out."""
        applied = self._commit_since_index
        light = self.advance_append(rd)
        self.advance_apply_to(applied)
        return light

    def advance_append(self, rd: Ready) -> LightReady:
        """``rd`` (and every earlier Ready) is durable; release what that unlocks."""
        self._commit_ready(rd)
        self.on_persist_ready(self._max_number)
        light = self._gen_light_ready()
        if self.raft.state != StateRole.Leader and light.messages:
            raise RaftFatal("not leader but has new msg after advance")
        hs = self.raft.hard_state()
        if hs.commit > self._prev_hs.commit:
            light.commit_index = hs.commit
            self._prev_hs.commit = hs.commit
        elif hs.commit != self._prev_hs.commit:
            raise RaftFatal("commit index went backwards")
        if hs != self._prev_hs:
            raise RaftFatal(f"hard state {hs} != prev_hs {self._prev_hs}")
        return light

    def advance_append_async(self, rd: Ready) -> None:
        """Record ``rd``; its data must already be readable through Storage.

        Persistence is reported later with ``on_persist_ready(rd.number)``.
        """
        self._commit_ready(rd)

    def advance_apply(self) -> None:
        """Everything handed out in ``committed_entries`` has been applied."""
        self.raft.commit_apply(self._commit_since_index)

    def advance_apply_to(self, applied: int) -> None:
        self.raft.commit_apply(applied)

    # ------------------------------------------------------------------
    # Introspection

    def snap(self) -> Snapshot | None:
        return self.raft.snap()

    def status(self) -> Status:
        return Status.from_raft(self.raft)

    @property
    def store(self) -> Storage:
        return self.raft.store()

    def mut_store(self) -> Storage:
        return self.raft.store()
