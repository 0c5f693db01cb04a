"""The Raft log: stable entries in Storage plus the unstable tail, and the commit pointers.

Theory of operation
-------------------
:class:`RaftLog` is a port of raft-rs ``raft_log.rs`` (etcd ``log.go``). It
stitches the application's :class:`~multiraft.raft.storage.Storage` (entries
already persisted) and :class:`~multiraft.raft.log_unstable.Unstable` (entries
and a snapshot not yet persisted) into one log, and tracks how far it is
committed, persisted and applied::

    first_index-1   applied <= committed       persisted < unstable.offset   last_index
         |--------------------|---------------------|------------|--------------|
         storage.term only     entries in Storage ...          unstable.entries

Invariants:

* ``applied <= committed`` (after a restart with
  ``max_apply_unpersisted_log_limit > 0`` it may briefly not hold; once
  committed catches up it never falls behind again).
* ``committed`` never decreases, and never exceeds ``last_index()``.
* ``persisted < unstable.offset``; a conflicting truncation lowers
  ``persisted`` to ``conflict - 1``.
* With ``max_apply_unpersisted_log_limit == 0``, ``applied <= persisted``.
* Entries at or below ``committed`` are never overwritten: a conflict there is
  :class:`~multiraft.raft.errors.RaftFatal`.

Errors: ``term`` passes ``Compacted`` and ``Unavailable`` up from Storage and
turns anything else into ``RaftFatal``; ``slice`` passes ``Compacted`` and
``LogTemporarilyUnavailable`` up. Every ``fatal!``/``panic!`` of raft-rs is a
``RaftFatal``. Entry objects are shared, not copied, between messages, the
unstable part and Storage; they are immutable once in a log.
"""

from __future__ import annotations

from collections.abc import Callable

from multiraft.raft.errors import (
    Compacted,
    LogTemporarilyUnavailable,
    StorageError,
    StorageOther,
    Unavailable,
)
from multiraft.raft.log_unstable import Unstable
from multiraft.raft.logger import Logger, NullLogger
from multiraft.raft.storage import GetEntriesContext, Storage
from multiraft.raft.types import Entry, Snapshot
from multiraft.raft.util import fatal, limit_size

__all__ = ["RaftLog"]

_GEN_READY = GetEntriesContext.gen_ready()
_SYNC = GetEntriesContext.empty(False)


