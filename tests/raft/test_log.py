# Covers raft-rs tests (src/raft_log.rs):
#   test_find_conflict, test_is_up_to_date, test_append, test_compaction_side_effects,
#   test_term_with_unstable_snapshot, test_term, test_log_restore,
#   test_maybe_persist_with_snap, test_unstable_ents, test_log_maybe_append, test_commit_to,
#   test_compaction, test_restore_snap (the read tests are in test_log_reading.py)
# and etcd's TestFindConflictByTerm (raft-rs has no unit test for find_conflict_by_term).
"""Tests for RaftLog, plus a property test of maybe_append against a naive model."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from multiraft.raft.errors import (
    Compacted,
    RaftFatal,
    SnapshotTemporarilyUnavailable,
    StorageOther,
    Unavailable,
)
from multiraft.raft.log import RaftLog
from multiraft.raft.logger import ListLogger
from multiraft.raft.storage import MemStorage
from multiraft.raft.types import Entry
from tests.raft.log_support import (
    SYNC,
    ent,
    log_with,
    persist_unstable,
    snap,
)

# ----------------------------------------------------------------------
# find_conflict / find_conflict_by_term / is_up_to_date

PREVIOUS = [ent(1, 1), ent(2, 2), ent(3, 3)]


@pytest.mark.parametrize(
    ("ents", "want"),
    [
        # No conflict, nothing given.
        ([], 0),
        # No conflict, nothing new.
        ([ent(1, 1), ent(2, 2), ent(3, 3)], 0),
        ([ent(2, 2), ent(3, 3)], 0),
        ([ent(3, 3)], 0),
        # No conflict, but new entries: the first new one.
        ([ent(1, 1), ent(2, 2), ent(3, 3), ent(4, 4), ent(5, 4)], 4),
        ([ent(2, 2), ent(3, 3), ent(4, 4), ent(5, 4)], 4),
        ([ent(3, 3), ent(4, 4), ent(5, 4)], 4),
        ([ent(4, 4), ent(5, 4)], 4),
        # Conflicts with existing entries: the first conflicting one.
        ([ent(1, 4), ent(2, 4)], 1),
        ([ent(2, 1), ent(3, 4), ent(4, 4)], 2),
        ([ent(3, 1), ent(4, 2), ent(5, 4), ent(6, 4)], 3),
    ],
)
def test_find_conflict(ents: list[Entry], want: int) -> None:
    assert log_with(PREVIOUS).find_conflict(ents) == want


def test_find_conflict_logs_a_real_conflict_only() -> None:
    logger = ListLogger()
    log = RaftLog(MemStorage(), logger)
    log.append(PREVIOUS)
    log.find_conflict([ent(4, 4)])
    assert logger.records == []
    log.find_conflict([ent(2, 5)])
    assert logger.records == [
        ("info", "found conflict at index 2, existing term 2, conflicting term 5")
    ]


def _log_from(snap_index: int, snap_term: int, terms: list[int]) -> RaftLog:
    store = MemStorage()
    if snap_index:
        store.apply_snapshot(snap(snap_index, snap_term))
    store.append([ent(snap_index + 1 + i, t) for i, t in enumerate(terms)])
    return RaftLog(store)


@pytest.mark.parametrize(
    ("snap_index", "snap_term", "terms", "index", "term", "want"),
    [
        # Log from index 1: terms 2 2 5 5 5 at 1..5.
        (0, 0, [2, 2, 5, 5, 5], 100, 2, (100, None)),  # out of range
        (0, 0, [2, 2, 5, 5, 5], 5, 6, (5, 5)),
        (0, 0, [2, 2, 5, 5, 5], 5, 5, (5, 5)),
        (0, 0, [2, 2, 5, 5, 5], 5, 4, (2, 2)),
        (0, 0, [2, 2, 5, 5, 5], 5, 2, (2, 2)),
        (0, 0, [2, 2, 5, 5, 5], 5, 1, (0, 0)),
        (0, 0, [2, 2, 5, 5, 5], 1, 2, (1, 2)),
        (0, 0, [2, 2, 5, 5, 5], 1, 1, (0, 0)),
        (0, 0, [2, 2, 5, 5, 5], 0, 0, (0, 0)),
        # After a snapshot at (10, 3): terms 3 3 4 4 4 at 11..15.
        (10, 3, [3, 3, 4, 4, 4], 30, 3, (30, None)),
        (10, 3, [3, 3, 4, 4, 4], 14, 9, (14, 4)),
        (10, 3, [3, 3, 4, 4, 4], 14, 4, (14, 4)),
        (10, 3, [3, 3, 4, 4, 4], 14, 3, (12, 3)),
        # Below the dummy entry the log reads term 0.
        (10, 3, [3, 3, 4, 4, 4], 14, 2, (9, 0)),
        (10, 3, [3, 3, 4, 4, 4], 11, 5, (11, 3)),
        (10, 3, [3, 3, 4, 4, 4], 10, 5, (10, 3)),
        (10, 3, [3, 3, 4, 4, 4], 10, 3, (10, 3)),
        (10, 3, [3, 3, 4, 4, 4], 10, 2, (9, 0)),
        (10, 3, [3, 3, 4, 4, 4], 9, 2, (9, 0)),
        (10, 3, [3, 3, 4, 4, 4], 4, 2, (4, 0)),
        (10, 3, [3, 3, 4, 4, 4], 0, 0, (0, 0)),
    ],
)
def test_find_conflict_by_term(
    snap_index: int,
    snap_term: int,
    terms: list[int],
    index: int,
    term: int,
    want: tuple[int, int | None],
) -> None:
    assert _log_from(snap_index, snap_term, terms).find_conflict_by_term(index, term) == want


def test_find_conflict_by_term_unknown_term() -> None:
    # MemStorage forgets term(first_index - 1) after a compaction: the scan
    # stops there without a term.
    store = MemStorage()
    store.append([ent(i, 2) for i in range(1, 7)])
    store.compact(3)
    log = RaftLog(store)
    assert log.find_conflict_by_term(5, 1) == (2, None)


def test_find_conflict_by_term_warns_when_out_of_range() -> None:
    logger = ListLogger()
    log = RaftLog(MemStorage(), logger)
    assert log.find_conflict_by_term(3, 1) == (3, None)
    assert logger.records[0][0] == "warning"


@pytest.mark.parametrize(
    ("last_index", "term", "want"),
    [
        # A greater last term wins whatever the index.
        (2, 4, True),
        (3, 4, True),
        (4, 4, True),
        # A smaller last term loses whatever the index.
        (2, 2, False),
        (3, 2, False),
        (4, 2, False),
        # Equal last terms: the longer (or equal) log wins.
        (2, 3, False),
        (3, 3, True),
        (4, 3, True),
    ],
)
def test_is_up_to_date(last_index: int, term: int, want: bool) -> None:
    assert log_with(PREVIOUS).is_up_to_date(last_index, term) is want


# ----------------------------------------------------------------------
# append and compaction


@pytest.mark.parametrize(
    ("ents", "windex", "wents", "wunstable"),
    [
        ([], 2, [ent(1, 1), ent(2, 2)], 3),
        ([ent(3, 2)], 3, [ent(1, 1), ent(2, 2), ent(3, 2)], 3),
        # Conflicts with index 1: the whole log is replaced.
        ([ent(1, 2)], 1, [ent(1, 2)], 1),
        # Conflicts with index 2.
        ([ent(2, 3), ent(3, 3)], 3, [ent(1, 1), ent(2, 3), ent(3, 3)], 2),
    ],
)
def test_append(ents: list[Entry], windex: int, wents: list[Entry], wunstable: int) -> None:
    store = MemStorage()
    store.append([ent(1, 1), ent(2, 2)])
    log = RaftLog(store)
    assert log.append(ents) == windex
    assert log.entries(1, None, SYNC) == wents
    assert log.unstable.offset == wunstable


def test_append_below_committed_is_fatal() -> None:
    log = log_with(PREVIOUS)
    log.commit_to(2)
    with pytest.raises(RaftFatal):
        log.append([ent(2, 9)])
    assert log.all_entries() == PREVIOUS


def test_compaction_side_effects() -> None:
    last_index, unstable_index = 1000, 750
    store = MemStorage()
    for i in range(1, unstable_index + 1):
        store.append([ent(i, i)])
    log = RaftLog(store)
    for i in range(unstable_index, last_index):
        log.append([ent(i + 1, i + 1)])
    assert log.maybe_commit(last_index, last_index)

    offset = 500
    store.compact(offset)
    assert log.last_index() == last_index
    for j in range(offset, last_index + 1):
        assert log.term(j) == j
        assert log.match_term(j, j)

    unstable = log.unstable_entries()
    assert len(unstable) == last_index - unstable_index
    assert unstable[0].index == unstable_index + 1

    prev = log.last_index()
    log.append([ent(prev + 1, prev + 1)])
    assert log.last_index() == prev + 1
    assert len(log.entries(log.last_index(), None, SYNC)) == 1


@pytest.mark.parametrize(
    ("compacts", "wleft", "fatal"),
    [
        # Past the last index.
        ([1001], [0], True),
        ([300, 500, 800, 900], [700, 500, 200, 100], False),
        # Below the first index: a no-op.
        ([300, 299], [700, 700], False),
    ],
)
def test_compaction(compacts: list[int], wleft: list[int], fatal: bool) -> None:
    store = MemStorage()
    for i in range(1, 1000):
        store.append([ent(i, 0)])
    log = RaftLog(store)
    log.maybe_commit(999, 0)
    log.applied_to(log.committed)
    for idx, left in zip(compacts, wleft):
        if fatal:
            with pytest.raises(RaftFatal):
                store.compact(idx)
            continue
        store.compact(idx)
        assert len(log.all_entries()) == left


# ----------------------------------------------------------------------
# term


def test_term_with_unstable_snapshot() -> None:
    storage_snap_index = 10064
    unstable_snap_index = storage_snap_index + 5
    store = MemStorage()
    store.apply_snapshot(snap(storage_snap_index, 1))
    log = RaftLog(store)
    log.restore(snap(unstable_snap_index, 1))
    assert log.committed == unstable_snap_index
    assert log.persisted == storage_snap_index
    # Neither from storage, nor from the gap before the unstable snapshot...
    assert log.term(storage_snap_index) == 0
    assert log.term(storage_snap_index + 1) == 0
    assert log.term(unstable_snap_index - 1) == 0
    # ...but from the unstable snapshot itself.
    assert log.term(unstable_snap_index) == 1


def test_term() -> None:
    offset, num = 100, 100
    store = MemStorage()
    store.apply_snapshot(snap(offset, 1))
    log = RaftLog(store)
    for i in range(1, num):
        log.append([ent(offset + i, i)])
    assert log.term(offset - 1) == 0
    assert log.term(offset) == 1
    assert log.term(offset + num // 2) == num // 2
    assert log.term(offset + num - 1) == num - 1
    assert log.term(offset + num) == 0
    assert log.last_term() == num - 1


def test_term_passes_compacted_and_unavailable_up() -> None:
    store = MemStorage()
    store.append([ent(1, 1), ent(2, 2), ent(3, 3)])
    log = RaftLog(store)
    store.compact(3)  # raft-rs's MemStorage then forgets term(2)
    with pytest.raises(Compacted):
        log.term(2)
    assert log.term_or_zero(2) == 0
    assert not log.match_term(2, 2)
    assert log.term_or_zero(3) == 3


class _BrokenStore(MemStorage):
    """A storage whose term lookups fail the way a broken disk would."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def term(self, idx: int) -> int:
        raise self.error


