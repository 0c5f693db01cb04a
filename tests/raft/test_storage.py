# Covers raft-rs tests (src/storage.rs, src/util.rs):
#   test_storage_term, test_storage_entries, test_storage_last_index,
#   test_storage_first_index, test_storage_compact, test_storage_create_snapshot,
#   test_storage_append, test_storage_apply_snapshot,
#   limit_size (util.rs doc example), is_continuous_ents
"""Storage protocol conformance suite, plus MemStorage's own test hooks.

The conformance tests live in :class:`StorageConformance`, which pytest does
not collect by itself. A backend opts in by subclassing it under a ``Test``
name and providing a ``driver`` fixture that returns a :class:`StorageDriver`
(how the suite writes to that backend; the Storage protocol itself is
read-only)::

    class TestLmdbStorageConformance(StorageConformance):
        @pytest.fixture
        def driver(self, tmp_path): return LmdbDriver(tmp_path)

The suite builds every log through the driver, starting from a snapshot, so
``term(first_index() - 1)`` is answerable from the snapshot metadata as the
protocol requires.
"""

from __future__ import annotations

from typing import Protocol

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.errors import (
    Compacted,
    LogTemporarilyUnavailable,
    RaftFatal,
    SnapshotOutOfDate,
    SnapshotTemporarilyUnavailable,
    Unavailable,
)
from multiraft.raft.storage import GetEntriesContext, GetEntriesFor, MemStorage, Storage
from multiraft.raft.types import (
    NO_LIMIT,
    ConfState,
    Entry,
    HardState,
    Message,
    RaftState,
    Snapshot,
    SnapshotMetadata,
    entry_size,
)
from multiraft.raft.util import is_continuous_ents, limit_size, majority, take_limited

SYNC = GetEntriesContext.empty(False)
VOTERS = [1, 2, 3]


def ent(index: int, term: int) -> Entry:
    return Entry(term=term, index=index)


def snap(index: int, term: int, voters: list[int] | None = None) -> Snapshot:
    cs = ConfState(voters=list(VOTERS if voters is None else voters))
    return Snapshot(metadata=SnapshotMetadata(conf_state=cs, index=index, term=term))


def size(*ents: Entry) -> int:
    return sum(entry_size(e) for e in ents)


class StorageDriver(Protocol):
    """How the conformance suite creates and writes to one storage backend."""

    def create(self) -> Storage: ...
    def append(self, store: Storage, ents: list[Entry]) -> None: ...
    def apply_snapshot(self, store: Storage, snapshot: Snapshot) -> None: ...
    def compact(self, store: Storage, compact_index: int) -> None: ...
    def set_hard_state(self, store: Storage, hs: HardState) -> None: ...
    def set_conf_state(self, store: Storage, cs: ConfState) -> None: ...


class MemDriver:
    """The :class:`StorageDriver` for :class:`MemStorage`."""

    def create(self) -> Storage:
        return MemStorage()

    @staticmethod
    def _mem(store: Storage) -> MemStorage:
        assert isinstance(store, MemStorage)
        return store

    def append(self, store: Storage, ents: list[Entry]) -> None:
        self._mem(store).append(ents)

    def apply_snapshot(self, store: Storage, snapshot: Snapshot) -> None:
        self._mem(store).apply_snapshot(snapshot)

    def compact(self, store: Storage, compact_index: int) -> None:
        self._mem(store).compact(compact_index)

    def set_hard_state(self, store: Storage, hs: HardState) -> None:
        self._mem(store).set_hardstate(hs)

    def set_conf_state(self, store: Storage, cs: ConfState) -> None:
        self._mem(store).set_conf_state(cs)


def build(driver: StorageDriver, snap_index: int, snap_term: int, ents: list[Entry]) -> Storage:
    """A storage holding a snapshot at (snap_index, snap_term) followed by ``ents``."""
    store = driver.create()
    driver.apply_snapshot(store, snap(snap_index, snap_term))
    driver.append(store, ents)
    return store