class RaftLog:
    """The replicated log of one Raft group, as one node sees it.

    Invariant: ``applied <= committed <= last_index()`` and
    ``persisted < unstable.offset`` (see the module docstring for the caveats).
    """

    __slots__ = (
        "applied",
        "committed",
        "logger",
        "max_apply_unpersisted_log_limit",
        "persisted",
        "store",
        "unstable",
    )

    def __init__(self, store: Storage, logger: Logger | None = None) -> None:
        """Open the log over ``store``.

        ``committed`` and ``applied`` start at the last compaction point
        (``first_index - 1``), ``persisted`` at the last stored entry.
        ``max_apply_unpersisted_log_limit`` starts at 0; the caller sets it from
        its Config.
        """
        self.logger: Logger = logger if logger is not None else NullLogger()
        #: Everything already persisted since the last snapshot.
        self.store = store
        first_index = self._store_first_index()
        last_index = self._store_last_index()
        #: Entries and a snapshot not yet persisted.
        self.unstable = Unstable(last_index + 1, self.logger)
        #: The highest index known to be stored on a quorum.
        self.committed = first_index - 1
        #: The highest index known to be in this node's stable storage.
        self.persisted = last_index
        #: The highest index the application was told to apply.
        self.applied = first_index - 1
        #: How far past ``persisted`` committed entries may be applied (leader only).
        self.max_apply_unpersisted_log_limit = 0

    def __str__(self) -> str:
        return (
            f"committed={self.committed}, persisted={self.persisted}, "
            f"applied={self.applied}, unstable.offset={self.unstable.offset}, "
            f"unstable.entries.len()={len(self.unstable.entries)}"
        )

    # ------------------------------------------------------------------
    # Bounds and terms

    def _store_first_index(self) -> int:
        try:
            return self.store.first_index()
        except StorageError as exc:
            fatal(self.logger, f"unexpected error getting the first index: {exc!r}")

    def _store_last_index(self) -> int:
        try:
            return self.store.last_index()
        except StorageError as exc:
            fatal(self.logger, f"unexpected error getting the last index: {exc!r}")

    def first_index(self) -> int:
        """The first index available through :meth:`entries`.

        Raises:
            RaftFatal: the storage cannot say.
        """
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self._store_first_index()

    def last_index(self) -> int:
        """The index of the last entry, unstable or stable.

        Raises:
            RaftFatal: the storage cannot say.
        """
        u = self.unstable
        n = len(u.entries)
        if n:
            return u.offset + n - 1
        snap = u.snapshot
        if snap is not None:
            return snap.metadata.index
        return self._store_last_index()

    def last_term(self) -> int:
        """The term of the last entry.

        Raises:
            RaftFatal: the last term cannot be read.
        """
        try:
            return self.term(self.last_index())
        except StorageError as exc:
            fatal(self.logger, f"unexpected error when getting the last term: {exc!r}")

    def term(self, idx: int) -> int:
        """The term of entry ``idx``; 0 outside ``[first_index() - 1, last_index()]``.

        Raises:
            Compacted: the storage no longer has the term.
            Unavailable: the storage does not have the entry.
            RaftFatal: any other storage error.
        """
        u = self.unstable
        snap = u.snapshot
        if snap is not None:
            first = snap.metadata.index + 1
        else:
            # Inlined _store_first_index: this is the hottest lookup of the core.
            try:
                first = self.store.first_index()
            except StorageError as exc:
                fatal(self.logger, f"unexpected error getting the first index: {exc!r}")
        # The valid range starts at the dummy entry before the first one.
        if idx < first - 1:
            return 0
        ents = u.entries
        if ents:
            # Fast path: the tail of the log is usually unstable.
            pos = idx - u.offset
            if pos >= len(ents):
                return 0
            if pos >= 0:
                return ents[pos].term
        elif idx > (snap.metadata.index if snap is not None else self._store_last_index()):
            return 0
        if snap is not None and idx == snap.metadata.index:
            return snap.metadata.term
        try:
            return self.store.term(idx)
        except (Compacted, Unavailable):
            raise
        except StorageError as exc:
            fatal(self.logger, f"unexpected error getting term {idx}: {exc!r}")

    def term_or_zero(self, idx: int) -> int:
        """:meth:`term`, with ``Compacted`` read as 0 (raft-rs ``zero_term_on_err_compacted``).

        Raises:
            RaftFatal: the storage answered ``Unavailable`` or failed otherwise.
        """
        try:
            return self.term(idx)
        except Compacted:
            return 0
        except StorageError as exc:
            fatal(self.logger, f"unexpected error getting term {idx}: {exc!r}")

    def match_term(self, idx: int, term: int) -> bool:
        """Whether entry ``idx`` has term ``term`` (False when the term is unknown)."""
        try:
            return self.term(idx) == term
        except StorageError:
            return False

    def commit_info(self) -> tuple[int, int]:
        """``(committed, term of committed)``.

        Raises:
            RaftFatal: the committed entry's term is missing.
        """
        try:
            return self.committed, self.term(self.committed)
        except StorageError as exc:
            fatal(
                self.logger,
                f"last committed entry at {self.committed} is missing: {exc!r}",
            )

    # ------------------------------------------------------------------
    # Conflicts and appends

    def find_conflict(self, ents: list[Entry]) -> int:
        """The index of the first entry of ``ents`` that is not in the log, else 0.

        An entry conflicts when the log has a different term at its index, or
        no entry there at all (then it is simply new). ``ents`` must be
        contiguous.
        """
        for e in ents:
            if not self.match_term(e.index, e.term):
                if e.index <= self.last_index():
                    try:
                        existing = self.term(e.index)
                    except StorageError:
                        existing = 0
                    self.logger.info(
                        f"found conflict at index {e.index}, existing term {existing}, "
                        f"conflicting term {e.term}"
                    )
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int | None]:
        """The largest ``i <= index`` whose term is ``<= term``, with that term.

        Used to skip a whole term of mismatching entries per rejected append.
        If ``index > last_index()`` the input is invalid: a warning is logged and
        ``(index, None)`` returned. The term is None when it cannot be read.

        Returns:
            ``(conflict_index, term at conflict_index or None)``.
        """
        last_index = self.last_index()
        if index > last_index:
            self.logger.warning(
                f"index({index}) is out of range [0, last_index({last_index})] "
                "in find_conflict_by_term"
            )
            return index, None
        conflict_index = index
        while True:
            try:
                t = self.term(conflict_index)
            except StorageError:
                return conflict_index, None
            if t > term:
                conflict_index -= 1
            else:
                return conflict_index, t

    def maybe_append(
        self, idx: int, term: int, committed: int, ents: list[Entry]
    ) -> tuple[int, int] | None:
        """Append a leader's ``ents`` that follow entry ``(idx, term)``, if the log has it.

        Conflicting entries (and all after them) are replaced; ``persisted`` is
        lowered below the first replaced one; commit advances to
        ``min(committed, idx + len(ents))``, never backwards.

        Returns:
            ``(conflict_idx, last_new_idx)``, where ``conflict_idx`` is 0 if no
            entry was new; None if the log does not contain ``(idx, term)``.

        Raises:
            RaftFatal: a conflict at or below ``committed``.
        """
        if not self.match_term(idx, term):
            return None
        conflict_idx = self.find_conflict(ents)
        if conflict_idx != 0:
            if conflict_idx <= self.committed:
                fatal(
                    self.logger,
                    f"entry {conflict_idx} conflict with committed entry {self.committed}",
                )
            start = conflict_idx - (idx + 1)
            self.append(ents[start:] if start else ents)
            # Entries from conflict_idx on changed, so they are no longer persisted.
            if self.persisted > conflict_idx - 1:
                self.persisted = conflict_idx - 1
        last_new_index = idx + len(ents)
        self.commit_to(min(committed, last_new_index))
        return conflict_idx, last_new_index

    def append(self, ents: list[Entry]) -> int:
        """Append ``ents`` to the unstable part, truncating what they overwrite.

        Returns:
            The new last index.

        Raises:
            RaftFatal: ``ents`` would overwrite a committed entry.
        """
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            fatal(self.logger, f"after {after} is out of range [committed {self.committed}]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    # ------------------------------------------------------------------
    # Commit, persist, apply

    def commit_to(self, to_commit: int) -> None:
        """Raise ``committed`` to ``to_commit``; never lowers it.

        Raises:
            RaftFatal: ``to_commit > last_index()``.
        """
        if self.committed >= to_commit:
            return
        last = self.last_index()
        if last < to_commit:
            fatal(self.logger, f"to_commit {to_commit} is out of range [last_index {last}]")
        self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry has ``term``; whether it did.

        The term check is Raft's rule that a leader only commits entries of its
        own term directly (Reference: Raft thesis §3.6.2).
        """
        # No debug log here: this runs for every acknowledgement a leader gets.
        if max_index > self.committed and self.match_term(max_index, term):
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, idx: int) -> None:
        """Record that the application applied up to ``idx``; 0 is ignored.

        The upper bound is ``committed``, not ``applied_index_upper_bound()``,
        because ``max_apply_unpersisted_log_limit`` may change at any time.

        Raises:
            RaftFatal: ``idx`` is below ``applied`` or above ``committed``.
        """
        if idx == 0:
            return
        if idx > self.committed or idx < self.applied:
            fatal(
                self.logger,
                f"applied({idx}) is out of range [prev_applied({self.applied}), "
                f"committed({self.committed})]",
            )
        self.applied = idx

    def applied_to_unchecked(self, idx: int) -> None:
        """Set ``applied`` without checks (restart with a Config ``applied``)."""
        self.applied = idx

    def applied_index_upper_bound(self) -> int:
        """The highest index that may be handed out for apply."""
        return min(self.committed, self.persisted + self.max_apply_unpersisted_log_limit)

    def stable_entries(self, index: int, term: int) -> None:
        """The unstable entries up to ``(index, term)``, the last one, are persisted."""
        self.unstable.stable_entries(index, term)

    def stable_snap(self, index: int) -> None:
        """The unstable snapshot at ``index`` is persisted."""
        self.unstable.stable_snap(index)

    def maybe_persist(self, index: int, term: int) -> bool:
        """Advance ``persisted`` to ``index`` if Storage holds ``(index, term)``; whether it did.

        Only indexes before the first unstable update (the unstable snapshot, or
        else ``unstable.offset``) qualify. Checking the stored term alone is not
        enough: an asynchronous write may finish for entries that a later leader
        has since replaced with identical ``(index, term)`` pairs still waiting
        in the unstable part (an ABA case), and those must not count as
        persisted.
        """
        snap = self.unstable.snapshot
        first_update_index = snap.metadata.index if snap is not None else self.unstable.offset
        if index <= self.persisted or index >= first_update_index:
            return False
        try:
            stored = self.store.term(index)
        except StorageError:
            return False
        if stored != term:
            return False
        self.persisted = index
        return True

    def maybe_persist_snap(self, index: int) -> bool:
        """Advance ``persisted`` to a persisted snapshot's ``index``; whether it did.

        Raises:
            RaftFatal: ``index > committed`` or ``index >= unstable.offset``.
        """
        if index <= self.persisted:
            return False
        if index > self.committed:
            fatal(self.logger, f"snapshot's index {index} > committed {self.committed}")
        if index >= self.unstable.offset:
            fatal(self.logger, f"snapshot's index {index} >= offset {self.unstable.offset}")
        self.persisted = index
        return True

    # ------------------------------------------------------------------
    # Reading entries

    def unstable_entries(self) -> list[Entry]:
        """The entries not yet persisted: the live list, do not mutate it."""
        return self.unstable.entries

    def unstable_snapshot(self) -> Snapshot | None:
        """The snapshot not yet persisted, if any."""
        return self.unstable.snapshot

    def pending_snapshot(self) -> Snapshot | None:
        """Alias of :meth:`unstable_snapshot` (raft-rs ``pending_snapshot``)."""
        return self.unstable.snapshot

    def entries(self, idx: int, max_size: int | None, context: GetEntriesContext) -> list[Entry]:
        """The entries from ``idx`` to the end, cut to ``max_size`` bytes (at least one).

        Raises:
            Compacted: ``idx < first_index()``.
            LogTemporarilyUnavailable: the storage fetches asynchronously.
        """
        last = self.last_index()
        if idx > last:
            return []
        return self.slice(idx, last + 1, max_size, context)

    def all_entries(self) -> list[Entry]:
        """Every entry from ``first_index()``. For tests."""
        while True:
            try:
                return self.entries(self.first_index(), None, _SYNC)
            except Compacted:
                # A compaction raced with the read: try again from the new start.
                continue
            except StorageError as exc:
                fatal(self.logger, f"unexpected error: {exc!r}")

    def must_check_outofbounds(self, low: int, high: int) -> Compacted | None:
        """Check ``[low, high)`` against the log; return (not raise) ``Compacted`` if below it.

        Raises:
            RaftFatal: ``low > high`` or ``high > last_index() + 1``.
        """
        if low > high:
            fatal(self.logger, f"invalid slice {low} > {high}")
        first_index = self.first_index()
        if low < first_index:
            return Compacted()
        last_index = self.last_index()
        if high > last_index + 1:
            fatal(
                self.logger,
                f"slice[{low},{high}] out of bound[{first_index},{last_index}]",
            )
        return None

    def slice(
        self, low: int, high: int, max_size: int | None, context: GetEntriesContext
    ) -> list[Entry]:
        """The entries in ``[low, high)``, cut to ``max_size`` bytes (at least one).

        Returns:
            A new list the caller owns.

        Raises:
            Compacted: ``low < first_index()``.
            LogTemporarilyUnavailable: the storage fetches asynchronously.
            RaftFatal: the range is past the log, or the storage failed otherwise.
        """
        err = self.must_check_outofbounds(low, high)
        if err is not None:
            raise err
        if low == high:
            return []
        offset = self.unstable.offset
        ents: list[Entry] = []
        if low < offset:
            unstable_high = min(high, offset)
            try:
                ents = self.store.entries(low, unstable_high, max_size, context)
            except (Compacted, LogTemporarilyUnavailable):
                raise
            except Unavailable:
                fatal(self.logger, f"entries[{low}:{unstable_high}] is unavailable from storage")
            except StorageError as exc:
                fatal(self.logger, f"unexpected error: {exc!r}")
            if len(ents) < unstable_high - low:
                # The size limit cut inside the stable part: nothing to add.
                return ents
        if high > offset:
            ents.extend(self.unstable.slice(max(low, offset), high))
        limit_size(ents, max_size)
        return ents

    def scan(
        self,
        lo: int,
        hi: int,
        page_size: int | None,
        context: GetEntriesContext,
        visit: Callable[[list[Entry]], bool],
    ) -> None:
        """Visit ``[lo, hi)`` in pages of up to ``page_size`` bytes (at least one entry).

        ``visit`` gets consecutive pages and returns False to stop early.

        Raises:
            StorageOther: a page came back empty (the range is not all there).
            Compacted, LogTemporarilyUnavailable: as :meth:`slice`.
        """
        while lo < hi:
            ents = self.slice(lo, hi, page_size, context)
            if not ents:
                raise StorageOther(f"got 0 entries in [{lo}, {hi})")
            lo += len(ents)
            if not visit(ents):
                return

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at ``(last_index, term)`` is at least as up to date as this one.

        A later last term wins; with equal last terms the longer log wins
        (Reference: Raft thesis §3.6.1).
        """
        last_term = self.last_term()
        return term > last_term or (term == last_term and last_index >= self.last_index())

    def has_next_entries_since(self, since_idx: int) -> bool:
        """Whether committed, appliable entries exist after ``max(since_idx, first_index() - 1)``."""
        offset = max(since_idx + 1, self.first_index())
        return self.applied_index_upper_bound() + 1 > offset

    def has_next_entries(self) -> bool:
        """Whether committed entries wait to be applied."""
        return self.has_next_entries_since(self.applied)

    def next_entries_since(self, since_idx: int, max_size: int | None = None) -> list[Entry] | None:
        """Committed, appliable entries after ``max(since_idx, first_index() - 1)``, or None.

        Raises:
            RaftFatal: the entries cannot be read.
        """
        offset = max(since_idx + 1, self.first_index())
        high = self.applied_index_upper_bound() + 1
        if high <= offset:
            return None
        try:
            return self.slice(offset, high, max_size, _GEN_READY)
        except StorageError as exc:
            fatal(self.logger, f"{exc!r}")

    def next_entries(self, max_size: int | None = None) -> list[Entry] | None:
        """Committed entries after ``applied`` that may be applied, or None.

        If ``applied`` is below the snapshot index, they start after the snapshot.
        """
        return self.next_entries_since(self.applied, max_size)

    # ------------------------------------------------------------------
    # Snapshots

    def snapshot(self, request_index: int, to: int) -> Snapshot:
        """The unstable snapshot if recent enough, else the storage's.

        The unstable snapshot is returned as is, not copied.

        Raises:
            SnapshotTemporarilyUnavailable: the storage is still building it.
        """
        snap = self.unstable.snapshot
        if snap is not None and snap.metadata.index >= request_index:
            return snap
        return self.store.snapshot(request_index, to)

    def restore(self, snapshot: Snapshot) -> None:
        """Reset the log to ``snapshot`` (kept unstable until persisted).

        ``persisted`` drops to the old ``committed`` if above it: only entries up
        to the old commit are known to match the snapshot's history.

        Raises:
            RaftFatal: the snapshot index is below ``committed``.
        """
        index = snapshot.metadata.index
        self.logger.info(
            f"log [{self}] starts to restore snapshot [index: {index}, "
            f"term: {snapshot.metadata.term}]"
        )
        if index < self.committed:
            fatal(self.logger, f"{index} < {self.committed}")
        if self.persisted > self.committed:
            self.persisted = self.committed
        self.committed = index
        self.unstable.restore(snapshot)
