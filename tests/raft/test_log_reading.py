# Covers raft-rs tests (src/raft_log.rs) of reading the log: test_has_next_ents_and_next_ents,
#   test_slice, test_scan, test_is_outofbounds (the rest of raft_log.rs is in test_log.py).
"""RaftLog reads: next entries to apply, slices with size limits, scans, bounds checks."""

from __future__ import annotations

import pytest

from multiraft.raft.errors import (
    Compacted,
    RaftFatal,
    StorageOther,
)
from multiraft.raft.log import RaftLog
from multiraft.raft.storage import GetEntriesContext, MemStorage
from multiraft.raft.types import NO_LIMIT, Entry, entry_size
from tests.raft.log_support import (
    SYNC,
    ent,
    ents_size,
    persist_unstable,
    snap,
)

# ----------------------------------------------------------------------
# next entries


NEXT4 = [ent(4, 1), ent(5, 1), ent(6, 1), ent(7, 1)]


def _next_log(
    ents: list[Entry], applied: int, persisted: int, committed: int, limit: int
) -> RaftLog:
    store = MemStorage()
    store.apply_snapshot(snap(3, 1))
    log = RaftLog(store)
    log.max_apply_unpersisted_log_limit = limit
    log.append(ents)
    persist_unstable(log)
    log.maybe_persist(persisted, 1)
    assert log.persisted == persisted
    log.maybe_commit(committed, 1)
    assert log.committed == committed
    log.applied_to(applied)
    return log


@pytest.mark.parametrize(
    ("applied", "persisted", "committed", "want"),
    [
        (0, 3, 3, None),
        (0, 3, 4, None),
        (0, 4, 6, NEXT4[:1]),
        (0, 6, 4, NEXT4[:1]),
        (0, 5, 5, NEXT4[:2]),
        (0, 5, 7, NEXT4[:2]),
        (0, 7, 5, NEXT4[:2]),
        (3, 4, 3, None),
        (3, 5, 5, NEXT4[:2]),
        (3, 6, 7, NEXT4[:3]),
        (3, 7, 6, NEXT4[:3]),
        (4, 5, 5, NEXT4[1:2]),
        (4, 5, 7, NEXT4[1:2]),
        (4, 7, 5, NEXT4[1:2]),
        (4, 7, 7, NEXT4[1:4]),
        (5, 5, 5, None),
        (5, 7, 7, NEXT4[2:4]),
        (7, 7, 7, None),
    ],
)
def test_has_next_ents_and_next_ents(
    applied: int, persisted: int, committed: int, want: list[Entry] | None
) -> None:
    log = _next_log(NEXT4, applied, persisted, committed, 0)
    assert log.has_next_entries() is (want is not None)
    assert log.next_entries(None) == want


NEXT7 = [ent(i, 1) for i in range(4, 11)]
UNLIMITED = 2**32 - 1


