"""A black-box, Ready-level network of ``RawNode`` s, with crashes and asynchronous disks.

Theory of operation
-------------------
The Raft-level ``multiraft.raft.testing.Network`` steps ``Raft`` objects and
"persists" synchronously after every step, so it cannot notice a node that
speaks before its state is durable. ``ReadyNetwork`` drives ``RawNode`` s only
through their public Ready/advance protocol, the way a store does, and keeps,
for every node, three layers of state:

* the **live** layer: the ``RawNode`` and its ``MemStorage`` (what the process
  sees), plus the node's state machine (its applied log);
* the **pending** layer (async-disk mode only): Readies written to the
  MemStorage but not yet fsynced, and the ``persisted_messages`` they produced,
  each tagged with its Ready number;
* the **durable image**: plain Python data (the index/term before the first
  entry, entries as tuples, hard state, conf state, applied index and applied
  log) updated only
  when a write is durable. ``crash`` keeps nothing else; ``restart`` rebuilds a
  fresh MemStorage and a new RawNode (``Config.applied`` = durable applied
  index) from it.

Two disk modes:

``"sync"``
    Every write is durable at once. Per Ready: send ``rd.messages``; apply the
    snapshot, append the entries and set the hard state (one durable write);
    apply ``rd.committed_entries``; send ``rd.persisted_messages``;
    ``light = advance(rd)``; store ``light.commit_index``; send
    ``light.messages``; apply ``light.committed_entries``; ``advance_apply()``.
    (Committed entries of the Ready are applied before ``advance``, as raft-rs's
    own example loop does, so that a joint conf change is in force when
    ``advance`` reports it applied.)

``"async"``
    The Ready's writes become visible in the MemStorage immediately (raft-rs
    requires it for ``advance_append_async``) but are only *pending*:
    ``rd.messages`` (leader) go out at once, ``rd.persisted_messages`` are held,
    committed entries are applied to the live state machine, and the node calls
    ``advance_append_async(rd)`` then ``advance_apply()``. A separate
    ``fsync(id)`` event makes every pending Ready (and the state machine with its
    applied index, as a store persists its apply state) durable, calls
    ``on_persist_ready(last number)``, releases the held messages and handles
    whatever Readies that produced.

Applying committed entries is itself a write (state machine plus applied index,
atomically): durable at once in sync mode, at the next ``fsync`` in async mode.
A crash rolls the state machine back to its durable image, so a restarted node
must be handed exactly the entries after its durable applied index.

Committed conf-change entries are applied with ``apply_conf_change`` and the
returned ConfState is stored (``MemStorage.set_conf_state``); a change the
Changer refuses (``ConfChangeError``) is skipped, as a store would, and every
node must reach the same configuration at the same index. Nodes outside the
initial configuration start uninitialized; with ``bootstrap=k`` members start
from a snapshot at index and term ``k``, so joining nodes need a snapshot.

``compact(id, index)`` compacts a node's MemStorage (and its durable image) up
to its durable applied index, so lagging peers must be sent snapshots. The
storage is ``HarnessStorage``, a MemStorage whose snapshots are taken at the
applied index (MemStorage's are at ``hs.commit``, which async persistence can
put ahead of the state machine and its conf state). Snapshots carry metadata
only; a node that installs one rebuilds its state machine from the committed
entries the harness has recorded (a snapshot of anything not known to be
committed fails the run). Like a store's transport, the harness reports every
MsgSnapshot's fate to its sender (``report_snapshot``: Finish when delivered,
Failure when lost), or the leader would wait in the Snapshot state forever.

The network is a pool of envelopes (``in_flight``). Messages are copied when
they enter it (as serialization would), filtered by the same API as the
Raft-level Network (``drop``/``cut``/``isolate``/``ignore``/``recover``) when
sent and again when delivered (a partition also loses what is in flight), and
may be delivered in any order (``deliver(i)``), duplicated or dropped. Messages
to a crashed node are lost.

Checks made by the harness itself (an ``AssertionError`` is a failure):

* persist-before-send: a message from ``persisted_messages`` is sent and
  delivered only once its Ready is durable (each envelope carries the sender's
  incarnation and Ready number), and only a leader may fill ``rd.messages``;
* applied entries are handed out exactly once and in order (index =
  applied + 1), only committed, and agree across nodes (state machine safety);
* the durable commit index never goes backwards.

A ``ReadState`` must not be older than any commit known when its read was asked
(ReadIndex linearizability).

``assert_converged()`` checks, once the cluster is quiet, that every committed
entry is in every live node's state machine.

``check_invariants()`` adds the cross-node Raft safety properties: one leader
per term over the whole history, log matching, leader completeness, and
monotonic commit indexes on live nodes. The randomized test calls it after
every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from multiraft.raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeV2,
    Config,
    ConfState,
    Entry,
    EntryType,
    GetEntriesContext,
    HardState,
    MemStorage,
    Message,
    MessageType,
    ProposalDropped,
    Raft,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
    SplitMix64,
    StateRole,
    StorageError,
)
from multiraft.raft.confchange_codec import decode_conf_change, decode_conf_change_v2

_CTX = GetEntriesContext.empty(False)
_FORWARDED = frozenset(
    {MessageType.MsgPropose, MessageType.MsgReadIndex, MessageType.MsgTransferLeader}
)

SYNC = "sync"
ASYNC = "async"

#: (index, term, entry_type, data, context): an entry as plain, immutable data.
EntryRec = tuple[int, int, int, bytes, bytes]
#: (index, term, data): one applied normal entry with data.
Applied = tuple[int, int, bytes]


def _rec(e: Entry) -> EntryRec:
    return (e.index, e.term, int(e.entry_type), e.data, e.context)


def _entry(r: EntryRec) -> Entry:
    return Entry(entry_type=EntryType(r[2]), term=r[1], index=r[0], data=r[3], context=r[4])


def _copy_cs(cs: ConfState) -> ConfState:
    return ConfState(
        voters=list(cs.voters),
        learners=list(cs.learners),
        voters_outgoing=list(cs.voters_outgoing),
        learners_next=list(cs.learners_next),
        auto_leave=cs.auto_leave,
    )


def _cs_key(cs: ConfState) -> ConfState:
    return ConfState(
        voters=sorted(cs.voters),
        learners=sorted(cs.learners),
        voters_outgoing=sorted(cs.voters_outgoing),
        learners_next=sorted(cs.learners_next),
        auto_leave=cs.auto_leave,
    )


def _copy_hs(hs: HardState) -> HardState:
    return HardState(term=hs.term, vote=hs.vote, commit=hs.commit)


def _copy_snapshot(s: Snapshot) -> Snapshot:
    m = s.metadata
    return Snapshot(
        data=s.data,
        metadata=SnapshotMetadata(conf_state=_copy_cs(m.conf_state), index=m.index, term=m.term),
    )


def clone_message(m: Message) -> Message:
    """A deep copy of ``m``, as if it had been serialized and parsed."""
    return Message(
        msg_type=m.msg_type,
        to=m.to,
        from_=m.from_,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        entries=[_entry(_rec(e)) for e in m.entries],
        commit=m.commit,
        commit_term=m.commit_term,
        snapshot=None if m.snapshot is None else _copy_snapshot(m.snapshot),
        request_snapshot=m.request_snapshot,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
        deprecated_priority=m.deprecated_priority,
        priority=m.priority,
    )


class HarnessStorage(MemStorage):
    """MemStorage whose snapshots describe the node's *applied* state, as a store's do.

    ``MemStorage.snapshot`` is taken at ``hs.commit``, which with asynchronous
    persistence can run ahead of what the state machine (and so the conf state)
    reflects. The harness keeps ``applied_index`` current.
    """

    __slots__ = ("applied_index",)

    def __init__(self) -> None:
        super().__init__()
        self.applied_index = 0

    def snapshot(self, request_index: int = 0, to: int = 0) -> Snapshot:
        idx = self.applied_index
        meta = SnapshotMetadata(
            conf_state=self.initial_state().conf_state,
            index=max(idx, request_index),
            term=self.term(idx),
        )
        return Snapshot(metadata=meta)


@dataclass
class Envelope:
    """A message on the wire, tagged with where it came from."""

    msg: Message
    #: Sender id and its incarnation (bumped by every crash).
    src: int
    incarnation: int
    #: The Ready number that produced it (0: not from a Ready).
    ready: int
    #: It came from ``persisted_messages``: its Ready must be durable before it travels.
    persisted: bool
    #: Global send order (a duplicate keeps its original's number).
    seq: int


@dataclass
class DurableImage:
    """Everything of a node that survives a crash, as plain data."""

    #: The entry just before ``entries`` (a snapshot or a compaction point).
    base_index: int = 0
    base_term: int = 0
    #: Contiguous, starting at ``base_index + 1``.
    entries: list[EntryRec] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)
    conf_state: ConfState = field(default_factory=ConfState)
    #: The state machine, persisted atomically with its applied index.
    applied: int = 0
    applied_log: list[Applied] = field(default_factory=list)

    def apply_snapshot(self, snap: Snapshot) -> None:
        m = snap.metadata
        self.base_index, self.base_term = m.index, m.term
        self.entries = []
        self.hard_state.term = max(self.hard_state.term, m.term)
        self.set_commit(m.index)
        self.conf_state = _copy_cs(m.conf_state)

    def append(self, ents: Sequence[EntryRec]) -> None:
        if not ents:
            return
        pos = ents[0][0] - (self.base_index + 1)
        assert 0 <= pos <= len(self.entries), f"durable log gap: {ents[0][0]} vs {self.base_index}"
        del self.entries[pos:]
        self.entries.extend(ents)

    def compact(self, compact_index: int) -> None:
        """Drop the entries below ``compact_index``, remembering the last one's term."""
        n = compact_index - (self.base_index + 1)
        if n <= 0:
            return
        assert n <= len(self.entries), f"compact {compact_index} past the durable log"
        self.base_index, self.base_term = self.entries[n - 1][0], self.entries[n - 1][1]
        del self.entries[:n]

    def set_hard_state(self, hs: HardState) -> None:
        self.set_commit(hs.commit)
        self.hard_state = _copy_hs(hs)

    def set_commit(self, commit: int) -> None:
        assert commit >= self.hard_state.commit, (
            f"durable commit went backwards: {self.hard_state.commit} -> {commit}"
        )
        self.hard_state.commit = commit

    def last_index(self) -> int:
        return self.entries[-1][0] if self.entries else self.base_index

    def build_storage(self) -> HarnessStorage:
        """A fresh MemStorage holding exactly this image.

        A compacted log is rebuilt as a metadata-only snapshot at the
        compaction point followed by the remaining entries.
        """
        store = HarnessStorage()
        if self.base_index > 0:
            store.apply_snapshot(
                Snapshot(
                    metadata=SnapshotMetadata(
                        conf_state=_copy_cs(self.conf_state),
                        index=self.base_index,
                        term=self.base_term,
                    )
                )
            )
        else:
            store.initialize_with_conf_state(_copy_cs(self.conf_state))
        store.append([_entry(r) for r in self.entries])
        store.set_hardstate(_copy_hs(self.hard_state))
        store.set_conf_state(_copy_cs(self.conf_state))
        store.applied_index = self.applied
        return store


