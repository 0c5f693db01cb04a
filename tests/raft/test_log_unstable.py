# Covers raft-rs tests (src/log_unstable.rs):
#   test_maybe_first_index, test_maybe_last_index, test_maybe_term, test_restore,
#   test_stable_snapshot_and_entries, test_truncate_and_append
"""Tests for the unstable tail of the log."""

from __future__ import annotations

import pytest

from multiraft.raft.errors import RaftFatal
from multiraft.raft.log_unstable import Unstable
from multiraft.raft.logger import ListLogger, NullLogger
from multiraft.raft.types import Entry, Snapshot, SnapshotMetadata
from multiraft.raft.util import entry_approximate_size


def ent(index: int, term: int) -> Entry:
    return Entry(term=term, index=index)


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(metadata=SnapshotMetadata(index=index, term=term))


def unstable(entries: list[Entry], offset: int, snapshot: Snapshot | None = None) -> Unstable:
    u = Unstable(offset, NullLogger())
    u.entries = list(entries)
    u.entries_size = sum(entry_approximate_size(e) for e in entries)
    u.snapshot = snapshot
    return u


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "want"),
    [
        # Without a snapshot the first index is not known here.
        ([ent(5, 1)], 5, None, None),
        ([], 0, None, None),
        # With one, the log starts right after it.
        ([ent(5, 1)], 5, snap(4, 1), 5),
        ([], 5, snap(4, 1), 5),
    ],
)
def test_maybe_first_index(
    entries: list[Entry], offset: int, snapshot: Snapshot | None, want: int | None
) -> None:
    assert unstable(entries, offset, snapshot).maybe_first_index() == want


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "want"),
    [
        ([ent(5, 1)], 5, None, 5),
        ([ent(5, 1)], 5, snap(4, 1), 5),
        # Only a snapshot: it holds the last index.
        ([], 5, snap(4, 1), 4),
        # Nothing unstable at all.
        ([], 0, None, None),
    ],
)
def test_maybe_last_index(
    entries: list[Entry], offset: int, snapshot: Snapshot | None, want: int | None
) -> None:
    assert unstable(entries, offset, snapshot).maybe_last_index() == want


@pytest.mark.parametrize(
    ("entries", "offset", "snapshot", "index", "want"),
    [
        # From the entries.
        ([ent(5, 1)], 5, None, 5, 1),
        ([ent(5, 1)], 5, None, 6, None),
        ([ent(5, 1)], 5, None, 4, None),
        ([ent(5, 1)], 5, snap(4, 1), 5, 1),
        ([ent(5, 1)], 5, snap(4, 1), 6, None),
        # From the snapshot.
        ([ent(5, 1)], 5, snap(4, 1), 4, 1),
        ([ent(5, 1)], 5, snap(4, 1), 3, None),
        ([], 5, snap(4, 1), 5, None),
        ([], 5, snap(4, 1), 4, 1),
        ([], 0, None, 5, None),
    ],
)
def test_maybe_term(
    entries: list[Entry],
    offset: int,
    snapshot: Snapshot | None,
    index: int,
    want: int | None,
) -> None:
    assert unstable(entries, offset, snapshot).maybe_term(index) == want


def test_restore() -> None:
    u = unstable([ent(5, 1)], 5, snap(4, 1))
    s = snap(6, 2)
    u.restore(s)
    assert u.offset == 7
    assert u.entries == []
    assert u.entries_size == 0
    assert u.snapshot is s


def test_restore_does_not_clear_a_list_handed_out() -> None:
    u = unstable([ent(5, 1)], 5)
    handed_out = u.entries
    u.restore(snap(6, 2))
    assert handed_out == [ent(5, 1)]


def test_stable_snapshot_and_entries() -> None:
    ents = [ent(5, 1), ent(5, 2), ent(6, 3)]
    u = unstable(ents, 5, snap(4, 1))
    assert u.entries == ents
    u.stable_snap(4)
    assert u.snapshot is None
    u.stable_entries(6, 3)
    assert u.entries == []
    assert u.entries_size == 0
    assert u.offset == 7


def test_stable_entries_before_snapshot_is_fatal() -> None:
    u = unstable([ent(5, 1)], 5, snap(4, 1))
    with pytest.raises(RaftFatal):
        u.stable_entries(5, 1)