def test_term_other_storage_errors_are_fatal() -> None:
    store = _BrokenStore(StorageOther("disk on fire"))
    store.append([ent(1, 1)])
    log = RaftLog(store)
    with pytest.raises(RaftFatal):
        log.term(1)
    with pytest.raises(RaftFatal):
        log.term_or_zero(1)
    with pytest.raises(RaftFatal):
        log.last_term()
    # maybe_persist treats any failure as "not persisted" (raft-rs is_ok_and).
    assert not log.maybe_persist(1, 1)


def test_term_or_zero_unavailable_is_fatal() -> None:
    store = _BrokenStore(Unavailable())
    store.append([ent(1, 1)])
    log = RaftLog(store)
    with pytest.raises(Unavailable):
        log.term(1)
    with pytest.raises(RaftFatal):
        log.term_or_zero(1)
    with pytest.raises(RaftFatal):
        log.commit_info()


def test_commit_info() -> None:
    log = log_with(PREVIOUS)
    assert log.commit_info() == (0, 0)
    log.commit_to(2)
    assert log.commit_info() == (2, 2)


# ----------------------------------------------------------------------
# restore, persist, unstable entries


def test_log_restore() -> None:
    index, term = 1000, 1000
    store = MemStorage()
    store.apply_snapshot(snap(index, term))
    entries = [ent(index + 1, term), ent(index + 2, term + 1)]
    store.append(entries)
    log = RaftLog(store)
    assert log.all_entries() == entries
    assert log.first_index() == index + 1
    assert log.committed == index
    assert log.applied == index
    assert log.persisted == index + 2
    assert log.unstable.offset == index + 3
    assert log.term(index) == term
    assert log.term(index + 1) == term
    assert log.term(index + 2) == term + 1


