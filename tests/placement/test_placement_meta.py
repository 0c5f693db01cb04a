"""The placement metadata (LMDB) and the id allocator: durable, exclusive, never reusing ids."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
import trio

from multiraft.placement.cluster_meta import (
    BootstrapPending,
    ClusterMeta,
    MetaCorrupted,
    MetaWrite,
)
from multiraft.placement.id_alloc import IdAllocator
from multiraft.storage import DataDirLocked, Engine
from multiraft.storage.keys import STORE_IDENT_KEY
from multiraft.wire.placement_messages import StoreInfo, StoreState
from regions.region import Peer, Region, RegionEpoch


def test_cluster_id_is_chosen_once_and_persists(tmp_path: Path) -> None:
    with ClusterMeta.open(tmp_path) as meta:
        cid = meta.cluster_id
    assert 0 < cid < 2**64
    for _ in range(3):
        with ClusterMeta.open(tmp_path) as meta:
            assert meta.cluster_id == cid
            assert meta.load().cluster_id == cid
    with ClusterMeta.open(tmp_path / "other") as other:
        assert other.cluster_id != cid  # 64 random bits


def test_a_second_open_of_the_directory_is_refused(tmp_path: Path) -> None:
    with ClusterMeta.open(tmp_path), pytest.raises(DataDirLocked):
        ClusterMeta.open(tmp_path)
    ClusterMeta.open(tmp_path).close()  # released on close


def test_a_store_data_directory_is_refused(tmp_path: Path) -> None:
    with Engine.open(tmp_path) as engine:
        engine.write(lambda txn: txn.put(STORE_IDENT_KEY, b"x", db=engine.dbs.meta))
    with pytest.raises(MetaCorrupted, match="store's data directory"):
        ClusterMeta.open(tmp_path)


def test_writes_survive_reopen_atomically(tmp_path: Path) -> None:
    r1 = Region(10, b"", b"m", RegionEpoch(1, 2), [Peer(11, 1), Peer(12, 2)])
    r2 = Region(20, b"m", b"", RegionEpoch(1, 2), [Peer(21, 1)])
    stores = [StoreInfo(1, "h:1"), StoreInfo(2, "h:2", "h:9", StoreState.Offline, "v")]
    with ClusterMeta.open(tmp_path) as meta:
        fresh = meta.load()
        assert (fresh.bootstrapped, fresh.id_high_water, fresh.stores, fresh.regions) == (
            False, 0, {}, [],
        )  # fmt: skip
        assert fresh.bootstrap_pending is None
        meta.commit(
            MetaWrite(
                stores=stores,
                regions=[r1, r2, Region(30, b"x")],
                bootstrapped=True,
                bootstrap_pending=BootstrapPending(10, frozenset({1, 2})),
                id_high_water=1000,
            )
        )
        meta.commit(MetaWrite(deleted_regions=[30]))
    with ClusterMeta.open(tmp_path) as meta:
        st = meta.load()
        assert st.bootstrapped and st.id_high_water == 1000
        assert st.stores == {1: stores[0], 2: stores[1]}
        assert sorted(st.regions, key=lambda r: r.id) == [r1, r2]
        assert st.bootstrap_pending == BootstrapPending(10, frozenset({1, 2}))
        meta.commit(MetaWrite(bootstrap_pending=BootstrapPending(10, frozenset())))
    with ClusterMeta.open(tmp_path) as meta:
        assert meta.load().bootstrap_pending is None


def test_a_failing_write_changes_nothing(tmp_path: Path) -> None:
    with ClusterMeta.open(tmp_path) as meta:
        # The mark does not pack as a u64, after the store and region were put: the
        # transaction is aborted as a whole.
        with pytest.raises(struct.error):
            meta.commit(MetaWrite(stores=[StoreInfo(1, "h:1")], regions=[Region(5)],
                                  id_high_water=-1))  # fmt: skip
        st = meta.load()
        assert st.stores == {} and st.regions == [] and st.id_high_water == 0


def test_a_damaged_record_is_reported(tmp_path: Path) -> None:
    with ClusterMeta.open(tmp_path) as meta:
        meta.commit(MetaWrite(stores=[StoreInfo(1, "h:1")]))
        db = meta.engine.env.open_db(b"placement_stores")
        meta.engine.write(lambda txn: txn.put((1).to_bytes(8, "big"), b"\xff\x00", db=db))
        with pytest.raises(MetaCorrupted, match="damaged"):
            meta.load()


# -- the id allocator ---------------------------------------------------------------------------


async def test_allocator_persists_the_mark_before_handing_out_ids() -> None:
    persisted: list[int] = []

    async def persist(mark: int) -> None:
        persisted.append(mark)

    alloc = IdAllocator(0, persist, window=10)
    assert await alloc.alloc() == 1
    assert persisted == [11]
    assert await alloc.alloc(10) == 2  # 2..11: still inside the window
    assert persisted == [11]
    assert await alloc.alloc(5) == 12  # 12..16: a new mark 16 + 10
    assert persisted == [11, 26]
    with pytest.raises(ValueError):
        await alloc.alloc(0)


async def test_allocator_hands_out_nothing_when_persisting_fails() -> None:
    fail = True

    async def persist(mark: int) -> None:
        if fail:
            raise OSError("disk on fire")

    alloc = IdAllocator(41, persist, window=5)
    with pytest.raises(OSError):
        await alloc.alloc(3)
    fail = False
    assert await alloc.alloc(3) == 42
    assert alloc.high_water == 49


async def test_concurrent_allocations_never_overlap() -> None:
    async def persist(mark: int) -> None:
        await trio.lowlevel.checkpoint()

    alloc = IdAllocator(0, persist, window=3)
    got: list[range] = []

    async def take(n: int) -> None:
        first = await alloc.alloc(n)
        got.append(range(first, first + n))

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(take, i % 7 + 1)
    ids = [i for r in got for i in r]
    assert len(ids) == len(set(ids)) == sum(i % 7 + 1 for i in range(50))


async def test_ids_are_never_reused_across_many_restarts(tmp_path: Path) -> None:
    rng = random.Random(5)
    seen: set[int] = set()
    last = 0
    for _ in range(25):
        meta = await trio.to_thread.run_sync(ClusterMeta.open, tmp_path)
        try:
            state = meta.load()

            async def persist(mark: int, meta: ClusterMeta = meta) -> None:
                await trio.to_thread.run_sync(meta.commit, MetaWrite(id_high_water=mark))

            alloc = IdAllocator(state.id_high_water, persist, window=rng.choice([1, 7, 100]))
            for _ in range(rng.randint(0, 6)):
                n = rng.randint(1, 20)
                first = await alloc.alloc(n)
                assert first > last  # monotonic across restarts too
                batch = set(range(first, first + n))
                assert not batch & seen
                seen |= batch
                last = first + n - 1
        finally:
            meta.close()  # a "crash" after any allocation: the mark was persisted first
    assert len(seen) > 50