@pytest.mark.parametrize(("index", "term"), [(5, 2), (4, 1), (6, 1)])
def test_stable_entries_mismatch_is_fatal(index: int, term: int) -> None:
    logger = ListLogger()
    u = Unstable(5, logger)
    u.truncate_and_append([ent(5, 1)])
    with pytest.raises(RaftFatal):
        u.stable_entries(index, term)
    assert logger.records and logger.records[-1][0] == "error"
    # A failed call leaves the state unchanged.
    assert (u.offset, u.entries) == (5, [ent(5, 1)])


def test_stable_entries_with_nothing_unstable_is_fatal() -> None:
    with pytest.raises(RaftFatal):
        unstable([], 5).stable_entries(4, 1)


def test_stable_snap_mismatch_is_fatal() -> None:
    with pytest.raises(RaftFatal):
        unstable([], 5).stable_snap(4)
    u = unstable([], 5, snap(4, 1))
    with pytest.raises(RaftFatal):
        u.stable_snap(3)
    assert u.snapshot is not None


@pytest.mark.parametrize(
    ("entries", "offset", "to_append", "woffset", "wentries"),
    [
        # Straight after the unstable entries.
        ([ent(5, 1)], 5, [ent(6, 1), ent(7, 1)], 5, [ent(5, 1), ent(6, 1), ent(7, 1)]),
        # Replace all unstable entries.
        ([ent(5, 1)], 5, [ent(5, 2), ent(6, 2)], 5, [ent(5, 2), ent(6, 2)]),
        ([ent(5, 1)], 5, [ent(4, 2), ent(5, 2), ent(6, 2)], 4, [ent(4, 2), ent(5, 2), ent(6, 2)]),
        # Truncate inside the unstable entries, then append.
        ([ent(5, 1), ent(6, 1), ent(7, 1)], 5, [ent(6, 2)], 5, [ent(5, 1), ent(6, 2)]),
        (
            [ent(5, 1), ent(6, 1), ent(7, 1)],
            5,
            [ent(7, 2), ent(8, 2)],
            5,
            [ent(5, 1), ent(6, 1), ent(7, 2), ent(8, 2)],
        ),
        # Nothing to append.
        ([ent(5, 1)], 5, [], 5, [ent(5, 1)]),
    ],
)
def test_truncate_and_append(
    entries: list[Entry],
    offset: int,
    to_append: list[Entry],
    woffset: int,
    wentries: list[Entry],
) -> None:
    u = unstable(entries, offset)
    u.truncate_and_append(to_append)
    assert u.offset == woffset
    assert u.entries == wentries
    assert u.entries_size == sum(entry_approximate_size(e) for e in wentries)


def test_truncate_and_append_gap_is_fatal() -> None:
    u = unstable([ent(5, 1)], 5)
    with pytest.raises(RaftFatal):
        u.truncate_and_append([ent(7, 1)])
    assert u.entries == [ent(5, 1)]


def test_entries_size_counts_payloads() -> None:
    u = Unstable(1, NullLogger())
    u.truncate_and_append([Entry(index=1, term=1, data=b"abc", context=b"xy")])
    assert u.entries_size == 3 + 2 + 12
    u.truncate_and_append([Entry(index=1, term=2, data=b"z")])
    assert u.entries_size == 1 + 12


def test_slice_and_bounds() -> None:
    u = unstable([ent(5, 1), ent(6, 1), ent(7, 2)], 5)
    assert u.slice(5, 8) == [ent(5, 1), ent(6, 1), ent(7, 2)]
    assert u.slice(6, 7) == [ent(6, 1)]
    assert u.slice(6, 6) == []
    copy = u.slice(5, 8)
    copy.clear()
    assert len(u.entries) == 3
    for lo, hi in [(4, 6), (5, 9), (7, 6)]:
        with pytest.raises(RaftFatal):
            u.slice(lo, hi)
    u.must_check_outofbounds(5, 8)


def test_repr() -> None:
    assert "offset=5" in repr(unstable([ent(5, 1)], 5, snap(4, 1)))
    assert "snapshot=None" in repr(unstable([], 5))