@pytest.mark.parametrize(
    ("applied", "persisted", "committed", "limit", "want"),
    [
        (0, 3, 3, 0, None),
        (0, 3, 4, 0, None),
        (0, 3, 4, UNLIMITED, NEXT7[:1]),
        (0, 4, 6, 0, NEXT7[:1]),
        (0, 4, 6, 2, NEXT7[:3]),
        (0, 4, 6, 6, NEXT7[:3]),
        (0, 4, 10, 0, NEXT7[:1]),
        (0, 4, 10, 2, NEXT7[:3]),
        (0, 4, 10, 6, NEXT7),
        (0, 4, 10, 7, NEXT7),
        (0, 6, 4, 0, NEXT7[:1]),
        (0, 6, 4, UNLIMITED, NEXT7[:1]),
        (0, 5, 5, 0, NEXT7[:2]),
        (3, 4, 3, UNLIMITED, None),
        (3, 5, 5, UNLIMITED, NEXT7[:2]),
        (3, 6, 7, UNLIMITED, NEXT7[:4]),
        (3, 7, 6, UNLIMITED, NEXT7[:3]),
        (4, 5, 5, UNLIMITED, NEXT7[1:2]),
        (4, 5, 7, UNLIMITED, NEXT7[1:4]),
        (4, 5, 9, UNLIMITED, NEXT7[1:6]),
        (4, 5, 10, UNLIMITED, NEXT7[1:]),
        (4, 7, 5, UNLIMITED, NEXT7[1:2]),
        (4, 7, 7, 0, NEXT7[1:4]),
        (5, 5, 5, 0, None),
        (5, 7, 7, UNLIMITED, NEXT7[2:4]),
        (7, 7, 7, UNLIMITED, None),
        # applied may exceed persisted + limit once the limit is lowered.
        (8, 6, 8, 0, None),
    ],
)
def test_next_ents_with_unpersisted_apply_limit(
    applied: int, persisted: int, committed: int, limit: int, want: list[Entry] | None
) -> None:
    log = _next_log(NEXT7, applied, persisted, committed, limit)
    assert log.has_next_entries() is (want is not None)
    assert log.next_entries(None) == want


def test_next_entries_since_and_size_limit() -> None:
    log = _next_log(NEXT4, 0, 7, 7, 0)
    assert log.applied_index_upper_bound() == 7
    assert log.next_entries_since(5) == NEXT4[2:]
    assert not log.has_next_entries_since(7)
    assert log.next_entries_since(7) is None
    assert log.next_entries(0) == NEXT4[:1]
    assert log.next_entries(ents_size(NEXT4[:2])) == NEXT4[:2]


# ----------------------------------------------------------------------
# slice, scan, bounds

SLICE_OFFSET, SLICE_NUM = 100, 100
SLICE_LAST = SLICE_OFFSET + SLICE_NUM
HALF = SLICE_OFFSET + SLICE_NUM // 2
HALF_SIZE = entry_size(ent(HALF, HALF))