def stored(store: Storage) -> list[Entry]:
    """Every entry the storage holds."""
    return store.entries(store.first_index(), store.last_index() + 1, None, SYNC)


class StorageConformance:
    """Behaviour every :class:`Storage` backend must share. Subclass with a ``driver`` fixture."""

    @pytest.fixture
    def driver(self) -> StorageDriver:
        raise NotImplementedError("subclasses provide the driver fixture")

    # -- term ----------------------------------------------------------

    @pytest.mark.parametrize(
        ("idx", "want"),
        [(2, Compacted), (3, 3), (4, 4), (5, 5), (6, Unavailable)],
    )
    def test_term(self, driver: StorageDriver, idx: int, want: int | type[Exception]) -> None:
        store = build(driver, 3, 3, [ent(4, 4), ent(5, 5)])
        if isinstance(want, int):
            assert store.term(idx) == want
        else:
            with pytest.raises(want):
                store.term(idx)

    # -- entries -------------------------------------------------------

    ENTS = (ent(4, 4), ent(5, 5), ent(6, 6))

    @pytest.mark.parametrize(
        ("lo", "hi", "max_size", "want"),
        [
            (2, 6, NO_LIMIT, None),
            (3, 4, NO_LIMIT, None),
            (4, 5, NO_LIMIT, [ent(4, 4)]),
            (4, 6, NO_LIMIT, [ent(4, 4), ent(5, 5)]),
            (4, 7, NO_LIMIT, list(ENTS)),
            (4, 7, None, list(ENTS)),
            # Even a zero budget returns the first entry.
            (4, 7, 0, [ent(4, 4)]),
            (4, 7, size(*ENTS[:2]), [ent(4, 4), ent(5, 5)]),
            (4, 7, size(*ENTS[:2]) + size(ENTS[2]) // 2, [ent(4, 4), ent(5, 5)]),
            (4, 7, size(*ENTS) - 1, [ent(4, 4), ent(5, 5)]),
            (4, 7, size(*ENTS), list(ENTS)),
            (5, 7, 0, [ent(5, 5)]),
        ],
    )
    def test_entries(
        self,
        driver: StorageDriver,
        lo: int,
        hi: int,
        max_size: int | None,
        want: list[Entry] | None,
    ) -> None:
        store = build(driver, 3, 3, list(self.ENTS))
        if want is None:
            with pytest.raises(Compacted):
                store.entries(lo, hi, max_size, SYNC)
        else:
            assert store.entries(lo, hi, max_size, SYNC) == want

    def test_entries_past_last_index_is_fatal(self, driver: StorageDriver) -> None:
        store = build(driver, 3, 3, list(self.ENTS))
        with pytest.raises(RaftFatal):
            store.entries(4, 8, None, SYNC)

    def test_entries_returns_a_list_the_caller_owns(self, driver: StorageDriver) -> None:
        store = build(driver, 3, 3, list(self.ENTS))
        got = store.entries(4, 7, None, SYNC)
        got.clear()
        assert store.entries(4, 7, None, SYNC) == list(self.ENTS)

    # -- bounds --------------------------------------------------------

    def test_fresh_storage_bounds(self, driver: StorageDriver) -> None:
        store = driver.create()
        assert store.first_index() == 1
        assert store.last_index() == 0
        assert store.term(0) == 0

    def test_last_index(self, driver: StorageDriver) -> None:
        store = build(driver, 3, 3, [ent(4, 4), ent(5, 5)])
        assert store.last_index() == 5
        driver.append(store, [ent(6, 5)])
        assert store.last_index() == 6

    def test_first_index(self, driver: StorageDriver) -> None:
        store = build(driver, 3, 3, [ent(4, 4), ent(5, 5)])
        assert store.first_index() == 4
        driver.compact(store, 5)
        assert store.first_index() == 5

    # -- compact -------------------------------------------------------

    @pytest.mark.parametrize(
        ("compact_index", "wfirst", "wterm", "wlen"),
        [(2, 3, 3, 3), (3, 3, 3, 3), (4, 4, 4, 2), (5, 5, 5, 1)],
    )
    def test_compact(
        self, driver: StorageDriver, compact_index: int, wfirst: int, wterm: int, wlen: int
    ) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        driver.compact(store, compact_index)
        first = store.first_index()
        assert first == wfirst
        assert store.entries(first, first + 1, 1, SYNC)[0].term == wterm
        assert len(store.entries(first, store.last_index() + 1, 100, SYNC)) == wlen
        assert store.last_index() == 5
        with pytest.raises(Compacted):
            store.entries(first - 1, first + 1, None, SYNC)

    def test_compact_past_last_index_is_fatal(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        with pytest.raises(RaftFatal):
            driver.compact(store, 7)

    def test_compact_everything(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        driver.compact(store, 6)
        assert store.first_index() == 6
        assert store.last_index() == 5
        driver.append(store, [ent(6, 6)])
        assert stored(store) == [ent(6, 6)]

    # -- snapshot ------------------------------------------------------

    @pytest.mark.parametrize(
        ("commit", "request_index", "windex", "wterm"),
        [(3, 0, 3, 3), (4, 0, 4, 4), (5, 5, 5, 5), (5, 6, 6, 5)],
    )
    def test_create_snapshot(
        self, driver: StorageDriver, commit: int, request_index: int, windex: int, wterm: int
    ) -> None:
        store = build(driver, 3, 3, [ent(4, 4), ent(5, 5)])
        driver.set_hard_state(store, HardState(term=commit, commit=commit))
        driver.set_conf_state(store, ConfState(voters=list(VOTERS)))
        got = store.snapshot(request_index, 0)
        assert got.metadata.index == windex
        assert got.metadata.term == wterm
        assert got.metadata.conf_state == ConfState(voters=list(VOTERS))

    # -- append --------------------------------------------------------

    @pytest.mark.parametrize(
        ("ents", "want"),
        [
            ([ent(3, 3), ent(4, 4), ent(5, 5)], [ent(3, 3), ent(4, 4), ent(5, 5)]),
            ([ent(3, 3), ent(4, 6), ent(5, 6)], [ent(3, 3), ent(4, 6), ent(5, 6)]),
            (
                [ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 5)],
                [ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 5)],
            ),
            # Overlap: the stored suffix is replaced.
            ([ent(4, 5)], [ent(3, 3), ent(4, 5)]),
            # Directly after the last entry.
            ([ent(6, 6)], [ent(3, 3), ent(4, 4), ent(5, 5), ent(6, 6)]),
            ([], [ent(3, 3), ent(4, 4), ent(5, 5)]),
        ],
    )
    def test_append(self, driver: StorageDriver, ents: list[Entry], want: list[Entry]) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        driver.append(store, ents)
        assert stored(store) == want
        assert store.last_index() == want[-1].index

    def test_append_overwriting_compacted_is_fatal(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        with pytest.raises(RaftFatal):
            driver.append(store, [ent(2, 3), ent(3, 3), ent(4, 5)])

    def test_append_with_gap_is_fatal(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        with pytest.raises(RaftFatal):
            driver.append(store, [ent(7, 5)])

    # -- apply_snapshot ------------------------------------------------

    def test_apply_snapshot(self, driver: StorageDriver) -> None:
        store = driver.create()
        driver.apply_snapshot(store, snap(4, 4))
        assert store.first_index() == 5
        assert store.last_index() == 4
        assert store.term(4) == 4
        state = store.initial_state()
        assert state.hard_state.commit == 4
        assert state.hard_state.term == 4
        assert state.conf_state == ConfState(voters=list(VOTERS))
        assert state.initialized()

    def test_apply_snapshot_out_of_date(self, driver: StorageDriver) -> None:
        store = driver.create()
        driver.apply_snapshot(store, snap(4, 4))
        with pytest.raises(SnapshotOutOfDate):
            driver.apply_snapshot(store, snap(3, 3))

    def test_apply_snapshot_replaces_log(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3), ent(4, 4), ent(5, 5)])
        driver.set_hard_state(store, HardState(term=9, vote=1, commit=3))
        driver.apply_snapshot(store, snap(7, 6, voters=[4, 5]))
        assert store.first_index() == 8
        assert store.last_index() == 7
        assert store.term(7) == 6
        with pytest.raises(Compacted):
            store.term(5)
        state = store.initial_state()
        # The term never goes backwards; the vote is kept.
        assert state.hard_state == HardState(term=9, vote=1, commit=7)
        assert state.conf_state == ConfState(voters=[4, 5])

    # -- initial_state -------------------------------------------------

    def test_initial_state_fresh(self, driver: StorageDriver) -> None:
        state = driver.create().initial_state()
        assert state == RaftState()
        assert not state.initialized()

    def test_initial_state_reflects_writes(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3)])
        driver.set_hard_state(store, HardState(term=3, vote=2, commit=3))
        driver.set_conf_state(store, ConfState(voters=[1], learners=[2]))
        state = store.initial_state()
        assert state.hard_state == HardState(term=3, vote=2, commit=3)
        assert state.conf_state == ConfState(voters=[1], learners=[2])

    def test_initial_state_is_a_copy(self, driver: StorageDriver) -> None:
        store = build(driver, 2, 2, [ent(3, 3)])
        state = store.initial_state()
        state.hard_state.commit = 99
        state.conf_state.voters.append(99)
        again = store.initial_state()
        assert again.hard_state.commit == 2
        assert again.conf_state.voters == VOTERS