SNAP_INDEX, SNAP_TERM = 5, 2


@pytest.mark.parametrize(
    ("index", "term", "new_ents", "wpersisted"),
    [
        (SNAP_INDEX + 1, SNAP_TERM, [], SNAP_INDEX),
        (SNAP_INDEX, SNAP_TERM, [], SNAP_INDEX),
        (SNAP_INDEX - 1, SNAP_TERM, [], SNAP_INDEX),
        (SNAP_INDEX + 1, SNAP_TERM + 1, [], SNAP_INDEX),
        (SNAP_INDEX, SNAP_TERM + 1, [], SNAP_INDEX),
        (SNAP_INDEX - 1, SNAP_TERM + 1, [], SNAP_INDEX),
        (SNAP_INDEX + 1, SNAP_TERM, [ent(SNAP_INDEX + 1, SNAP_TERM)], SNAP_INDEX + 1),
        (SNAP_INDEX, SNAP_TERM, [ent(SNAP_INDEX + 1, SNAP_TERM)], SNAP_INDEX),
        (SNAP_INDEX - 1, SNAP_TERM, [ent(SNAP_INDEX + 1, SNAP_TERM)], SNAP_INDEX),
        (SNAP_INDEX + 1, SNAP_TERM + 1, [ent(SNAP_INDEX + 1, SNAP_TERM)], SNAP_INDEX),
        (SNAP_INDEX, SNAP_TERM + 1, [ent(SNAP_INDEX + 1, SNAP_TERM)], SNAP_INDEX),
        (SNAP_INDEX - 1, SNAP_TERM + 1, [ent(SNAP_INDEX + 1, SNAP_TERM)], SNAP_INDEX),
    ],
)
def test_maybe_persist_with_snap(
    index: int, term: int, new_ents: list[Entry], wpersisted: int
) -> None:
    store = MemStorage()
    store.apply_snapshot(snap(SNAP_INDEX, SNAP_TERM))
    log = RaftLog(store)
    assert log.persisted == SNAP_INDEX
    log.append(new_ents)
    persist_unstable(log)
    changed = wpersisted != SNAP_INDEX
    assert log.maybe_persist(index, term) is changed
    assert log.persisted == wpersisted


