"""Splits through the store: BatchSplit proposed with ids from placement, applied identically on
every replica, new regions created in the same batch and elected, first messages for a region
that does not exist yet stashed and replayed, and everything durable across a restart."""

from __future__ import annotations

import itertools
from pathlib import Path

import trio
import trio.testing

from multiraft.placement.errors import PlacementUnavailable
from multiraft.store import Store
from multiraft.store.step_exec import SplitOutcome
from multiraft.wire.messages import (
    EpochNotMatch,
    Get,
    GetResult,
    Internal,
    KeyNotInRegion,
    NotLeader,
    Put,
    ReadMode,
    Scan,
    ScanResult,
    WriteOk,
)
from regions.region import Region, RegionEpoch
from tests.store.harness import Cluster, wait_until


def regions_on(s: Store) -> list[Region]:
    return sorted((r.region for r in s.router if r.initialized), key=lambda g: g.start_key)


def same_everywhere(c: Cluster, count: int) -> bool:
    tables = [
        [(g.id, g.start_key, g.end_key, g.epoch, g.peers) for g in regions_on(s)]
        for s in c.net.stores.values()
    ]
    return len(tables[0]) == count and all(t == tables[0] for t in tables)


async def split(c: Cluster, keys: list[bytes], region_id: int = 1) -> SplitOutcome:
    leader = await c.wait_leader(region_id)
    r = leader.router.get(region_id)
    assert r is not None
    got = await leader.steps.split(region_id, r.region.epoch, keys)
    assert isinstance(got, SplitOutcome), got
    return got