class TestMemStorageConformance(StorageConformance):
    @pytest.fixture
    def driver(self) -> StorageDriver:
        return MemDriver()


# ----------------------------------------------------------------------
# MemStorage only: construction, test hooks and raft-rs quirks.


def test_new_with_conf_state_tuple_and_object() -> None:
    s = MemStorage.new_with_conf_state(([1, 2], [3]))
    assert s.initial_state().conf_state == ConfState(voters=[1, 2], learners=[3])
    cs = ConfState(voters=[1, 2, 3])
    s = MemStorage.new_with_conf_state(cs)
    state = s.initial_state()
    assert state.conf_state == cs
    assert state.initialized()
    # raft-rs convention: an empty log at index 0, term 0.
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)


def test_initialize_twice_is_fatal() -> None:
    s = MemStorage.new()
    s.initialize_with_conf_state(([1], []))
    with pytest.raises(RaftFatal):
        s.initialize_with_conf_state(([1], []))


def test_rl_wl_return_the_storage() -> None:
    s = MemStorage()
    assert s.rl() is s
    assert s.wl() is s


def test_hard_state_accessors_share_the_live_object() -> None:
    s = MemStorage()
    s.set_hardstate(HardState(term=2, vote=1, commit=0))
    s.mut_hard_state().vote = 3
    assert s.hard_state() == HardState(term=2, vote=3, commit=0)
    assert s.initial_state().hard_state == HardState(term=2, vote=3, commit=0)