def test_maybe_persist_not_past_the_first_unstable_update() -> None:
    log = RaftLog(MemStorage())
    log.restore(snap(100, 1))
    assert log.unstable.offset == 101
    log.append([ent(101, 1)])
    assert log.term(101) == 1
    # 101 is the unstable offset (and after the unstable snapshot): not persisted.
    assert not log.maybe_persist(101, 1)
    log.append([ent(102, 1)])
    assert log.term(102) == 1
    assert not log.maybe_persist(102, 1)


def test_maybe_persist_snap() -> None:
    store = MemStorage()
    store.apply_snapshot(snap(5, 1))
    log = RaftLog(store)
    log.restore(snap(10, 2))
    assert log.persisted == 5
    assert not log.maybe_persist_snap(5)
    assert log.maybe_persist_snap(10)
    assert log.persisted == 10
    # A snapshot index past committed, or not before the unstable offset, is fatal.
    log = RaftLog(store)
    log.append([ent(6, 1), ent(7, 1)])
    with pytest.raises(RaftFatal):
        log.maybe_persist_snap(6)
    log.commit_to(7)
    with pytest.raises(RaftFatal):
        log.maybe_persist_snap(7)


@pytest.mark.parametrize(
    ("unstable", "wents"),
    [(3, []), (1, [ent(1, 1), ent(2, 2)])],
)
def test_unstable_ents(unstable: int, wents: list[Entry]) -> None:
    previous = [ent(1, 1), ent(2, 2)]
    store = MemStorage()
    store.append(previous[: unstable - 1])
    log = RaftLog(store)
    log.append(previous[unstable - 1 :])
    ents = list(log.unstable_entries())
    if ents:
        log.stable_entries(ents[-1].index, ents[-1].term)
    assert ents == wents
    assert log.unstable.offset == previous[-1].index + 1


