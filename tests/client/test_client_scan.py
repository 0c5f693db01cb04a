"""scan across region boundaries in key order with a total limit, and batch_put per region."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.client import IndeterminateWrite
from multiraft.wire import BatchPut, NotLeader, Scan, StaleCommand
from tests.client.fakes import FakeCluster, populate
from tests.client.harness import Harness

KEYS = [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"]


def split_cluster() -> FakeCluster:
    """Regions [, f) [f, m) [m, t) [t, ) holding the keys a..z."""
    cluster = FakeCluster()
    for k in (b"f", b"m", b"t"):
        cluster.split(k)
    populate(cluster, KEYS)
    return cluster


def scans(h: Harness) -> list[tuple[bytes, bytes, int]]:
    return [
        (req.op.start_key, req.op.end_key, req.op.limit)
        for _, req in h.cluster.requests
        if isinstance(req.op, Scan)
    ]


async def test_scan_everything_in_key_order(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(split_cluster())
    async with h.client() as c:
        pairs = await c.scan()
    assert pairs == [(k, b"v-" + k) for k in KEYS]
    # One request per region, each clamped to its region's range.
    assert scans(h) == [(b"", b"f", 512), (b"f", b"m", 512), (b"m", b"t", 512), (b"t", b"", 512)]


async def test_scan_limit_stops_early_across_regions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(split_cluster())
    async with h.client() as c:
        assert [k for k, _ in await c.scan(b"c", b"", 7)] == KEYS[2:9]
        h.cluster.requests.clear()
        # A limit met exactly at a region's end: no request to the next region.
        assert [k for k, _ in await c.scan(b"", b"", 5)] == KEYS[:5]
        assert len(scans(h)) == 1
        assert await c.scan(b"a", b"z", 0) == []


async def test_scan_bounded_range(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(split_cluster())
    async with h.client() as c:
        assert [k for k, _ in await c.scan(b"d", b"o")] == KEYS[3:14]
        # The last request asks only up to the scan's end, not the region's.
        assert scans(h)[-1] == (b"m", b"o", 512)
        h.cluster.requests.clear()
        assert [k for k, _ in await c.scan(b"g", b"h")] == [b"g"]
        assert await c.scan(b"x", b"c") == []  # end before start
        assert await c.scan(b"q", b"q") == []
        assert await c.scan(b"zz") == []
    with pytest.raises(ValueError):
        async with h.client() as c:
            await c.scan(b"", b"", -1)


async def test_scan_pages_within_a_region(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(split_cluster())
    async with h.client(scan_page_size=3) as c:
        assert [k for k, _ in await c.scan()] == KEYS
        # Regions of 5, 7, 7 and 7 keys: pages of 3+2, then 3+3+1 three times.
        assert len(scans(h)) == 11
        assert scans(h)[:3] == [(b"", b"f", 3), (b"c\x00", b"f", 3), (b"f", b"m", 3)]
        h.cluster.requests.clear()
        assert [k for k, _ in await c.scan(b"b", b"", 4)] == KEYS[1:5]
        assert scans(h) == [(b"b", b"f", 3), (b"d\x00", b"f", 1)]


async def test_scan_with_a_stale_cache_splits_as_it_goes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(split_cluster())
    async with h.client() as c:
        await c.scan()  # the cache now holds the four regions
        h.cluster.split(b"h")
        h.cluster.split(b"p")
        h.cluster.split(b"w")
        pairs = await c.scan(b"b", b"", 100)
    assert [k for k, _ in pairs] == KEYS[1:]
    assert len(c.region_cache.routes()) == 7


async def test_scan_retries_a_region_read(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(split_cluster())
    async with h.client() as c:
        h.cluster.inject(StaleCommand(), op=Scan, store=1, times=1)
        assert len(await c.scan()) == 26


async def test_batch_put_one_request_per_region(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(split_cluster())
    h.cluster.data.clear()
    pairs = [(k, b"x") for k in reversed(KEYS)] + [(b"a", b"last wins")]
    async with h.client() as c:
        await c.batch_put(pairs)
        await c.batch_put([])  # nothing to do
    assert h.cluster.data == {**{k: b"x" for k in KEYS}, b"a": b"last wins"}
    batches = [req.op for _, req in h.cluster.requests if isinstance(req.op, BatchPut)]
    assert len(batches) == 4
    assert sorted(len(b.pairs) for b in batches) == [5, 7, 7, 7]


async def test_batch_put_with_a_stale_cache(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    async with h.client() as c:
        await c.put(b"a", b"0")  # cache: one region
        h.cluster.split(b"j")
        h.cluster.split(b"r")
        await c.batch_put([(k, b"y") for k in KEYS])
    assert h.cluster.data == {k: b"y" for k in KEYS}


async def test_batch_put_partly_written_is_indeterminate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(split_cluster())
    h.cluster.data.clear()
    async with h.client() as c:
        await c.scan()  # warm the cache
        last = h.cluster.region_for(b"z").id
        h.cluster.inject(StaleCommand(), op=BatchPut, region=last)
        with pytest.raises(IndeterminateWrite) as info:
            await c.batch_put([(k, b"z") for k in KEYS])
        assert not info.value.definite
    assert b"a" in h.cluster.data and b"z" not in h.cluster.data  # the others were written


async def test_each_region_of_a_scan_gets_its_own_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every region refuses the first attempt with no leader hint (as after its leader's
    store was drained): retries restart per region, so 26 regions fit a 3 s deadline that
    one shared, growing backoff (up to 0.5 s a wait) would blow."""
    cluster = FakeCluster()
    for k in KEYS[1:]:
        cluster.split(k)
    populate(cluster, KEYS)
    h = Harness(cluster)
    async with h.client() as c:
        assert len(await c.scan()) == 26  # warm the cache: every leader on store 1
        for rid in cluster.regions:
            cluster.inject(NotLeader(rid, None), store=1, region=rid)
        cluster.set_all_leaders(2)
        with trio.fail_after(3):
            pairs = await c.scan(timeout=3)
    assert pairs == [(k, b"v-" + k) for k in KEYS]