def test_commit_to_sets_commit_and_term() -> None:
    s = MemStorage()
    s.append([ent(1, 1), ent(2, 3)])
    s.commit_to(2)
    assert s.hard_state() == HardState(term=3, vote=0, commit=2)
    with pytest.raises(RaftFatal):
        s.commit_to(3)
    with pytest.raises(RaftFatal):
        MemStorage().commit_to(0)


def test_commit_to_and_set_conf_states() -> None:
    s = MemStorage()
    s.append([ent(1, 1)])
    s.commit_to_and_set_conf_states(1, ConfState(voters=[7]))
    assert s.initial_state().conf_state == ConfState(voters=[7])
    s.commit_to_and_set_conf_states(1)
    assert s.initial_state().conf_state == ConfState(voters=[7])


def test_trigger_snap_unavailable_fires_once() -> None:
    s = MemStorage()
    s.apply_snapshot(snap(4, 4))
    s.trigger_snap_unavailable()
    with pytest.raises(SnapshotTemporarilyUnavailable):
        s.snapshot(0, 0)
    assert s.snapshot(0, 0).metadata.index == 4


def test_snapshot_without_arguments() -> None:
    s = MemStorage()
    s.apply_snapshot(snap(4, 4))
    s.append([ent(5, 5)])
    s.set_hardstate(HardState(term=5, commit=5))
    got = s.snapshot()
    assert (got.metadata.index, got.metadata.term) == (5, 5)
    assert got.data == b""