def test_unstable_snapshot_and_stable_snap() -> None:
    log = RaftLog(MemStorage())
    assert log.unstable_snapshot() is None
    s = snap(10, 2)
    log.restore(s)
    assert log.unstable_snapshot() is s
    assert log.pending_snapshot() is s
    log.stable_snap(10)
    assert log.unstable_snapshot() is None


# ----------------------------------------------------------------------
# maybe_append / commit_to / applied_to

LAST_INDEX, LAST_TERM, COMMIT, PERSIST = 3, 3, 1, 3


@pytest.mark.parametrize(
    ("log_term", "index", "committed", "ents", "wlast", "wcommit", "wpersist", "fatal"),
    [
        # Not matching: the term differs.
        (LAST_TERM - 1, LAST_INDEX, LAST_INDEX, [ent(4, 4)], None, COMMIT, PERSIST, False),
        # Not matching: the index is past the log.
        (LAST_TERM, LAST_INDEX + 1, LAST_INDEX, [ent(5, 4)], None, COMMIT, PERSIST, False),
        # Matching the last entry.
        (LAST_TERM, LAST_INDEX, LAST_INDEX, [], LAST_INDEX, LAST_INDEX, PERSIST, False),
        # Commit stops at the last new index.
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 1, [], LAST_INDEX, LAST_INDEX, PERSIST, False),
        # Commit up to the message's commit.
        (LAST_TERM, LAST_INDEX, LAST_INDEX - 1, [], LAST_INDEX, LAST_INDEX - 1, PERSIST, False),
        # Commit never decreases.
        (LAST_TERM, LAST_INDEX, 0, [], LAST_INDEX, COMMIT, PERSIST, False),
        (0, 0, LAST_INDEX, [], 0, COMMIT, PERSIST, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX, [ent(4, 4)], 4, LAST_INDEX, PERSIST, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 1, [ent(4, 4)], 4, 4, PERSIST, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 2, [ent(4, 4)], 4, 4, PERSIST, False),
        (LAST_TERM, LAST_INDEX, LAST_INDEX + 2, [ent(4, 4), ent(5, 4)], 5, 5, PERSIST, False),
        # Matching an entry in the middle: the suffix is replaced, persisted drops.
        (LAST_TERM - 1, LAST_INDEX - 1, LAST_INDEX, [ent(3, 4)], 3, 3, 2, False),
        (LAST_TERM - 2, LAST_INDEX - 2, LAST_INDEX, [ent(2, 4)], 2, 2, 1, False),
        # A conflict with a committed entry is fatal.
        (LAST_TERM - 3, LAST_INDEX - 3, LAST_INDEX, [ent(1, 4)], 1, 1, 0, True),
        (LAST_TERM - 2, LAST_INDEX - 2, LAST_INDEX, [ent(2, 4), ent(3, 4)], 3, 3, 1, False),
        (
            LAST_TERM - 2,
            LAST_INDEX - 2,
            LAST_INDEX + 2,
            [ent(2, 2), ent(3, 4), ent(4, 4)],
            4,
            4,
            2,
            False,
        ),
    ],
)
def test_log_maybe_append(
    log_term: int,
    index: int,
    committed: int,
    ents: list[Entry],
    wlast: int | None,
    wcommit: int,
    wpersist: int,
    fatal: bool,
) -> None:
    log = log_with(PREVIOUS)
    log.committed = COMMIT
    log.persisted = PERSIST
    if fatal:
        with pytest.raises(RaftFatal):
            log.maybe_append(index, log_term, committed, ents)
        return
    res = log.maybe_append(index, log_term, committed, ents)
    assert (res[1] if res is not None else None) == wlast
    assert log.committed == wcommit
    assert log.persisted == wpersist
    if res is not None and ents:
        last = log.last_index()
        assert log.slice(last - len(ents) + 1, last + 1, None, SYNC) == ents


