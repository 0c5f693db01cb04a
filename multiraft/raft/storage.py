"""The Storage protocol the Raft core reads from, and MemStorage, its in-memory reference.

Theory of operation
-------------------
The core never writes to storage: the application persists what a ``Ready``
hands it (snapshot, entries, hard state) and the core reads back through
:class:`Storage`. Errors are the answer: ``Compacted`` below the first index,
``Unavailable`` past the last one, ``SnapshotTemporarilyUnavailable`` while a
snapshot is being built, ``LogTemporarilyUnavailable`` while entries are being
fetched asynchronously. Any other :class:`~multiraft.raft.errors.StorageError`
makes the group inoperable.

:class:`MemStorage` merges raft-rs's ``MemStorage`` and ``MemStorageCore``:
there is no lock to take, so ``rl()`` and ``wl()`` simply return ``self``.
It is a *verified fake*: the conformance suite in ``tests/raft/test_storage.py``
runs against it and against the LMDB storage alike.

Invariants of MemStorage:

* ``_entries[i].index == _offset + i`` (the log is contiguous), so term
  lookups are O(1) and slices O(hi - lo) list arithmetic.
* ``first_index() == _offset`` and ``last_index() == _offset + len(_entries) - 1``,
  so ``first_index() <= last_index() + 1``.
* ``term(snapshot index)`` is answerable from the snapshot metadata even though
  that entry is gone. As in raft-rs, ``compact`` does not move the snapshot
  metadata, so after a compaction ``term(first_index() - 1)`` is ``Compacted``.

Entry objects are shared, not copied: once an entry is appended to a log it is
treated as immutable by everyone.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from multiraft.raft.errors import (
    Compacted,
    LogTemporarilyUnavailable,
    RaftFatal,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from multiraft.raft.types import (
    ConfState,
    Entry,
    HardState,
    RaftState,
    Snapshot,
    SnapshotMetadata,
)
from multiraft.raft.util import take_limited

__all__ = ["GetEntriesContext", "GetEntriesFor", "MemStorage", "Storage"]


class GetEntriesFor(IntEnum):
    """Why the core asks :meth:`Storage.entries` for entries."""

    #: Replicating to a follower (``to``, ``term``, ``aggressively`` are set).
    SendAppend = 0
    #: Collecting committed entries for a Ready.
    GenReady = 1
    #: Scanning for unapplied conf changes before campaigning for a transfer.
    TransferLeader = 2
    #: Scanning for unapplied conf changes after a vote fast-forwarded commit.
    CommitByVote = 3
    #: A caller outside the core; ``can_async`` is its own choice.
    Empty = 4


class GetEntriesContext:
    """The context of a :meth:`Storage.entries` call (raft-rs ``GetEntriesContext``).

    A synchronous storage ignores it. An asynchronous one may, when
    :meth:`can_async` is true, start a background fetch, raise
    ``LogTemporarilyUnavailable`` and later hand the context back to
    ``RawNode.on_entries_fetched``.

    Invariant: ``to``, ``term`` and ``aggressively`` are meaningful only for
    ``GetEntriesFor.SendAppend``. Instances are immutable by convention; the
    argument-less constructors return shared singletons.
    """

    __slots__ = ("_can_async", "aggressively", "term", "to", "what")

    what: GetEntriesFor
    #: The follower the entries are for (SendAppend only).
    to: int
    #: The leader's term when the fetch was requested (SendAppend only).
    term: int
    #: Whether the caller wants to exhaust all entries (SendAppend only).
    aggressively: bool

    def __init__(
        self,
        what: GetEntriesFor,
        *,
        to: int = 0,
        term: int = 0,
        aggressively: bool = False,
        can_async: bool = False,
    ) -> None:
        self.what = what
        self.to = to
        self.term = term
        self.aggressively = aggressively
        self._can_async = can_async

    @staticmethod
    def empty(can_async: bool) -> GetEntriesContext:
        """A context for callers outside the core; they choose whether async is allowed."""
        return GetEntriesContext(GetEntriesFor.Empty, can_async=can_async)

    @staticmethod
    def send_append(to: int, term: int, aggressively: bool) -> GetEntriesContext:
        """Entries for a MsgAppend to ``to`` at leader term ``term``; may be fetched async."""
        return GetEntriesContext(
            GetEntriesFor.SendAppend, to=to, term=term, aggressively=aggressively, can_async=True
        )

    @staticmethod
    def gen_ready() -> GetEntriesContext:
        """Committed entries for a Ready (never async)."""
        return _GEN_READY

    @staticmethod
    def transfer_leader() -> GetEntriesContext:
        """Conf-change scan before a transfer campaign (never async)."""
        return _TRANSFER_LEADER

    @staticmethod
    def commit_by_vote() -> GetEntriesContext:
        """Conf-change scan after a vote fast-forwarded commit (never async)."""
        return _COMMIT_BY_VOTE

    def can_async(self) -> bool:
        """Whether the storage may answer ``LogTemporarilyUnavailable`` and fetch later."""
        return self._can_async

    def _key(self) -> tuple[GetEntriesFor, int, int, bool, bool]:
        return (self.what, self.to, self.term, self.aggressively, self._can_async)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GetEntriesContext):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self.what == GetEntriesFor.SendAppend:
            return (
                f"GetEntriesContext.send_append(to={self.to}, term={self.term}, "
                f"aggressively={self.aggressively})"
            )
        if self.what == GetEntriesFor.Empty:
            return f"GetEntriesContext.empty({self._can_async})"
        return f"GetEntriesContext({self.what.name})"


_GEN_READY = GetEntriesContext(GetEntriesFor.GenReady)
_TRANSFER_LEADER = GetEntriesContext(GetEntriesFor.TransferLeader)
_COMMIT_BY_VOTE = GetEntriesContext(GetEntriesFor.CommitByVote)


class Storage(Protocol):
    """What the Raft core reads: the stable log, its bounds, the hard state and snapshots.

    Invariant: ``first_index() <= last_index() + 1``, and ``term(i)`` answers for
    every ``i`` in ``[first_index() - 1, last_index()]`` (the entry before the
    first is kept for matching even though its payload is gone).
    """

    def initial_state(self) -> RaftState:
        """The hard state and membership at startup.

        An initialized storage (non-empty conf state) has ``hs.commit`` in
        ``[first_index() - 1, last_index()]``.
        """
        ...

    def entries(
        self, low: int, high: int, max_size: int | None, context: GetEntriesContext
    ) -> list[Entry]:
        """The entries in ``[low, high)``, cut to ``max_size`` bytes but never empty.

        Returns:
            A new list the caller owns; at least one entry if ``low < high``.

        Raises:
            Compacted: ``low < first_index()``.
            LogTemporarilyUnavailable: fetching asynchronously (only if
                ``context.can_async()``).
            RaftFatal: ``high > last_index() + 1`` (a caller bug).
        """
        ...

    def term(self, idx: int) -> int:
        """The term of entry ``idx``, for ``idx`` in ``[first_index() - 1, last_index()]``.

        Raises:
            Compacted: ``idx`` is below the retained range.
            Unavailable: ``idx > last_index()``.
        """
        ...

    def first_index(self) -> int:
        """The first index available through ``entries``: truncated index + 1 (1 when fresh)."""
        ...

    def last_index(self) -> int:
        """The index of the last stable entry, or the snapshot index if the log is empty."""
        ...

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        """The most recent snapshot, with ``metadata.index >= request_index``.

        Raises:
            SnapshotTemporarilyUnavailable: still being built; the core retries later.
        """
        ...


def _conf_state_of(cs: ConfState | tuple[list[int], list[int]]) -> ConfState:
    if isinstance(cs, ConfState):
        return cs
    voters, learners = cs
    return ConfState(voters=list(voters), learners=list(learners))


def _copy_conf_state(cs: ConfState) -> ConfState:
    return ConfState(
        voters=list(cs.voters),
        learners=list(cs.learners),
        voters_outgoing=list(cs.voters_outgoing),
        learners_next=list(cs.learners_next),
        auto_leave=cs.auto_leave,
    )


class MemStorage:
    """An in-memory :class:`Storage` holding the log, the hard state and the conf state.

    Meant for tests and as the executable specification of the protocol. It
    keeps no state-machine data, so the snapshots it produces carry metadata
    only.

    Invariant: the entries are contiguous and start at ``_offset ==
    first_index()``; the snapshot metadata (``_snap_index``, ``_snap_term``)
    answers ``term`` at the snapshot index.
    """

    __slots__ = (
        "_conf_state",
        "_entries",
        "_get_entries_context",
        "_hard_state",
        "_offset",
        "_snap_index",
        "_snap_term",
        "_trigger_log_unavailable",
        "_trigger_snap_unavailable",
    )

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._conf_state = ConfState()
        #: ``_entries[i]`` is log index ``_offset + i``.
        self._entries: list[Entry] = []
        #: The first index; kept apart from the entries so that compacting
        #: the whole log does not lose it (raft-rs derives it from
        #: ``entries[0]`` and falls back to the snapshot index).
        self._offset = 1
        #: Metadata of the last applied snapshot (raft-rs keeps the whole
        #: SnapshotMetadata; only these two fields are ever read).
        self._snap_index = 0
        self._snap_term = 0
        #: The next ``snapshot()`` raises SnapshotTemporarilyUnavailable, once.
        self._trigger_snap_unavailable = False
        #: ``entries()`` raises LogTemporarilyUnavailable for async-capable callers.
        self._trigger_log_unavailable = False
        #: The context of the last call answered with LogTemporarilyUnavailable.
        self._get_entries_context: GetEntriesContext | None = None

    # ------------------------------------------------------------------
    # Construction

    @classmethod
    def new(cls) -> MemStorage:
        """An empty, uninitialized storage (first index 1, last index 0)."""
        return cls()

    @classmethod
    def new_with_conf_state(cls, conf_state: ConfState | tuple[list[int], list[int]]) -> MemStorage:
        """A storage initialized with a membership: a ConfState or ``(voters, learners)``.

        Use the same membership on every node of a fresh cluster.
        """
        store = cls()
        store.initialize_with_conf_state(conf_state)
        return store

    def initialize_with_conf_state(
        self, conf_state: ConfState | tuple[list[int], list[int]]
    ) -> None:
        """Set the initial membership of a still uninitialized storage.

        The log stays empty at index 0: every node must start from the same
        state, or new nodes must catch up by snapshot first (what a real store
        does by bootstrapping at a non-zero index).

        Raises:
            RaftFatal: the storage is already initialized.
        """
        if self._conf_state != ConfState():
            raise RaftFatal("MemStorage is already initialized")
        self._conf_state = _conf_state_of(conf_state)

    def rl(self) -> MemStorage:
        """raft-rs's read lock; there is nothing to lock here."""
        return self

    def wl(self) -> MemStorage:
        """raft-rs's write lock; there is nothing to lock here."""
        return self

    # ------------------------------------------------------------------
    # Writes (the application's side)

    def set_hardstate(self, hs: HardState) -> None:
        """Save (a copy of) the current hard state.

        A copy, as raft-rs takes it by value: ``apply_snapshot`` and ``commit_to``
        mutate the stored one, which must not be the caller's (e.g. ``Ready.hs``).
        """
        self._hard_state = HardState(hs.term, hs.vote, hs.commit)

    def hard_state(self) -> HardState:
        """The stored hard state (the live object)."""
        return self._hard_state

    def mut_hard_state(self) -> HardState:
        """The stored hard state, for in-place changes."""
        return self._hard_state

    def set_conf_state(self, cs: ConfState) -> None:
        """Save the current membership."""
        self._conf_state = cs

    def commit_to(self, index: int) -> None:
        """Set ``hs.commit = index`` and ``hs.term`` to that entry's term.

        Raises:
            RaftFatal: there is no entry at ``index`` in the log.
        """
        pos = index - self._offset
        if not 0 <= pos < len(self._entries):
            raise RaftFatal(f"commit_to {index} but the entry does not exist")
        self._hard_state.commit = index
        self._hard_state.term = self._entries[pos].term

    def commit_to_and_set_conf_states(self, idx: int, cs: ConfState | None = None) -> None:
        """:meth:`commit_to` then, if given, replace the conf state. For tests."""
        self.commit_to(idx)
        if cs is not None:
            self._conf_state = cs

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the log with a snapshot.

        Drops every entry, sets ``hs.commit`` to the snapshot index, raises
        ``hs.term`` to the snapshot term if lower, and adopts the snapshot's
        conf state.

        Raises:
            SnapshotOutOfDate: the snapshot index is below ``first_index()``.
        """
        meta = snapshot.metadata
        index = meta.index
        if self.first_index() > index:
            raise SnapshotOutOfDate()
        self._snap_index = index
        self._snap_term = meta.term
        hs = self._hard_state
        hs.term = max(hs.term, meta.term)
        hs.commit = index
        self._entries = []
        self._offset = index + 1
        # Copied because raft-rs moves it out of the snapshot: the caller's
        # snapshot and this storage must not alias the same lists.
        self._conf_state = _copy_conf_state(meta.conf_state)

    def compact(self, compact_index: int) -> None:
        """Discard the entries below ``compact_index``; a no-op at or below ``first_index()``.

        The application must not compact past ``RaftLog.applied``.

        Raises:
            RaftFatal: ``compact_index > last_index() + 1``.
        """
        if compact_index <= self.first_index():
            return
        last = self.last_index()
        if compact_index > last + 1:
            raise RaftFatal(f"compact not received raft logs: {compact_index}, last index: {last}")
        del self._entries[: compact_index - self._offset]
        self._offset = compact_index

    def append(self, ents: list[Entry]) -> None:
        """Persist ``ents``, first truncating any stored entries they overwrite.

        Raises:
            RaftFatal: ``ents`` start below ``first_index()`` (overwriting compacted
                entries) or leave a gap after ``last_index()``.
        """
        if not ents:
            return
        first = self.first_index()
        start = ents[0].index
        if first > start:
            raise RaftFatal(
                f"overwrite compacted raft logs, compacted: {first - 1}, append: {start}"
            )
        last = self.last_index()
        if last + 1 < start:
            raise RaftFatal(
                f"raft logs should be continuous, last index: {last}, new appended: {start}"
            )
        stored = self._entries
        del stored[start - first :]
        stored.extend(ents)

    # ------------------------------------------------------------------
    # Test hooks

    def trigger_snap_unavailable(self) -> None:
        """Make the next :meth:`snapshot` raise SnapshotTemporarilyUnavailable."""
        self._trigger_snap_unavailable = True

    def trigger_log_unavailable(self, v: bool) -> None:
        """While set, :meth:`entries` raises LogTemporarilyUnavailable to async-capable callers."""
        self._trigger_log_unavailable = v

    def take_get_entries_context(self) -> GetEntriesContext | None:
        """The context of the last deferred :meth:`entries` call, cleared on read."""
        ctx = self._get_entries_context
        self._get_entries_context = None
        return ctx

    # ------------------------------------------------------------------
    # Storage protocol

    def initial_state(self) -> RaftState:
        """A copy of the stored hard state and conf state."""
        hs = self._hard_state
        return RaftState(HardState(hs.term, hs.vote, hs.commit), _copy_conf_state(self._conf_state))

    def entries(
        self, low: int, high: int, max_size: int | None, context: GetEntriesContext
    ) -> list[Entry]:
        """See :meth:`Storage.entries`."""
        first = self._offset
        if low < first:
            raise Compacted()
        last = first + len(self._entries) - 1
        if high > last + 1:
            raise RaftFatal(f"index out of bound (last: {last + 1}, high: {high})")
        if self._trigger_log_unavailable and context.can_async():
            self._get_entries_context = context
            raise LogTemporarilyUnavailable()
        if low > high:
            raise RaftFatal(f"invalid entries range [{low}, {high})")
        # NB: raft-rs indexes ``entries[0]`` here and so panics on an empty
        # range over an empty log; an empty range simply has no entries.
        return take_limited(self._entries, low - first, high - first, max_size)

    def term(self, idx: int) -> int:
        """See :meth:`Storage.term`."""
        if idx == self._snap_index:
            return self._snap_term
        pos = idx - self._offset
        if pos < 0:
            raise Compacted()
        ents = self._entries
        if pos >= len(ents):
            raise Unavailable()
        return ents[pos].term

    def first_index(self) -> int:
        """See :meth:`Storage.first_index`."""
        return self._offset

    def last_index(self) -> int:
        """See :meth:`Storage.last_index`."""
        return self._offset + len(self._entries) - 1

    def snapshot(self, request_index: int = 0, to: int = 0) -> Snapshot:
        """A metadata-only snapshot at ``hs.commit`` (see :meth:`Storage.snapshot`).

        Every entry up to ``hs.commit`` is assumed applied. If that is below
        ``request_index`` the index (not the term) is raised to it, as raft-rs
        does. With no arguments this is raft-rs's ``MemStorageCore::snapshot``.

        Raises:
            SnapshotTemporarilyUnavailable: once after :meth:`trigger_snap_unavailable`.
            RaftFatal: ``hs.commit`` is below the last applied snapshot or past the log.
        """
        if self._trigger_snap_unavailable:
            self._trigger_snap_unavailable = False
            raise SnapshotTemporarilyUnavailable()
        index = self._hard_state.commit
        if index == self._snap_index:
            term = self._snap_term
        elif index > self._snap_index:
            pos = index - self._offset
            if not 0 <= pos < len(self._entries):
                raise RaftFatal(f"commit {index} is not in the log")
            term = self._entries[pos].term
        else:
            raise RaftFatal(f"commit {index} < snapshot_metadata.index {self._snap_index}")
        meta = SnapshotMetadata(_copy_conf_state(self._conf_state), max(index, request_index), term)
        return Snapshot(metadata=meta)