@dataclass
class _PendingWrite:
    """One Ready written to MemStorage but not yet durable (async mode)."""

    number: int
    snapshot: Snapshot | None
    entries: list[EntryRec]
    hs: HardState | None
    #: Held ``persisted_messages``.
    messages: list[Message]
    #: With a snapshot: the state machine it installs, durable together with it.
    snapshot_state: list[Applied] = field(default_factory=list)


@dataclass
class NodeState:
    id: int
    image: DurableImage
    rn: RawNode | None = None
    store: HarnessStorage | None = None
    incarnation: int = 0
    pending: list[_PendingWrite] = field(default_factory=list)
    #: The live state machine.
    applied_index: int = 0
    applied_log: list[Applied] = field(default_factory=list)
    conf_state: ConfState = field(default_factory=ConfState)
    #: The last commit index seen on the live node (for monotonicity).
    last_commit: int = 0

    @property
    def up(self) -> bool:
        return self.rn is not None


class ReadyNetwork:
    """Nodes ``1..n`` as RawNodes over MemStorage, on a lossy, reorderable network.

    ``mode`` is ``"sync"`` or ``"async"`` (see the module docstring). Every
    member starts from a MemStorage initialized with the initial configuration
    (``voters``, default all ids, and ``learners``), so the first leader is at
    term 1 with its no-op at index 1. With ``bootstrap = k > 0`` members start
    instead from a snapshot at index and term ``k`` (raft-rs's RawNode tests use
    1, TiKV 5), so that nodes outside the initial configuration, which start
    uninitialized, must be sent a snapshot before they can join.
    """

    def __init__(
        self,
        n: int,
        mode: str = SYNC,
        *,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = False,
        check_quorum: bool = False,
        seed: int = 0,
        config: Config | None = None,
        voters: Sequence[int] | None = None,
        learners: Sequence[int] = (),
        bootstrap: int = 0,
        apply_unpersisted_limit: int = 0,
    ) -> None:
        assert mode in (SYNC, ASYNC), mode
        self.mode = mode
        self.seed = seed
        self.ids = list(range(1, n + 1))
        self.base_config = (
            config
            if config is not None
            else Config(
                election_tick=election_tick,
                heartbeat_tick=heartbeat_tick,
                pre_vote=pre_vote,
                check_quorum=check_quorum,
            )
        )
        self._rng = SplitMix64(seed * 7919 + 17)
        #: Set on every new leader, as TiKV does (raft-rs resets it to 0 on step-down).
        self.apply_unpersisted_limit = apply_unpersisted_limit
        self._dropm: dict[tuple[int, int], float] = {}
        self._ignorem: set[MessageType] = set()
        self.in_flight: list[Envelope] = []
        #: Snapshot outcomes to report to their senders, as a transport does.
        self._reports: list[tuple[Envelope, SnapshotStatus]] = []
        self._draining = False
        #: Every envelope that entered the network, in send order.
        self.sent: list[Envelope] = []
        self._seq = 0
        #: Highest durable Ready number per (node, incarnation).
        self._durable_number: dict[tuple[int, int], int] = {}
        #: term -> the one leader ever observed at that term.
        self.leaders: dict[int, int] = {}
        #: (node, commit index) every time a live node's commit index advanced.
        self.commit_history: list[tuple[int, int]] = []
        #: index -> (term, lowest term at which any node saw it committed).
        self.committed: dict[int, tuple[int, int]] = {}
        #: index -> (entry type, data) of every committed entry (snapshots are rebuilt from it).
        self.committed_data: dict[int, tuple[int, bytes]] = {}
        #: read ctx -> the highest index known committed anywhere when the read was asked.
        self.reads: dict[bytes, int] = {}
        #: (node, ReadState index, ctx) of every answered read.
        self.read_answers: list[tuple[int, int, bytes]] = []
        #: index -> (term, data) of every entry any node applied.
        self.applied_entries: dict[int, tuple[int, bytes]] = {}
        #: (index, term) -> (term of index - 1, entry type, data): log matching witness.
        self._log_witness: dict[tuple[int, int], tuple[int | None, int, bytes]] = {}
        #: index -> the ConfState applying that conf-change entry produced (None: rejected).
        self.conf_after: dict[int, ConfState | None] = {}
        self.nodes: dict[int, NodeState] = {}
        initial_voters = list(self.ids) if voters is None else list(voters)
        initial = ConfState(voters=initial_voters, learners=list(learners))
        self._initial_conf = _cs_key(initial)
        if bootstrap:
            # The bootstrap snapshot stands for committed entries 1..bootstrap.
            for i in range(1, bootstrap + 1):
                self.committed[i] = (bootstrap if i == bootstrap else 0, 0)
                self.committed_data[i] = (int(EntryType.EntryNormal), b"")
        for id in self.ids:
            # Nodes outside the initial configuration start uninitialized (empty
            # ConfState) and join when a leader adds them and replicates to them.
            member = id in initial_voters or id in learners
            cs = _copy_cs(initial) if member else ConfState()
            image = DurableImage(conf_state=_copy_cs(cs))
            if member and bootstrap:
                image.base_index = image.base_term = bootstrap
                image.hard_state = HardState(term=bootstrap, commit=bootstrap)
                image.applied = bootstrap
            node = NodeState(id=id, image=image, conf_state=cs)
            node.applied_index = image.applied
            self.nodes[id] = node
            self._boot(node)

    # ------------------------------------------------------------------
    # Access

    def node(self, id: int) -> RawNode:
        rn = self.nodes[id].rn
        assert rn is not None, f"node {id} is down"
        return rn

    def raft(self, id: int) -> Raft:
        return self.node(id).raft

    def storage(self, id: int) -> HarnessStorage:
        store = self.nodes[id].store
        assert store is not None, f"node {id} is down"
        return store

    def up_ids(self) -> list[int]:
        return [id for id in self.ids if self.nodes[id].up]

    def leader(self) -> int | None:
        """The live leader with the highest term, if any."""
        best: tuple[int, int] | None = None
        for id in self.up_ids():
            r = self.raft(id)
            if r.state == StateRole.Leader and (best is None or r.term > best[0]):
                best = (r.term, id)
        return None if best is None else best[1]

    def applied_log(self, id: int) -> list[Applied]:
        return list(self.nodes[id].applied_log)

    def applied_data(self, id: int) -> list[bytes]:
        return [d for _, _, d in self.nodes[id].applied_log]

    def log_terms(self, id: int) -> list[tuple[int, int]]:
        """``(index, term)`` of every entry in the node's log, unstable tail included."""
        log = self.raft(id).raft_log
        return [(i, log.term(i)) for i in range(log.first_index(), log.last_index() + 1)]

    def pending_count(self, id: int) -> int:
        return len(self.nodes[id].pending)

    # ------------------------------------------------------------------
    # Filters (the Raft-level Network's API)

    def drop(self, from_: int, to: int, perc: float) -> None:
        self._dropm[(from_, to)] = perc

    def cut(self, one: int, other: int) -> None:
        self.drop(one, other, 1.0)
        self.drop(other, one, 1.0)

    def isolate(self, id: int) -> None:
        for nid in self.ids:
            if nid != id:
                self.cut(id, nid)

    def ignore(self, t: MessageType) -> None:
        self._ignorem.add(t)

    def recover(self) -> None:
        self._dropm.clear()
        self._ignorem.clear()

    def _blocked(self, src: int, m: Message) -> bool:
        return m.msg_type in self._ignorem or self._dropm.get((src, m.to), 0.0) >= 1.0

    def _lost(self, src: int, m: Message) -> bool:
        if self._blocked(src, m):
            return True
        perc = self._dropm.get((src, m.to), 0.0)
        return perc > 0.0 and self._rng.randrange(0, 1_000_000) < perc * 1_000_000

    # ------------------------------------------------------------------
    # Inputs

    def tick(self, id: int, n: int = 1) -> None:
        node = self.nodes[id]
        for _ in range(n):
            if node.rn is None:
                return
            node.rn.tick()
            self._handle_readies(node)

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for id in self.up_ids():
                self.tick(id)

    def campaign(self, id: int) -> None:
        node = self.nodes[id]
        self.node(id).campaign()
        self._handle_readies(node)

    def propose(self, id: int, data: bytes) -> bool:
        """Propose on ``id``; False if the proposal was dropped."""
        node = self.nodes[id]
        try:
            self.node(id).propose(b"", data)
        except ProposalDropped:
            return False
        finally:
            self._handle_readies(node)
        return True

    def propose_conf_change(self, id: int, cc: ConfChange | ConfChangeV2) -> bool:
        """Propose a membership change on ``id``; False if the proposal was dropped."""
        node = self.nodes[id]
        try:
            self.node(id).propose_conf_change(b"", cc)
        except ProposalDropped:
            return False
        finally:
            self._handle_readies(node)
        return True

    def members(self) -> set[int]:
        """Voters (both halves) and learners of the configuration the newest leader applied."""
        lead = self.leader()
        cs = self.nodes[lead].conf_state if lead is not None else ConfState(voters=self.ids)
        return {*cs.voters, *cs.voters_outgoing, *cs.learners, *cs.learners_next}

    def read_index(self, id: int, ctx: bytes) -> None:
        """Ask ``id`` for a linearizable read; its answer must cover every commit known now."""
        assert ctx not in self.reads, "read contexts must be unique"
        self.reads[ctx] = max(self.committed, default=0)
        node = self.nodes[id]
        self.node(id).read_index(ctx)
        self._handle_readies(node)

    def transfer_leader(self, id: int, transferee: int) -> None:
        node = self.nodes[id]
        self.node(id).transfer_leader(transferee)
        self._handle_readies(node)

    def step(self, id: int, m: Message) -> None:
        """Step a hand-made message into ``id`` (errors propagate)."""
        node = self.nodes[id]
        try:
            self.node(id).step(m)
        finally:
            self._handle_readies(node)

    # ------------------------------------------------------------------
    # Network

    def deliver(self, i: int = 0) -> bool:
        """Deliver the ``i``-th in-flight envelope. False if it was lost."""
        env = self.in_flight.pop(i)
        m = env.msg
        node = self.nodes[m.to]
        if node.rn is None or self._blocked(env.src, m):
            self._lose(env)
            self._drain_reports()
            return False
        if env.persisted:
            durable = self._durable_number.get((env.src, env.incarnation), 0)
            assert durable >= env.ready, (
                f"persisted message {m.msg_type.name} {env.src}->{m.to} delivered before "
                f"Ready {env.ready} was durable (durable: {durable})"
            )
        try:
            node.rn.step(m)
        except RaftError:
            pass  # as a store would: a dropped forward, a response from a removed peer
        if m.msg_type == MessageType.MsgSnapshot:
            self._reports.append((env, SnapshotStatus.Finish))
        self._handle_readies(node)
        return True

    def deliver_all(self, limit: int = 100_000) -> int:
        """Deliver in FIFO order until nothing is in flight. Returns how many were stepped."""
        n = 0
        while self.in_flight:
            assert n < limit, f"network did not quiesce after {limit} deliveries"
            self.deliver(0)
            n += 1
        return n

    def deliver_where(self, pred: Callable[[Message], bool]) -> int:
        """Deliver, in order, every in-flight envelope whose message satisfies ``pred``."""
        n = 0
        i = 0
        while i < len(self.in_flight):
            if pred(self.in_flight[i].msg):
                self.deliver(i)
                n += 1
            else:
                i += 1
        return n

    def drop_in_flight(self, i: int) -> None:
        self._lose(self.in_flight.pop(i))
        self._drain_reports()

    def _lose(self, env: Envelope) -> None:
        if env.msg.msg_type == MessageType.MsgSnapshot:
            self._reports.append((env, SnapshotStatus.Failure))

    def _drain_reports(self) -> None:
        """Tell senders how their snapshots fared (a store's ``report_snapshot``)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._reports:
                env, status = self._reports.pop(0)
                src = self.nodes[env.src]
                if src.rn is not None and src.incarnation == env.incarnation:
                    src.rn.report_snapshot(env.msg.to, status)
                    self._handle_readies(src)
        finally:
            self._draining = False

    def duplicate(self, i: int) -> None:
        env = self.in_flight[i]
        self.in_flight.append(dataclasses.replace(env, msg=clone_message(env.msg)))

    def in_flight_msgs(self) -> list[Message]:
        return [e.msg for e in self.in_flight]

    def sent_by_type(self, t: MessageType) -> list[Message]:
        return [e.msg for e in self.sent if e.msg.msg_type == t]

    def sent_by(self, id: int, t: MessageType | None = None) -> list[Message]:
        return [e.msg for e in self.sent if e.src == id and (t is None or e.msg.msg_type == t)]

    def _send(self, node: NodeState, msgs: Iterable[Message], ready: int, persisted: bool) -> None:
        for m in msgs:
            # Forwarded proposals and reads keep their origin; a transfer names its target.
            assert m.from_ == node.id or m.msg_type in _FORWARDED, (
                f"node {node.id} sends {m.msg_type.name} as {m.from_}"
            )
            if persisted:
                durable = self._durable_number.get((node.id, node.incarnation), 0)
                assert durable >= ready, (
                    f"node {node.id} sends persisted {m.msg_type.name} of Ready {ready} "
                    f"before it is durable ({durable})"
                )
            self._seq += 1
            env = Envelope(clone_message(m), node.id, node.incarnation, ready, persisted, self._seq)
            self.sent.append(env)
            if self._lost(node.id, m):
                self._lose(env)
            else:
                self.in_flight.append(env)

    # ------------------------------------------------------------------
    # Disk

    def fsync(self, id: int, count: int | None = None) -> None:
        """Make the pending writes of ``id`` durable (all, or the oldest ``count``) and
        release their held messages. Readies become durable in order."""
        node = self.nodes[id]
        if node.rn is None:
            return
        if self.mode == SYNC:
            return
        image = node.image
        held: list[tuple[int, Message]] = []
        last = 0
        batch = node.pending if count is None else node.pending[:count]
        for w in batch:
            if w.snapshot is not None:
                # A snapshot and the state machine it carries are written atomically.
                image.apply_snapshot(w.snapshot)
                image.applied = w.snapshot.metadata.index
                image.applied_log = list(w.snapshot_state)
            image.append(w.entries)
            if w.hs is not None:
                image.set_hard_state(w.hs)
            held.extend((w.number, m) for m in w.messages)
            last = w.number
        del node.pending[: len(batch)]
        if not node.pending:
            # The state machine is written with (after) the log it applied.
            self._persist_state_machine(node)
        if last:
            self._durable_number[(id, node.incarnation)] = last
            node.rn.on_persist_ready(last)
            for number, m in held:
                self._send(node, [m], number, persisted=True)
        self._handle_readies(node)

    def fsync_all(self) -> None:
        for id in self.up_ids():
            self.fsync(id)

    def compact(self, id: int, compact_index: int) -> None:
        """Compact ``id``'s log below ``compact_index`` (at most its durable applied index)."""
        node = self.nodes[id]
        store = self.storage(id)
        bound = min(node.applied_index, node.image.applied, store.hard_state().commit)
        assert compact_index <= bound, f"compact {compact_index} past applied {bound}"
        store.compact(compact_index)
        node.image.compact(compact_index)

    def compact_bound(self, id: int) -> int:
        """The highest index ``compact`` accepts for ``id``."""
        node = self.nodes[id]
        store = self.storage(id)
        return min(node.applied_index, node.image.applied, store.hard_state().commit)

    def crash(self, id: int) -> None:
        """Lose everything of ``id`` that is not durable."""
        node = self.nodes[id]
        if node.rn is None:
            return
        node.rn = None
        node.store = None
        node.pending = []
        node.incarnation += 1
        node.applied_index = node.image.applied
        node.applied_log = list(node.image.applied_log)
        node.conf_state = _copy_cs(node.image.conf_state)

    def restart(self, id: int) -> None:
        """Rebuild ``id`` from its durable image."""
        node = self.nodes[id]
        if node.rn is not None:
            return
        self._boot(node)

    def _boot(self, node: NodeState) -> None:
        image = node.image
        node.store = image.build_storage()
        cfg = dataclasses.replace(self.base_config, id=node.id, applied=image.applied)
        rng = SplitMix64((self.seed << 20) ^ (node.id << 8) ^ node.incarnation)
        node.rn = RawNode(cfg, node.store, rng=rng)
        node.last_commit = node.rn.raft.raft_log.committed
        assert node.last_commit == image.hard_state.commit
        self._observe(node)
        self._handle_readies(node)

    # ------------------------------------------------------------------
    # Driving Readies

    def stabilize(self, limit: int = 1000) -> None:
        """Deliver and fsync until nothing is in flight or pending."""
        for _ in range(limit):
            self.deliver_all()
            if self.mode == ASYNC and any(self.nodes[i].pending for i in self.up_ids()):
                self.fsync_all()
                continue
            if not self.in_flight:
                return
        raise AssertionError(f"did not stabilize within {limit} rounds")

    def _handle_readies(self, node: NodeState) -> None:
        rn = node.rn
        if rn is None:
            return
        while rn.has_ready():
            rd = rn.ready()
            if rd.messages:
                assert rn.raft.state == StateRole.Leader, (
                    f"non-leader {node.id} put {[m.msg_type.name for m in rd.messages]} in "
                    "rd.messages (they must wait for persistence)"
                )
            for rs in rd.read_states:
                self._check_read(node, rs.index, rs.request_ctx)
            if self.mode == SYNC:
                self._sync_ready(node, rn, rd)
            else:
                self._async_ready(node, rn, rd)
            if (
                self.apply_unpersisted_limit
                and rd.ss is not None
                and rd.ss.raft_state == StateRole.Leader
            ):
                rn.raft.set_max_apply_unpersisted_log_limit(self.apply_unpersisted_limit)
            self._observe(node)
        self._drain_reports()

    def _check_read(self, node: NodeState, index: int, ctx: bytes) -> None:
        asked = self.reads.get(ctx)
        assert asked is not None, f"node {node.id} got a ReadState for unknown ctx {ctx!r}"
        assert index >= asked, (
            f"linearizability: read {ctx!r} on node {node.id} answered at index {index}, "
            f"but {asked} was already committed when it was asked"
        )
        self.read_answers.append((node.id, index, ctx))

    def _sync_ready(self, node: NodeState, rn: RawNode, rd: Ready) -> None:
        store = node.store
        assert store is not None
        image = node.image
        number = rd.number
        self._send(node, rd.messages, number, persisted=False)
        if not rd.snapshot.is_empty():
            store.apply_snapshot(_copy_snapshot(rd.snapshot))
            image.apply_snapshot(rd.snapshot)
            self._restore_state_machine(node, rd.snapshot)
            self._persist_state_machine(node)
        if rd.entries:
            store.append(rd.entries)
            image.append([_rec(e) for e in rd.entries])
        if rd.hs is not None:
            store.set_hardstate(_copy_hs(rd.hs))
            image.set_hard_state(rd.hs)
        self._durable_number[(node.id, node.incarnation)] = number
        self._apply(node, rn, rd.committed_entries)
        self._send(node, rd.persisted_messages, number, persisted=True)
        light = rn.advance(rd)
        if light.commit_index is not None:
            store.mut_hard_state().commit = light.commit_index
            image.set_commit(light.commit_index)
        self._send(node, light.messages, 0, persisted=False)
        self._apply(node, rn, light.committed_entries)
        rn.advance_apply()

    def _async_ready(self, node: NodeState, rn: RawNode, rd: Ready) -> None:
        store = node.store
        assert store is not None
        self._send(node, rd.messages, rd.number, persisted=False)
        w = _PendingWrite(rd.number, None, [], None, list(rd.persisted_messages))
        if not rd.snapshot.is_empty():
            store.apply_snapshot(_copy_snapshot(rd.snapshot))
            w.snapshot = _copy_snapshot(rd.snapshot)
            self._restore_state_machine(node, rd.snapshot)
            w.snapshot_state = list(node.applied_log)
        if rd.entries:
            store.append(rd.entries)
            w.entries = [_rec(e) for e in rd.entries]
        if rd.hs is not None:
            store.set_hardstate(_copy_hs(rd.hs))
            w.hs = _copy_hs(rd.hs)
        node.pending.append(w)
        self._apply(node, rn, rd.committed_entries)
        rn.advance_append_async(rd)
        rn.advance_apply()

    # ------------------------------------------------------------------
    # The state machine

    def _apply(self, node: NodeState, rn: RawNode, ents: list[Entry]) -> None:
        if not ents:
            return
        committed = rn.raft.raft_log.committed
        for e in ents:
            assert e.index == node.applied_index + 1, (
                f"node {node.id} handed entry {e.index} after applying {node.applied_index} "
                "(re-applied or skipped)"
            )
            assert e.index <= committed, f"node {node.id} applies uncommitted entry {e.index}"
            seen = self.applied_entries.setdefault(e.index, (e.term, e.data))
            assert seen == (e.term, e.data), (
                f"state machine safety: node {node.id} applies {(e.term, e.data)} at "
                f"{e.index}, another node applied {seen}"
            )
            node.applied_index = e.index
            assert node.store is not None
            node.store.applied_index = e.index
            if e.entry_type == EntryType.EntryNormal:
                if e.data:
                    node.applied_log.append((e.index, e.term, e.data))
            else:
                if e.entry_type == EntryType.EntryConfChange:
                    cc = decode_conf_change(e.data).into_v2()
                else:
                    cc = decode_conf_change_v2(e.data)
                result: ConfState | None
                try:
                    result = rn.apply_conf_change(cc)
                except ConfChangeError:
                    result = None  # an invalid change is skipped, as a store would
                else:
                    node.conf_state = _copy_cs(result)
                    assert node.store is not None
                    node.store.set_conf_state(_copy_cs(result))
                # Every node must reach the same configuration at the same index.
                key = None if result is None else _cs_key(result)
                seen_cs = self.conf_after.setdefault(e.index, key)
                assert seen_cs == key, (
                    f"node {node.id} applied conf change {e.index} as {key}, another as {seen_cs}"
                )
        if self.mode == SYNC:
            self._persist_state_machine(node)

    def _persist_state_machine(self, node: NodeState) -> None:
        image = node.image
        image.applied = node.applied_index
        image.applied_log = list(node.applied_log)
        image.conf_state = _copy_cs(node.conf_state)

    def _restore_state_machine(self, node: NodeState, snap: Snapshot) -> None:
        # MemStorage snapshots carry no data: rebuild the state machine from the
        # committed entries the harness has seen (every snapshot is of a
        # committed prefix, or that is itself a safety violation).
        idx = snap.metadata.index
        assert idx >= node.applied_index, f"snapshot {idx} behind applied {node.applied_index}"
        log: list[Applied] = []
        for i in range(1, idx + 1):
            assert i in self.committed, f"node {node.id} got a snapshot at {idx}; {i} not committed"
            t = self.committed[i][0]
            entry_type, data = self.committed_data[i]
            seen = self.applied_entries.setdefault(i, (t, data))
            assert seen == (t, data), f"snapshot entry {i} differs from an applied one"
            if entry_type == EntryType.EntryNormal and data:
                log.append((i, t, data))
        # The snapshot's configuration is the one its entries lead to.
        expected: ConfState | None = self._initial_conf
        for i in range(1, idx + 1):
            if self.committed_data[i][0] != EntryType.EntryNormal:
                if i not in self.conf_after:
                    expected = None  # nobody applied it yet: cannot tell
                    break
                expected = self.conf_after[i] or expected
        if expected is not None:
            assert _cs_key(snap.metadata.conf_state) == expected, (
                f"snapshot {idx} carries {snap.metadata.conf_state}, its log leads to {expected}"
            )
        node.applied_log = log
        node.applied_index = idx
        assert node.store is not None
        node.store.applied_index = idx
        node.conf_state = _copy_cs(snap.metadata.conf_state)

    # ------------------------------------------------------------------
    # Observation and invariants

    def _observe(self, node: NodeState) -> None:
        rn = node.rn
        assert rn is not None
        r = rn.raft
        if r.state == StateRole.Leader:
            prev = self.leaders.setdefault(r.term, r.id)
            assert prev == r.id, f"two leaders at term {r.term}: {prev} and {r.id}"
        log = r.raft_log
        c = log.committed
        assert c >= node.last_commit, (
            f"node {node.id} commit went backwards: {node.last_commit} -> {c}"
        )
        if c > node.last_commit:
            self.commit_history.append((node.id, c))
            lo = max(node.last_commit + 1, log.first_index())
            ents = log.slice(lo, c + 1, None, _CTX) if lo <= c else []
            for e in ents:
                i, t = e.index, e.term
                seen = self.committed.get(i)
                if seen is None:
                    self.committed[i] = (t, r.term)
                    self.committed_data[i] = (int(e.entry_type), e.data)
                else:
                    assert seen[0] == t, (
                        f"node {node.id} committed ({i}, term {t}) but ({i}, term {seen[0]}) "
                        "was committed before"
                    )
                    assert self.committed_data[i] == (int(e.entry_type), e.data)
                    if r.term < seen[1]:
                        self.committed[i] = (t, r.term)
            node.last_commit = c

    def check_invariants(self) -> None:
        """Raft's safety properties over every live node and the whole history."""
        witness = self._log_witness
        for id in self.up_ids():
            node = self.nodes[id]
            self._observe(node)
            r = self.raft(id)
            log = r.raft_log
            first, last = log.first_index(), log.last_index()
            # Log matching, by induction: an (index, term) pair must always name
            # the same entry with the same predecessor term, in every log ever.
            prev_term: int | None
            try:
                prev_term = log.term(first - 1)
            except StorageError:
                prev_term = None  # compacted away: only the entry itself is compared
            if last >= first:
                for e in log.all_entries():
                    key = (e.index, e.term)
                    val = (prev_term, int(e.entry_type), e.data)
                    seen = witness.get(key)
                    if seen is None or (seen[0] is None and prev_term is not None):
                        witness[key] = val
                    if seen is not None:
                        assert seen[1:] == val[1:] and (
                            seen[0] is None or prev_term is None or seen[0] == prev_term
                        ), f"log matching: node {id} has {key} -> {val}, seen elsewhere {seen}"
                    prev_term = e.term
            # Leader completeness: every entry committed at or before this
            # leader's term is in its log.
            if r.state == StateRole.Leader:
                for i, (t, obs_term) in self.committed.items():
                    if obs_term <= r.term and i >= first:
                        assert i <= last and log.term(i) == t, (
                            f"leader completeness: leader {id} (term {r.term}) lacks committed "
                            f"({i}, term {t})"
                        )
        for id in self.ids:
            node = self.nodes[id]
            assert node.image.applied <= node.image.hard_state.commit or node.image.applied == 0

    def assert_converged(self, ids: Iterable[int] | None = None) -> None:
        """Every committed entry reached the state machine of every live node (of ``ids``)."""
        max_committed = max(self.committed, default=0)
        assert sorted(self.committed) == list(range(1, max_committed + 1)), "gap in commits"
        expected: list[Applied] = []
        for i in range(1, max_committed + 1):
            t = self.committed[i][0]
            entry_type, data = self.committed_data[i]
            assert self.applied_entries.get(i, (t, data)) == (t, data)
            if entry_type == EntryType.EntryNormal and data:
                expected.append((i, t, data))
        for id in self.up_ids() if ids is None else ids:
            node = self.nodes[id]
            assert node.rn is not None, f"node {id} is down"
            assert node.applied_index >= max_committed, (
                f"node {id} applied {node.applied_index} < committed {max_committed}"
            )
            got = [x for x in node.applied_log if x[0] <= max_committed]
            assert got == expected, f"node {id} state machine differs from the committed log"