def test_maybe_append_reports_conflict_index() -> None:
    log = log_with(PREVIOUS)
    assert log.maybe_append(3, 3, 0, [ent(4, 4)]) == (4, 4)
    assert log.maybe_append(1, 1, 0, [ent(2, 2), ent(3, 3)]) == (0, 3)
    assert log.maybe_append(1, 1, 0, [ent(2, 5)]) == (2, 2)
    assert log.all_entries() == [ent(1, 1), ent(2, 5)]


@pytest.mark.parametrize(
    ("commit", "wcommit", "fatal"),
    [(3, 3, False), (1, 2, False), (4, 0, True)],  # never decreases; past the log is fatal
)
def test_commit_to(commit: int, wcommit: int, fatal: bool) -> None:
    log = log_with(PREVIOUS)
    log.committed = 2
    if fatal:
        with pytest.raises(RaftFatal):
            log.commit_to(commit)
        assert log.committed == 2
    else:
        log.commit_to(commit)
        assert log.committed == wcommit


def test_maybe_commit_requires_matching_term() -> None:
    log = log_with(PREVIOUS)
    assert not log.maybe_commit(3, 2)
    assert not log.maybe_commit(4, 3)
    assert log.maybe_commit(2, 2)
    assert log.committed == 2
    assert not log.maybe_commit(2, 2)
    assert not log.maybe_commit(1, 1)
    assert log.committed == 2


def test_applied_to_bounds() -> None:
    log = log_with(PREVIOUS)
    log.commit_to(2)
    log.applied_to(0)  # ignored
    assert log.applied == 0
    log.applied_to(2)
    assert log.applied == 2
    with pytest.raises(RaftFatal):
        log.applied_to(3)
    with pytest.raises(RaftFatal):
        log.applied_to(1)
    log.applied_to_unchecked(1)
    assert log.applied == 1


# ----------------------------------------------------------------------
# snapshots


def test_restore_snap() -> None:
    store = MemStorage()
    store.apply_snapshot(snap(100, 1))
    log = RaftLog(store)
    assert (log.committed, log.persisted) == (100, 100)
    log.restore(snap(200, 1))
    assert (log.committed, log.persisted) == (200, 100)

    for i in range(201, 210):
        log.append([ent(i, 1)])
    store.apply_snapshot(snap(200, 1))
    log.stable_snap(200)
    unstable = list(log.unstable_entries())
    log.stable_entries(209, 1)
    store.append(unstable)
    log.maybe_persist(209, 1)
    assert log.persisted == 209

    log.restore(snap(205, 1))
    assert log.committed == 205
    # persisted falls back to the previous commit index.
    assert log.persisted == 200

    # A snapshot below the commit index is fatal.
    with pytest.raises(RaftFatal):
        log.restore(snap(204, 1))


