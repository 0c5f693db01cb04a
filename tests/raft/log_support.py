"""Builders shared by the RaftLog tests."""

from __future__ import annotations

from multiraft.raft.log import RaftLog
from multiraft.raft.storage import GetEntriesContext, MemStorage
from multiraft.raft.types import Entry, Snapshot, SnapshotMetadata, entry_size

SYNC = GetEntriesContext.empty(False)


def ent(index: int, term: int) -> Entry:
    return Entry(term=term, index=index)


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(metadata=SnapshotMetadata(index=index, term=term))


def ents_size(ents: list[Entry]) -> int:
    return sum(entry_size(e) for e in ents)


def log_with(entries: list[Entry]) -> RaftLog:
    """A log over a fresh storage, with ``entries`` appended (unstable)."""
    log = RaftLog(MemStorage())
    log.append(entries)
    return log


def persist_unstable(log: RaftLog) -> None:
    """Write the unstable entries to the log's MemStorage, as an application would."""
    unstable = list(log.unstable_entries())
    if unstable:
        log.stable_entries(unstable[-1].index, unstable[-1].term)
        store = log.store
        assert isinstance(store, MemStorage)
        store.append(unstable)