async def test_split_creates_identical_regions_on_every_store(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        for k in (b"a", b"k", b"p", b"z"):
            assert (await c.kv(leader, Put(k, k.upper()))).result == WriteOk()
        got = await split(c, [b"m"])
        left, right = got.regions
        # right_derive: the parent keeps the right range; both carry the new epoch.
        assert (left.start_key, left.end_key, right.id) == (b"", b"m", 1)
        assert (right.start_key, right.end_key) == (b"m", b"")
        assert left.epoch == right.epoch == RegionEpoch(1, 2)
        assert [p.store_id for p in left.peers] == [p.store_id for p in right.peers]
        assert not {p.id for p in left.peers} & {p.id for p in right.peers}
        await wait_until(lambda: same_everywhere(c, 2))
        # The new region elects a leader and serves its keys, old data included.
        new_leader = await c.wait_leader(left.id)
        got_a = await c.kv(new_leader, Get(b"a"), region_id=left.id)
        assert got_a.result == GetResult(b"A")
        assert (await c.kv(new_leader, Put(b"b", b"B"), region_id=left.id)).result == WriteOk()
        # The parent serves only its new range now.
        p_leader = await c.wait_leader(1)
        assert (await c.kv(p_leader, Get(b"p"))).result == GetResult(b"P")
        assert isinstance((await c.kv(p_leader, Put(b"c", b"C"))).result, KeyNotInRegion)
        scan = await c.kv(p_leader, Scan(b"m", b"", 10))
        assert scan.result == ScanResult([(b"p", b"P"), (b"z", b"Z")])
        nursery.cancel_scope.cancel()


async def test_a_request_with_the_pre_split_epoch_gets_epoch_not_match_with_siblings(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        await c.wait_leader()
        await split(c, [b"m"])
        leader = await c.wait_leader(1)
        got = (await c.kv(leader, Put(b"x", b"1"), epoch=RegionEpoch(1, 1))).result
        assert isinstance(got, EpochNotMatch)
        assert got.current_regions[0].epoch == RegionEpoch(1, 2)
        nursery.cancel_scope.cancel()


async def test_batch_split_with_several_keys_and_a_second_split_of_a_new_region(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        await c.wait_leader()
        got = await split(c, [b"t", b"d", b"k"])  # unsorted on purpose: the store sorts them
        assert [(g.start_key, g.end_key) for g in got.regions] == [
            (b"", b"d"), (b"d", b"k"), (b"k", b"t"), (b"t", b""),
        ]  # fmt: skip
        assert {g.epoch for g in got.regions} == {RegionEpoch(1, 4)}
        await wait_until(lambda: same_everywhere(c, 4))
        second = got.regions[1]
        again = await split(c, [b"g"], region_id=second.id)
        assert [(g.start_key, g.end_key) for g in again.regions] == [(b"d", b"g"), (b"g", b"k")]
        await wait_until(lambda: same_everywhere(c, 5))
        for g in regions_on(next(iter(c.net.stores.values()))):
            s = await c.wait_leader(g.id)
            key = g.start_key + b"0"
            assert (await c.kv(s, Put(key, b"v"), region_id=g.id)).result == WriteOk()
        nursery.cancel_scope.cancel()


async def test_bad_split_requests_are_refused_before_the_log(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        r = leader.router.get(1)
        assert r is not None
        last = r.raw_node.raft.raft_log.last_index()
        got = await leader.steps.split(1, r.region.epoch, [b""])  # the start key
        assert isinstance(got, Internal) and "start" in got.message
        stale = await leader.steps.split(1, RegionEpoch(1, 0), [b"m"])
        assert isinstance(stale, EpochNotMatch)
        follower = next(s for s in c.net.stores.values() if s is not leader)
        assert not isinstance(await follower.steps.split(1, r.region.epoch, [b"m"]), SplitOutcome)
        assert r.raw_node.raft.raft_log.last_index() == last  # nothing was proposed
        nursery.cancel_scope.cancel()


async def test_split_survives_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        assert (await c.kv(leader, Put(b"b", b"1"))).result == WriteOk()
        got = await split(c, [b"m"])
        await wait_until(lambda: same_everywhere(c, 2))
        before = [(g.id, g.start_key, g.epoch) for g in regions_on(c.store(2))]
        await c.stop_store(2)
        s2 = await c.start_store(2)
        assert [(g.id, g.start_key, g.epoch) for g in regions_on(s2)] == before
        left = got.regions[0]
        await wait_until(lambda: (r := s2.router.get(left.id)) is not None and r.applied_index > 0)
        got_b = await c.kv(s2, Get(b"b"), region_id=left.id, mode=ReadMode.Stale)
        assert got_b.result == GetResult(b"1")
        nursery.cancel_scope.cancel()


async def test_first_messages_for_a_region_not_split_here_yet_are_stashed_and_replayed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Store 3 is cut off while the others split: once healed, the new region's leader talks
    to store 3 before store 3 has applied the split. Those first messages overlap store 3's
    unsplit parent: they are kept, and replayed when the split creates the region there."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        if leader.store_id == 3:
            r = leader.router.get(1)
            assert r is not None
            r.raw_node.transfer_leader(r.region.peer_on_store(1).id)  # type: ignore[union-attr]
            leader.loop.dirty[1] = r
            await wait_until(lambda: c.leader(1) is not None and c.leader(1) is not leader)
        c.net.isolate(3)
        got = await split(c, [b"m"])
        left = got.regions[0]
        await c.wait_leader(left.id)
        s3 = c.store(3)
        assert s3.router.get(left.id) is None
        c.net.heal()
        await wait_until(lambda: (r := s3.router.get(left.id)) is not None and r.initialized)
        assert s3.loop.splits.replayed >= 1
        await wait_until(lambda: same_everywhere(c, 2))
        nursery.cancel_scope.cancel()


async def test_regions_split_automatically_when_they_grow(tmp_path: Path) -> None:
    """The split checker (real time: it scans in worker threads) measures growing regions
    and splits them; every key stays readable and the ranges tile the key space."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, region_split_size=16 * 1024, split_check_interval=0.2)
        await c.start()
        value = b"v" * 1000
        written = []
        with trio.fail_after(60):
            i = 0
            while len(regions_on(await c.wait_leader())) < 4:
                key = b"key%05d" % i
                s = await c.wait_leader()
                r = s.router.region_at(key)
                if r is None or not r.is_leader():
                    s2 = await c.wait_leader(r.region_id if r is not None else 1)
                    r = s2.router.region_at(key)
                    s = s2
                assert r is not None
                got = (await c.kv(s, Put(key, value), region_id=r.region_id)).result
                if got == WriteOk():
                    written.append(key)
                    i += 1
        await wait_until(lambda: same_everywhere(c, len(regions_on(c.store(1)))), seconds=30)
        table = regions_on(c.store(1))
        assert table[0].start_key == b"" and table[-1].end_key == b""
        assert all(a.end_key == b.start_key for a, b in itertools.pairwise(table))
        for key in written:  # routed afresh: the checker may still be splitting
            for _ in range(50):
                owner = c.store(1).router.region_at(key)
                assert owner is not None
                s = await c.wait_leader(owner.region_id)
                got = (await c.kv(s, Get(key), region_id=owner.region_id)).result
                if not isinstance(got, KeyNotInRegion | EpochNotMatch | NotLeader):
                    break
                await trio.sleep(0.05)
            assert got == GetResult(value)
        nursery.cancel_scope.cancel()


async def test_no_lease_read_while_the_leaders_own_split_is_unapplied(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """multiraft-design §11.8: once a split is committed, a new region elsewhere may serve part
    of the leader's range before the leader applies it; its lease must not answer meanwhile."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        m = leader.metrics
        assert m is not None
        assert (await c.kv(leader, Put(b"r", b"1"))).result == WriteOk()

        def reads(kind: str) -> float:
            return m.raft.reads.labels(kind)._value.get()  # type: ignore[no-any-return]

        assert (await c.kv(leader, Get(b"r"))).result == GetResult(b"1")  # starts a lease
        r = leader.router.get(1)
        assert r is not None
        base = {k: reads(k) for k in ("read_index", "lease")}
        r.split_index = r.applied_index + 1  # as if our split were committed, not applied
        assert (await c.kv(leader, Get(b"r"), mode=ReadMode.Lease)).result == GetResult(b"1")
        await wait_until(lambda: reads("read_index") == base["read_index"] + 1)
        assert reads("lease") == base["lease"]
        r.split_index = r.applied_index  # applied: the lease serves again
        assert (await c.kv(leader, Get(b"r"), mode=ReadMode.Lease)).result == GetResult(b"1")
        await wait_until(lambda: reads("lease") == base["lease"] + 1)
        nursery.cancel_scope.cancel()


async def test_a_split_while_placement_is_down_fails_and_the_store_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        r = leader.router.get(1)
        assert r is not None

        async def down(n: int = 1) -> object:
            raise PlacementUnavailable("placement at 127.0.0.1:1 is unreachable")

        c.placement.alloc_ids = down  # type: ignore[method-assign]
        got = await leader.steps.split(1, r.region.epoch, [b"m"])
        assert isinstance(got, Internal) and "split ids" in got.message
        assert r.region.epoch == RegionEpoch(1, 1)
        assert (await c.kv(leader, Put(b"after", b"1"))).result == WriteOk()
        nursery.cancel_scope.cancel()