def test_snapshot_commit_below_snapshot_is_fatal() -> None:
    s = MemStorage()
    s.apply_snapshot(snap(4, 4))
    s.set_hardstate(HardState(term=4, commit=3))
    with pytest.raises(RaftFatal):
        s.snapshot(0, 0)


def test_snapshot_conf_state_is_a_copy() -> None:
    s = MemStorage.new_with_conf_state(([1, 2], []))
    got = s.snapshot(0, 0)
    got.metadata.conf_state.voters.append(9)
    assert s.initial_state().conf_state.voters == [1, 2]


def test_trigger_log_unavailable_only_for_async_contexts() -> None:
    s = MemStorage()
    s.append([ent(1, 1), ent(2, 1)])
    s.trigger_log_unavailable(True)
    ctx = GetEntriesContext.send_append(2, 1, True)
    with pytest.raises(LogTemporarilyUnavailable):
        s.entries(1, 3, None, ctx)
    assert s.take_get_entries_context() == ctx
    assert s.take_get_entries_context() is None
    with pytest.raises(LogTemporarilyUnavailable):
        s.entries(1, 3, None, GetEntriesContext.empty(True))
    # Synchronous callers are always served.
    assert s.entries(1, 3, None, SYNC) == [ent(1, 1), ent(2, 1)]
    assert s.entries(1, 3, None, GetEntriesContext.gen_ready()) == [ent(1, 1), ent(2, 1)]
    s.trigger_log_unavailable(False)
    assert s.entries(1, 3, None, ctx) == [ent(1, 1), ent(2, 1)]


def test_compaction_forgets_the_dummy_term() -> None:
    # raft-rs's MemStorage keeps only the snapshot's term; a compaction past it
    # leaves term(first_index - 1) Compacted, and the leader must send a snapshot.
    s = MemStorage()
    s.append([ent(1, 1), ent(2, 2), ent(3, 3)])
    s.compact(3)
    assert s.first_index() == 3
    with pytest.raises(Compacted):
        s.term(2)
    assert s.term(0) == 0


def test_empty_range_entries() -> None:
    s = MemStorage()
    assert s.entries(1, 1, None, SYNC) == []
    s.apply_snapshot(snap(5, 5))
    assert s.entries(6, 6, None, SYNC) == []
    with pytest.raises(Compacted):
        s.entries(5, 6, None, SYNC)


def test_appended_entries_are_shared_not_copied() -> None:
    s = MemStorage()
    e = ent(1, 1)
    s.append([e])
    assert s.entries(1, 2, None, SYNC)[0] is e


# ----------------------------------------------------------------------
# GetEntriesContext