def test_snapshot_prefers_a_recent_unstable_snapshot() -> None:
    store = MemStorage.new_with_conf_state(([1], []))
    store.append([ent(1, 1), ent(2, 1)])
    store.commit_to(2)
    log = RaftLog(store)
    assert log.snapshot(0, 2).metadata.index == 2
    s = snap(10, 2)
    log.restore(s)
    assert log.snapshot(10, 2) is s
    # Too old for the request: the storage answers, index raised to the request.
    assert log.snapshot(11, 2).metadata.index == 11
    store.trigger_snap_unavailable()
    with pytest.raises(SnapshotTemporarilyUnavailable):
        log.snapshot(11, 2)


def test_str() -> None:
    log = log_with(PREVIOUS)
    assert str(log) == (
        "committed=0, persisted=0, applied=0, unstable.offset=1, unstable.entries.len()=3"
    )


# ----------------------------------------------------------------------
# Property: maybe_append against a naive list-of-terms model.

_op = st.one_of(
    st.tuples(
        st.just("append"),
        st.integers(-1, 5),  # prev index, counted back from the model's last index
        st.booleans(),  # use the model's term at prev index (likely match)
        st.integers(1, 4),  # otherwise this term
        st.integers(-6, 2),  # leader commit, relative to the last new index
        st.lists(st.integers(1, 4), max_size=4),  # new entry terms (sorted below)
    ),
    st.tuples(st.just("persist")),
    st.tuples(st.just("apply")),
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(_op, max_size=25))
def test_maybe_append_keeps_invariants(ops: list[tuple[object, ...]]) -> None:
    store = MemStorage()
    log = RaftLog(store)
    terms: list[int] = []  # terms[i] is the model's term of index i + 1
    committed = 0
    for op in ops:
        if op[0] == "persist":
            persist_unstable(log)
            if log.unstable.offset > 1:
                last = log.unstable.offset - 1
                log.maybe_persist(last, log.term(last))
        elif op[0] == "apply":
            log.applied_to(log.committed)
        else:
            _, back, use_model, other_term, commit_slack, new_terms = op
            assert isinstance(back, int) and isinstance(other_term, int)
            assert isinstance(commit_slack, int) and isinstance(new_terms, list)
            prev = max(0, len(terms) - back)
            leader_commit = max(0, prev + len(new_terms) + commit_slack)
            if prev == 0:
                prev_term = 0
            elif use_model and prev <= len(terms):
                prev_term = terms[prev - 1]
            else:
                prev_term = other_term
            ents = [ent(prev + 1 + i, t) for i, t in enumerate(sorted(new_terms))]
            matches = prev == 0 or (prev <= len(terms) and terms[prev - 1] == prev_term)
            conflict = next(
                (e.index for e in ents if e.index > len(terms) or terms[e.index - 1] != e.term),
                0,
            )
            if matches and conflict and conflict <= committed:
                event("conflict at or below committed")
                before = (log.all_entries(), log.committed, log.persisted)
                with pytest.raises(RaftFatal):
                    log.maybe_append(prev, prev_term, leader_commit, ents)
                assert (log.all_entries(), log.committed, log.persisted) == before
                continue
            got = log.maybe_append(prev, prev_term, leader_commit, ents)
            if not matches:
                event("no match")
                assert got is None
            else:
                event("truncating conflict" if conflict and conflict <= len(terms) else "match")
                assert got == (conflict, prev + len(ents))
                if conflict:
                    terms = terms[: conflict - 1] + [e.term for e in ents[conflict - prev - 1 :]]
                committed = max(committed, min(leader_commit, prev + len(ents)))
        # Invariants after every step.
        assert log.committed == committed
        assert log.applied <= log.committed <= log.last_index()
        assert log.persisted < log.unstable.offset
        assert log.last_index() == len(terms)
        assert [e.term for e in log.all_entries()] == terms
