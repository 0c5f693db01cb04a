"""Range cleanup: orphaned data is deleted in bounded transactions, never inside a range a live
replica (or a snapshot being installed) owns at deletion time, idempotently, and found again
after a restart."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from multiraft.metrics import StorageMetrics
from multiraft.raft import ConfState, SnapshotMetadata
from multiraft.storage import Engine, RaftStorage, StorageWriter, WriteBatch
from multiraft.store.cleanup import (
    RangeCleaner,
    covered_ranges,
    delete_data,
    ranges_to_clean,
    subtract_ranges,
)
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from regions import PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def load(engine: Engine, keys: list[bytes], value: bytes = b"vv") -> None:
    def put(txn: object) -> None:
        for k in keys:
            txn.put(k, value, db=engine.dbs.data)  # type: ignore[attr-defined]

    engine.write(put)


def data_keys(engine: Engine) -> list[bytes]:
    with engine.read() as txn:
        return [bytes(k) for k in txn.cursor(engine.dbs.data).iternext(values=False)]


ALPHABET = [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"]


def replica(engine: Engine, rid: int, start: bytes, end: bytes, *, peers: bool = True) -> Replica:
    region = Region(rid, start, end, RegionEpoch(1, 1), [Peer(rid * 10, 1)])
    storage = RaftStorage(engine, rid)
    b = WriteBatch()
    storage.apply_snapshot_meta(SnapshotMetadata(ConfState(voters=[rid * 10]), 5, 5), b)
    b.put_region_state(rid, RegionLocalState(PeerState.Normal, region))
    b.commit(engine)
    r = Replica(region.peers[0], region, storage, RaftSettings())
    if not peers:  # uninitialized: no range, no peers
        r.region = Region(rid, b"", b"", RegionEpoch(), [])
    return r


# -- range arithmetic -----------------------------------------------------------------------

UNIVERSE = [bytes([c]) for c in range(ord("a"), ord("k"))]
ranges_st = st.tuples(st.sampled_from([b"", *UNIVERSE]), st.sampled_from([b"", *UNIVERSE])).filter(
    lambda r: not r[1] or r[0] < r[1]
)


def inside(key: bytes, r: tuple[bytes, bytes]) -> bool:
    return r[0] <= key and (not r[1] or key < r[1])


@given(ranges_st, st.lists(ranges_st, max_size=6))
def test_subtract_ranges_matches_brute_force(
    target: tuple[bytes, bytes], covered: list[tuple[bytes, bytes]]
) -> None:
    got = subtract_ranges(target[0], target[1], covered)
    probe = [*UNIVERSE, b"a\x00", b"j\x00", b"z"]
    for key in probe:
        expected = inside(key, target) and not any(inside(key, c) for c in covered)
        assert any(inside(key, g) for g in got) == expected, (key, got)
    # Sorted, non-empty and disjoint.
    for s, e in got:
        assert not e or s < e
    for (_, e1), (s2, _) in itertools.pairwise(got):
        assert e1 and e1 < s2


def test_delete_data_is_bounded_and_resumable(engine: Engine) -> None:
    load(engine, ALPHABET)
    n, nbytes, resume = delete_data(engine, [(b"b", b"e"), (b"x", b"")], 4)
    assert (n, nbytes, resume) == (4, 4 * 3, b"y")  # b, c, d, x: then the limit, at y
    assert resume is not None
    n, _, resume = delete_data(engine, [(resume, b"")], 100)
    assert (n, resume) == (2, None)
    assert data_keys(engine) == [
        k for k in ALPHABET if k not in (b"b", b"c", b"d", b"x", b"y", b"z")
    ]
    assert delete_data(engine, [(b"b", b"e")], 4) == (0, 0, None)  # idempotent


# -- RangeCleaner ---------------------------------------------------------------------------


def cleaner(
    engine: Engine, router: Router, batch_keys: int = 3
) -> tuple[RangeCleaner, StorageMetrics]:
    metrics = StorageMetrics(CollectorRegistry())
    return RangeCleaner(engine, StorageWriter(engine), router, batch_keys=batch_keys,
                        metrics=metrics), metrics  # fmt: skip


async def test_cleans_a_range_in_bounded_transactions(engine: Engine) -> None:
    load(engine, ALPHABET)
    c, metrics = cleaner(engine, Router())
    c.schedule(7, b"c", b"l")  # 9 keys, 3 per transaction
    assert await c.clean_pending() == 9
    assert data_keys(engine) == [k for k in ALPHABET if not b"c" <= k < b"l"]
    stats = c.statistics()
    assert (stats.pending, stats.deleted_keys, stats.transactions) == (0, 9, 3)
    assert metrics.range_cleaned_keys._value.get() == 9
    assert metrics.range_cleaned_bytes._value.get() == 9 * 3
    c.schedule(7, b"c", b"l")  # idempotent
    assert await c.clean_pending() == 0


async def test_never_deletes_what_a_live_replica_owns(engine: Engine) -> None:
    load(engine, ALPHABET)
    router = Router()
    router.add(replica(engine, 1, b"e", b"h"))
    router.add(replica(engine, 2, b"t", b""))
    router.add(replica(engine, 3, b"", b"", peers=False))  # uninitialized: owns nothing
    c, _ = cleaner(engine, router)
    c.schedule(9, b"", b"")
    await c.clean_pending()
    assert data_keys(engine) == [b"e", b"f", b"g", *ALPHABET[19:]]


async def test_a_replica_arriving_between_transactions_keeps_its_range(engine: Engine) -> None:
    load(engine, ALPHABET)
    router = Router()
    writer = StorageWriter(engine)
    calls = 0
    real_run: Callable[..., object] = writer.run

    async def run_then_arrive(fn: Callable[..., object], *args: object) -> object:
        nonlocal calls
        calls += 1
        got = await real_run(fn, *args)  # type: ignore[misc]
        if calls == 1:  # a snapshot made region 5 live on [m, q) after the first batch
            router.add(replica(engine, 5, b"m", b"q"))
        return got

    writer.run = run_then_arrive  # type: ignore[method-assign]
    c = RangeCleaner(engine, writer, router, batch_keys=5)
    c.schedule(1, b"", b"")
    await c.clean_pending()
    assert data_keys(engine) == [b"m", b"n", b"o", b"p"]


async def test_a_snapshot_being_installed_holds_its_range(engine: Engine) -> None:
    load(engine, ALPHABET)
    router = Router()
    r = replica(engine, 4, b"", b"", peers=False)
    router.add(r)
    snap_region = Region(4, b"x", b"", RegionEpoch(1, 3), [Peer(40, 1)])
    # Received (or being installed): only its region matters here.
    r.pending_snapshot = SimpleNamespace(region=snap_region)  # type: ignore[assignment]
    assert covered_ranges(router, b"", b"") == [(b"x", b"")]
    c, _ = cleaner(engine, router)
    c.schedule(9, b"", b"")
    await c.clean_pending()
    assert data_keys(engine) == [b"x", b"y", b"z"]
    # Applying with no known region: everything is held back until it is done.
    load(engine, [b"a"])
    r.pending_snapshot = None
    r.peer_state = PeerState.Applying
    c.schedule(9, b"", b"")
    await c.clean_pending()
    assert b"a" in data_keys(engine)


async def test_run_cleans_what_is_scheduled(engine: Engine) -> None:
    load(engine, ALPHABET)
    c, _ = cleaner(engine, Router())
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        c.schedule(1, b"a", b"c")
        with trio.fail_after(10):
            while data_keys(engine)[0] != b"c":  # noqa: ASYNC110
                await trio.sleep(0.01)
        c.schedule(2, b"y", b"")
        with trio.fail_after(10):
            while data_keys(engine)[-1] != b"x":  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


# -- restart ---------------------------------------------------------------------------------


def test_ranges_to_clean_lists_gaps_with_data(engine: Engine) -> None:
    router = Router()
    assert ranges_to_clean(engine, router) == []  # no data at all
    load(engine, ALPHABET)
    assert ranges_to_clean(engine, router) == [(b"", b"")]
    router.add(replica(engine, 1, b"", b"c"))
    router.add(replica(engine, 2, b"e", b"h"))
    router.add(replica(engine, 3, b"h", b"k"))
    router.add(replica(engine, 4, b"y", b""))
    assert ranges_to_clean(engine, router) == [(b"c", b"e"), (b"k", b"y")]
    # Gaps without keys are not listed.
    c_to_e = [b"c", b"d"]

    def drop(txn: object) -> None:
        for k in c_to_e:
            txn.delete(k, db=engine.dbs.data)  # type: ignore[attr-defined]

    engine.write(drop)
    assert ranges_to_clean(engine, router) == [(b"k", b"y")]


async def test_data_left_by_a_crash_is_found_and_cleaned_after_a_restart(tmp_path: Path) -> None:
    """A peer was destroyed (tombstone committed) and the store died before its data went."""
    path = tmp_path / "db"
    with Engine.open(path, sync=False) as engine:
        load(engine, ALPHABET)
        live = replica(engine, 1, b"a", b"m")
        gone = replica(engine, 2, b"m", b"")
        b = WriteBatch()
        b.delete_raft_meta(2)
        b.put_region_state(2, RegionLocalState(PeerState.Tombstone, gone.region))
        b.commit(engine)
        del live
    with Engine.open(path, sync=False) as engine:
        router = Router()  # as recovery rebuilds it
        router.add(Replica(Peer(10, 1), Region(1, b"a", b"m", RegionEpoch(1, 1), [Peer(10, 1)]),
                           RaftStorage.open(engine, 1), RaftSettings()))  # fmt: skip
        c, _ = cleaner(engine, router)
        for start, end in ranges_to_clean(engine, router):
            c.schedule(0, start, end)
        await c.clean_pending()
        assert data_keys(engine) == ALPHABET[:12]
        assert ranges_to_clean(engine, router) == []