@pytest.mark.parametrize(
    ("ctx", "what", "can_async"),
    [
        (GetEntriesContext.send_append(3, 7, False), GetEntriesFor.SendAppend, True),
        (GetEntriesContext.gen_ready(), GetEntriesFor.GenReady, False),
        (GetEntriesContext.transfer_leader(), GetEntriesFor.TransferLeader, False),
        (GetEntriesContext.commit_by_vote(), GetEntriesFor.CommitByVote, False),
        (GetEntriesContext.empty(True), GetEntriesFor.Empty, True),
        (GetEntriesContext.empty(False), GetEntriesFor.Empty, False),
    ],
)
def test_get_entries_context(ctx: GetEntriesContext, what: GetEntriesFor, can_async: bool) -> None:
    assert ctx.what == what
    assert ctx.can_async() is can_async
    assert what.name in repr(ctx) or "empty" in repr(ctx) or "send_append" in repr(ctx)


def test_get_entries_context_fields_and_equality() -> None:
    ctx = GetEntriesContext.send_append(3, 7, True)
    assert (ctx.to, ctx.term, ctx.aggressively) == (3, 7, True)
    assert ctx == GetEntriesContext.send_append(3, 7, True)
    assert ctx != GetEntriesContext.send_append(3, 7, False)
    assert hash(ctx) == hash(GetEntriesContext.send_append(3, 7, True))
    assert GetEntriesContext.empty(True) != GetEntriesContext.empty(False)
    assert ctx != "ctx"


# ----------------------------------------------------------------------
# util: limit_size and friends


def test_limit_size_doc_example() -> None:
    template = Entry(data=b"*" * 100)
    ents = [Entry(data=template.data) for _ in range(5)]
    limit_size(ents, 220)
    assert len(ents) == 2
    limit_size(ents, 0)
    assert len(ents) == 1


@pytest.mark.parametrize("max_size", [None, NO_LIMIT])
def test_limit_size_unlimited(max_size: int | None) -> None:
    ents = [ent(i, 1) for i in range(1, 6)]
    limit_size(ents, max_size)
    assert len(ents) == 5


def test_limit_size_empty_and_single() -> None:
    ents: list[Entry] = []
    limit_size(ents, 0)
    assert ents == []
    one = [Entry(data=b"x" * 100)]
    limit_size(one, 0)
    assert len(one) == 1


def _naive_limit(ents: list[Entry], max_size: int | None) -> list[Entry]:
    # The textbook reading of raft-rs's take_while, kept deliberately literal.
    if len(ents) <= 1 or max_size is None or max_size == NO_LIMIT:
        return list(ents)
    out: list[Entry] = []
    total = 0
    for e in ents:
        if total == 0:
            total += entry_size(e)
            out.append(e)
            continue
        total += entry_size(e)
        if total > max_size:
            break
        out.append(e)
    return out


_entries_st = st.lists(
    st.builds(
        Entry,
        term=st.integers(0, 300),
        index=st.integers(0, 300),
        data=st.binary(max_size=20),
    ),
    max_size=12,
)


@settings(deadline=None, derandomize=True, database=None)
@given(_entries_st, st.one_of(st.none(), st.integers(0, 120)), st.data())
def test_limit_size_and_take_limited_match_reference(
    ents: list[Entry], max_size: int | None, data: st.DataObject
) -> None:
    want = _naive_limit(ents, max_size)
    got = list(ents)
    limit_size(got, max_size)
    assert got == want
    start = data.draw(st.integers(0, len(ents)))
    stop = data.draw(st.integers(start, len(ents)))
    sub = ents[start:stop]
    limit_size(sub, max_size)
    assert take_limited(ents, start, stop, max_size) == sub


def test_is_continuous_ents() -> None:
    m = Message(entries=[ent(1, 1), ent(2, 1)])
    assert is_continuous_ents(m, [ent(3, 1)])
    assert not is_continuous_ents(m, [ent(4, 1)])
    assert is_continuous_ents(m, [])
    assert is_continuous_ents(Message(), [ent(9, 1)])


def test_majority() -> None:
    assert [majority(n) for n in range(6)] == [1, 1, 2, 2, 3, 3]
