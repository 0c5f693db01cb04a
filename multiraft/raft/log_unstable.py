"""The unstable tail of the Raft log: entries and a snapshot not yet written to Storage.

Theory of operation
-------------------
New entries (proposed by a leader, received by a follower) and a received
snapshot land here first. A ``Ready`` hands them to the application, which
persists them and then calls :meth:`Unstable.stable_snap` /
:meth:`Unstable.stable_entries` to drop them from memory. Port of raft-rs
``log_unstable.rs`` (etcd ``log_unstable.go``).

Invariants:

* ``entries[i].index == offset + i``: the entries are contiguous from ``offset``.
* With a snapshot, ``offset == snapshot.metadata.index + 1`` right after
  :meth:`Unstable.restore`, and later entries never go below it.
* ``offset`` may be below the last index in Storage: the next write must then
  truncate the stored log before persisting these entries.
* ``entries_size == sum(entry_approximate_size(e) for e in entries)``.
* The snapshot is stabled before the entries.

The ``entries`` list is replaced, never cleared in place, whenever it is
emptied, so a caller holding it from a previous Ready keeps its contents.
"""

from __future__ import annotations

from multiraft.raft.logger import Logger
from multiraft.raft.types import Entry, Snapshot
from multiraft.raft.util import entry_approximate_size, fatal

__all__ = ["Unstable"]


class Unstable:
    """Log entries and a snapshot that are not yet in stable storage.

    Invariant: ``entries[i]`` has log index ``offset + i``.
    """

    __slots__ = ("entries", "entries_size", "logger", "offset", "snapshot")

    def __init__(self, offset: int, logger: Logger) -> None:
        #: The incoming snapshot, if any.
        self.snapshot: Snapshot | None = None
        #: Entries not yet written to storage.
        self.entries: list[Entry] = []
        #: Approximate byte size of ``entries`` (memory accounting only).
        self.entries_size = 0
        #: The log index of ``entries[0]``.
        self.offset = offset
        self.logger = logger

    def maybe_first_index(self) -> int | None:
        """The first index of the log after the unstable snapshot, if there is one."""
        snap = self.snapshot
        return snap.metadata.index + 1 if snap is not None else None

    def maybe_last_index(self) -> int | None:
        """The last unstable entry's index, else the snapshot's index, else None."""
        n = len(self.entries)
        if n:
            return self.offset + n - 1
        snap = self.snapshot
        return snap.metadata.index if snap is not None else None

    def maybe_term(self, idx: int) -> int | None:
        """The term of entry ``idx`` if this unstable part knows it."""
        offset = self.offset
        if idx < offset:
            snap = self.snapshot
            if snap is not None and idx == snap.metadata.index:
                return snap.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or idx > last:
            return None
        return self.entries[idx - offset].term

    def stable_entries(self, index: int, term: int) -> None:
        """Drop the entries once persisted up to ``(index, term)``, the last one.

        Raises:
            RaftFatal: a snapshot is still unstable, there are no entries, or the
                last entry is not ``(index, term)``.
        """
        if self.snapshot is not None:
            fatal(self.logger, "the unstable snapshot must be stabled before the entries")
        if not self.entries:
            fatal(
                self.logger,
                "unstable.slice is empty, expect its last one's index and term "
                f"are {index} and {term}",
            )
        last = self.entries[-1]
        if last.index != index or last.term != term:
            fatal(
                self.logger,
                f"the last one of unstable.slice has different index {last.index} and "
                f"term {last.term}, expect {index} {term}",
            )
        self.offset = last.index + 1
        self.entries = []
        self.entries_size = 0

    def stable_snap(self, index: int) -> None:
        """Drop the snapshot once persisted.

        Raises:
            RaftFatal: there is no snapshot, or it is not at ``index``.
        """
        snap = self.snapshot
        if snap is None:
            fatal(self.logger, f"unstable.snap is none, expect a snapshot with index {index}")
        if snap.metadata.index != index:
            fatal(
                self.logger,
                f"unstable.snap has different index {snap.metadata.index}, expect {index}",
            )
        self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        """Replace everything with ``snap``; entries restart right after it."""
        self.entries = []
        self.entries_size = 0
        self.offset = snap.metadata.index + 1
        self.snapshot = snap

    def truncate_and_append(self, ents: list[Entry]) -> None:
        """Append ``ents``, first dropping any unstable entries at or after ``ents[0].index``.

        The Entry objects are shared, not copied.

        Raises:
            RaftFatal: ``ents`` would leave a gap after the last unstable entry.
        """
        if not ents:
            return
        after = ents[0].index
        offset = self.offset
        entries = self.entries
        if after == offset + len(entries):
            # The common case: ``ents`` directly follow the unstable entries.
            pass
        elif after <= offset:
            # The log is being truncated to before the unstable part: it is
            # replaced wholesale (a persisted suffix in Storage gets
            # overwritten when these entries are written).
            self.offset = after
            entries = self.entries = []
            self.entries_size = 0
        else:
            # Truncate inside the unstable part, then append.
            self.must_check_outofbounds(offset, after)
            keep = after - offset
            self.entries_size -= sum(entry_approximate_size(e) for e in entries[keep:])
            del entries[keep:]
        entries.extend(ents)
        self.entries_size += sum(entry_approximate_size(e) for e in ents)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """A copy of the unstable entries in ``[lo, hi)``.

        Raises:
            RaftFatal: ``lo > hi`` or the range is outside the unstable entries.
        """
        self.must_check_outofbounds(lo, hi)
        offset = self.offset
        return self.entries[lo - offset : hi - offset]

    def must_check_outofbounds(self, lo: int, hi: int) -> None:
        """Check that ``[lo, hi)`` is a valid range of the unstable entries.

        Raises:
            RaftFatal: ``lo > hi`` or ``[lo, hi)`` is not within
                ``[offset, offset + len(entries))``.
        """
        if lo > hi:
            fatal(self.logger, f"invalid unstable.slice {lo} > {hi}")
        upper = self.offset + len(self.entries)
        if lo < self.offset or hi > upper:
            fatal(
                self.logger,
                f"unstable.slice[{lo}, {hi}] out of bound[{self.offset}, {upper}]",
            )

    def __repr__(self) -> str:
        snap = self.snapshot
        snap_desc = f"({snap.metadata.index}, {snap.metadata.term})" if snap is not None else "None"
        return (
            f"Unstable(offset={self.offset}, entries={len(self.entries)}, "
            f"entries_size={self.entries_size}, snapshot={snap_desc})"
        )