@pytest.fixture(scope="module")
def slice_log() -> RaftLog:
    """Stable entries 101..149, unstable 150..199, after a snapshot at 100."""
    store = MemStorage()
    store.apply_snapshot(snap(SLICE_OFFSET, 0))
    for i in range(1, SLICE_NUM // 2):
        store.append([ent(SLICE_OFFSET + i, SLICE_OFFSET + i)])
    log = RaftLog(store)
    for i in range(SLICE_NUM // 2, SLICE_NUM):
        log.append([ent(SLICE_OFFSET + i, SLICE_OFFSET + i)])
    return log


def _run(lo: int, hi: int) -> list[Entry]:
    return [ent(i, i) for i in range(lo, hi)]


@pytest.mark.parametrize(
    ("lo", "hi", "limit", "want"),
    [
        # No limit.
        (SLICE_OFFSET - 1, SLICE_OFFSET + 1, NO_LIMIT, Compacted),
        (SLICE_OFFSET, SLICE_OFFSET + 1, NO_LIMIT, Compacted),
        (HALF - 1, HALF + 1, NO_LIMIT, _run(HALF - 1, HALF + 1)),
        (HALF, HALF + 1, NO_LIMIT, _run(HALF, HALF + 1)),
        (SLICE_LAST - 1, SLICE_LAST, NO_LIMIT, _run(SLICE_LAST - 1, SLICE_LAST)),
        (SLICE_LAST, SLICE_LAST + 1, NO_LIMIT, RaftFatal),
        (HALF, HALF, NO_LIMIT, []),
        # With a limit.
        (HALF - 1, HALF + 1, 0, _run(HALF - 1, HALF)),
        (HALF - 1, HALF + 1, HALF_SIZE + 1, _run(HALF - 1, HALF)),
        (HALF - 2, HALF + 1, HALF_SIZE + 1, _run(HALF - 2, HALF - 1)),
        (HALF - 1, HALF + 1, HALF_SIZE * 2, _run(HALF - 1, HALF + 1)),
        (HALF - 1, HALF + 2, HALF_SIZE * 3, _run(HALF - 1, HALF + 2)),
        (HALF, HALF + 2, HALF_SIZE, _run(HALF, HALF + 1)),
        (HALF, HALF + 2, HALF_SIZE * 2, _run(HALF, HALF + 2)),
    ],
)
def test_slice(
    slice_log: RaftLog, lo: int, hi: int, limit: int, want: list[Entry] | type[Exception]
) -> None:
    if isinstance(want, list):
        assert slice_log.slice(lo, hi, limit, SYNC) == want
    else:
        with pytest.raises(want):
            slice_log.slice(lo, hi, limit, SYNC)


def test_entries_past_the_end_is_empty(slice_log: RaftLog) -> None:
    assert slice_log.entries(SLICE_LAST, None, SYNC) == []
    assert slice_log.entries(SLICE_LAST - 1, None, SYNC) == _run(SLICE_LAST - 1, SLICE_LAST)


def test_scan() -> None:
    offset, num = 47, 20
    last, half = offset + num, offset + num // 2
    entry_sz = ents_size(_run(half, half + 1))
    store = MemStorage()
    store.apply_snapshot(snap(offset, 0))
    store.append(_run(offset + 1, half))
    log = RaftLog(store)
    log.append(_run(half, last))

    # scan() visits exactly what slice() returns, for every range and page size.
    for page_size in [0, 1, 10, 100, entry_sz, entry_sz + 1]:
        for lo in range(offset + 1, last):
            for hi in range(lo, last + 1):
                got: list[Entry] = []

                def visit(page: list[Entry], got: list[Entry] = got, ps: int = page_size) -> bool:
                    assert len(page) == 1 or ents_size(page) < ps
                    got.extend(page)
                    return True

                log.scan(lo, hi, page_size, SYNC, visit)
                assert got == log.slice(lo, hi, NO_LIMIT, SYNC), (lo, hi, page_size)

    # The callback can stop the scan early.
    calls = 0

    def stop_at_two(page: list[Entry]) -> bool:
        nonlocal calls
        calls += 1
        return calls != 2

    log.scan(offset + 1, half, 0, SYNC, stop_at_two)
    assert calls == 2

    # Pages fill up to the limit rather than holding one entry each.
    def two_per_page(page: list[Entry]) -> bool:
        assert len(page) == 2
        assert ents_size(page) == entry_sz * 2
        return True

    log.scan(offset + 1, offset + 11, entry_sz * 2, SYNC, two_per_page)


def test_scan_empty_page_is_an_error() -> None:
    class Lossy(MemStorage):
        __slots__ = ()

        def entries(
            self, low: int, high: int, max_size: int | None, context: GetEntriesContext
        ) -> list[Entry]:
            return []

    store = Lossy()
    store.append(_run(1, 4))
    log = RaftLog(store)
    with pytest.raises(StorageOther):
        log.scan(1, 3, None, SYNC, lambda page: True)


@pytest.mark.parametrize(
    ("lo", "hi", "fatal", "compacted"),
    [
        (99, 102, False, True),
        (100, 102, False, True),
        (101, 101, False, False),
        (151, 151, False, False),
        (200, 200, False, False),
        (201, 201, False, False),
        (201, 202, True, False),
        (202, 202, True, False),
        (105, 104, True, False),
    ],
)
def test_is_outofbounds(lo: int, hi: int, fatal: bool, compacted: bool) -> None:
    offset, num = 100, 100
    store = MemStorage()
    store.apply_snapshot(snap(offset, 0))
    log = RaftLog(store)
    for i in range(1, num + 1):
        log.append([ent(offset + i, 0)])
    if fatal:
        with pytest.raises(RaftFatal):
            log.must_check_outofbounds(lo, hi)
        return
    got = log.must_check_outofbounds(lo, hi)
    assert isinstance(got, Compacted) if compacted else got is None


