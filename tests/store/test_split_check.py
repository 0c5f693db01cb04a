"""Split check: the scan measures exactly the region's range and finds the policy's split keys
and middle key with bounded memory; the checker scans due leaders only, resets their estimates,
requests splits once per region at a time, and drops scans of regions that changed meanwhile."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from multiraft.metrics import RaftMetrics
from multiraft.raft import ConfState, SnapshotMetadata
from multiraft.storage import Engine, RaftStorage, WriteBatch
from multiraft.storage.engine import LongRead, ReadInvalidated
from multiraft.store import split_check
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.store.split_check import (
    MAX_BUCKETS,
    MAX_RESTARTS,
    SplitChecker,
    middle_key,
    scan_region,
)
from regions import PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch
from regions.split import SplitPolicy

SMALL = SplitPolicy(
    max_size_bytes=3000, max_keys=60, split_size_bytes=2000, split_keys=40, batch_split_limit=3
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def load(engine: Engine, pairs: list[tuple[bytes, bytes]]) -> None:
    def put(txn: object) -> None:
        for k, v in pairs:
            txn.put(k, v, db=engine.dbs.data)  # type: ignore[attr-defined]

    engine.write(put)


def sized(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, int]]:
    return [(k, len(k) + len(v)) for k, v in pairs]


def in_range(pairs: list[tuple[bytes, bytes]], region: Region) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in pairs if region.contains(k)]


def keyed(n: int, value_size: int = 50, prefix: bytes = b"k") -> list[tuple[bytes, bytes]]:
    return [(prefix + b"%05d" % i, b"v" * value_size) for i in range(n)]


# -- scan_region ----------------------------------------------------------------------------


def test_scan_measures_exactly_the_region_range(engine: Engine) -> None:
    pairs = [(b"a", b"1"), (b"b", b"22"), (b"c", b"333"), (b"m", b"4444"), (b"z", b"5")]
    load(engine, pairs)
    got = scan_region(engine, Region(1, b"b", b"m", RegionEpoch(), []), SMALL)
    assert (got.size, got.keys) == (2 + 1 + 3 + 1, 2)
    unbounded = scan_region(engine, Region(1, b"c", b"", RegionEpoch(), []), SMALL)
    assert (unbounded.size, unbounded.keys) == (4 + 5 + 2, 3)
    everything = scan_region(engine, Region(1, b"", b"", RegionEpoch(), []), SMALL)
    assert everything.keys == 5 and everything.half_key is None  # no half unless asked


def test_an_empty_range_measures_zero(engine: Engine) -> None:
    load(engine, [(b"a", b"1"), (b"z", b"2")])
    got = scan_region(engine, Region(1, b"b", b"y", RegionEpoch(), []), SMALL, half=True)
    assert (got.size, got.keys, got.split_keys, got.half_key) == (0, 0, [], None)


pair_lists = st.dictionaries(
    st.binary(min_size=1, max_size=4), st.integers(min_value=0, max_value=400), max_size=120
).map(lambda d: sorted((k, b"x" * n) for k, n in d.items()))
policies = st.builds(
    lambda split, extra, skeys, kextra, limit: SplitPolicy(
        max_size_bytes=split + extra, max_keys=skeys + kextra, split_size_bytes=split,
        split_keys=skeys, batch_split_limit=limit,
    ),
    st.integers(1, 3000), st.integers(0, 3000), st.integers(1, 40), st.integers(0, 40),
    st.integers(1, 5),
)  # fmt: skip
bounds = st.tuples(st.binary(max_size=2), st.binary(max_size=2)).filter(
    lambda b: not b[1] or b[0] < b[1]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair_lists, policies, bounds, st.integers(1, 7))
def test_streaming_split_keys_equal_the_policy(
    pairs: list[tuple[bytes, bytes]],
    policy: SplitPolicy,
    bound: tuple[bytes, bytes],
    step: int,
) -> None:
    """The scan mirrors SplitPolicy.scan_split_keys without holding every pair, across any
    step size of its long read, and its half key is choose_split_key's (exact when small)."""
    region = Region(1, bound[0], bound[1], RegionEpoch(), [])
    with tempfile.TemporaryDirectory() as d, Engine.open(d, sync=False) as engine:
        if pairs:
            load(engine, pairs)
        got = scan_region(engine, region, policy, half=True, step_keys=step)
    mine = sized(in_range(pairs, region))
    assert got.split_keys == policy.scan_split_keys(mine, region.start_key)
    assert got.half_key == policy.choose_split_key(mine, region.start_key)
    assert (got.size, got.keys) == (sum(s for _, s in mine), len(mine))


def test_half_key_of_a_large_region_is_exact_to_one_bucket(engine: Engine) -> None:
    n = 5 * MAX_BUCKETS + 7  # forces two rounds of bucket merging
    pairs = keyed(n, value_size=10)
    # Heavier values in the first quarter pull the middle by size to the left of the count's.
    pairs = [(k, v * 5) if i < n // 4 else (k, v) for i, (k, v) in enumerate(pairs)]
    load(engine, pairs)
    region = Region(1, b"", b"", RegionEpoch(), [])
    got = scan_region(engine, region, SMALL, half=True)
    exact = SMALL.choose_split_key(sized(pairs))
    assert got.half_key is not None and exact is not None
    keys = [k for k, _ in pairs]
    per_bucket = 4  # 2*MAX_BUCKETS keys per 1, then 2, then 4 keys per bucket
    assert abs(keys.index(got.half_key) - keys.index(exact)) <= per_bucket
    assert keys.index(got.half_key) < n // 2  # by size, not by count


def test_middle_key(engine: Engine) -> None:
    region = Region(1, b"", b"", RegionEpoch(), [])
    assert middle_key(engine, region) is None
    load(engine, [(b"a", b"1")])
    assert middle_key(engine, region) is None  # one key cannot be split
    load(engine, [(b"b", b"2")])
    assert middle_key(engine, region) == b"b"
    # Never the region's start key.
    assert middle_key(engine, Region(1, b"a", b"", RegionEpoch(), [])) == b"b"


class _ResizedRead:
    """A long read whose second step finds the map resized (as LongRead.step reports it)."""

    def __init__(self, lr: LongRead) -> None:
        self._lr = lr
        self._steps = 0

    def step(self) -> AbstractContextManager[object]:
        self._steps += 1
        if self._steps == 2:
            raise ReadInvalidated("the map was resized during a long read; start again")
        return self._lr.step()

    def __enter__(self) -> _ResizedRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._lr.close()


class _ResizingEngine:
    """An Engine whose first ``times`` long reads are invalidated by a map resize."""

    def __init__(self, engine: Engine, times: int) -> None:
        self._engine = engine
        self.dbs = engine.dbs
        self.times = times
        self.reads = 0

    def long_read(self) -> LongRead | _ResizedRead:
        self.reads += 1
        lr = self._engine.long_read()
        if self.times > 0:
            self.times -= 1
            return _ResizedRead(lr)
        return lr


def test_a_resize_during_a_scan_starts_it_over(engine: Engine) -> None:
    pairs = keyed(30)
    load(engine, pairs)
    region = Region(1, b"", b"", RegionEpoch(), [])
    flaky = _ResizingEngine(engine, times=2)
    got = scan_region(flaky, region, SMALL, step_keys=4)  # type: ignore[arg-type]
    assert got.keys == 30 and flaky.reads == 3
    hopeless = _ResizingEngine(engine, times=MAX_RESTARTS + 1)
    with pytest.raises(ReadInvalidated):
        scan_region(hopeless, region, SMALL, step_keys=4)  # type: ignore[arg-type]


# -- SplitChecker ---------------------------------------------------------------------------


def make_replica(engine: Engine, region: Region, *, lead: bool = True) -> Replica:
    storage = RaftStorage(engine, region.id)
    b = WriteBatch()
    cs = ConfState(voters=[p.id for p in region.peers])
    storage.apply_snapshot_meta(SnapshotMetadata(cs, 5, 5), b)
    b.put_region_state(region.id, RegionLocalState(PeerState.Normal, region))
    b.commit(engine)
    r = Replica(region.peers[0], region, storage, RaftSettings())
    if lead:
        r.raw_node.campaign()  # a single voter wins at once
        assert r.is_leader()
    return r


def region_of(rid: int, start: bytes, end: bytes) -> Region:
    return Region(rid, start, end, RegionEpoch(1, 1), [Peer(rid * 10, 1)])


class Requests:
    """A request_split that records its calls and finishes when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[tuple[int, list[bytes]]] = []
        self.release = trio.Event()
        self.fail = fail

    async def __call__(self, r: Replica, keys: list[bytes]) -> None:
        self.calls.append((r.region_id, keys))
        await self.release.wait()
        if self.fail:
            raise RuntimeError("placement is down")


def checker(
    engine: Engine, router: Router, requests: Requests, policy: SplitPolicy = SMALL
) -> tuple[SplitChecker, RaftMetrics]:
    metrics = RaftMetrics(CollectorRegistry())
    return SplitChecker(router, engine, policy, requests, interval=1.0, metrics=metrics), metrics


def count(metrics: RaftMetrics, result: str) -> float:
    return metrics.split_checks.labels(result)._value.get()


async def test_unmeasured_leaders_are_scanned_and_their_estimates_reset(engine: Engine) -> None:
    pairs = keyed(20, value_size=20)  # 520 bytes: under SMALL's thresholds
    load(engine, pairs)
    router = Router()
    leader = make_replica(engine, region_of(1, b"", b"k00010"))
    follower = make_replica(engine, region_of(2, b"k00010", b""), lead=False)
    router.add(leader)
    router.add(follower)
    leader.approx_size, leader.approx_keys = 99_999, 7  # drifted
    requests = Requests()
    c, metrics = checker(engine, router, requests)
    async with trio.open_nursery() as nursery:
        assert await c.check_once(nursery) == 1
    assert (leader.approx_size, leader.approx_keys) == (260, 10)
    assert leader.size_checked == 260
    assert (follower.approx_size, follower.size_checked) == (0, 0)  # followers are not checked
    assert requests.calls == [] and count(metrics, "no_split") == 1
    assert metrics.split_check_duration._sum.get() >= 0  # observed once
    # Measured and not grown: not due again.
    async with trio.open_nursery() as nursery:
        assert await c.check_once(nursery) == 0


async def test_a_region_is_due_again_once_it_grew_by_the_diff(engine: Engine) -> None:
    load(engine, keyed(10))
    router = Router()
    r = make_replica(engine, region_of(1, b"", b""))
    router.add(r)
    c, _ = checker(engine, router, Requests())
    async with trio.open_nursery() as nursery:
        await c.check_once(nursery)
        r.approx_size += SMALL.check_diff_bytes - 1
        assert not c.is_due(r)
        r.approx_size += 1
        assert c.is_due(r)
        assert await c.check_once(nursery) == 1
    # The scan found the real size: the writes it was told about never reached the disk.
    assert r.approx_size == r.size_checked == 10 * (6 + 50)
    # A split elsewhere shares the estimate out: growth then counts from the share.
    r.approx_size //= 2
    async with trio.open_nursery() as nursery:
        assert await c.check_once(nursery) == 0
        r.approx_size += SMALL.check_diff_bytes
        assert await c.check_once(nursery) == 1


async def test_over_the_threshold_requests_a_split_once_at_a_time(engine: Engine) -> None:
    pairs = keyed(100, value_size=50)  # 5600 bytes, 100 keys: over SMALL's maximums
    load(engine, pairs)
    router = Router()
    r = make_replica(engine, region_of(1, b"", b""))
    router.add(r)
    requests = Requests()
    c, metrics = checker(engine, router, requests)
    async with trio.open_nursery() as nursery:
        assert await c.check_once(nursery) == 1
        await trio.testing.wait_all_tasks_blocked()
        expected = SMALL.scan_split_keys(sized(pairs))
        assert expected and requests.calls == [(1, expected)]
        assert c.splitting == {1} and count(metrics, "split") == 1
        # In flight: not scanned again, however much it grows.
        r.approx_size += 10 * SMALL.check_diff_bytes
        assert await c.check_once(nursery) == 0
        requests.release.set()
    assert c.splitting == set()
    # After the request the region is unmeasured: the next check scans it again.
    assert c.is_due(r)
    assert c.statistics().split_requests == 1


async def test_a_failed_split_request_does_not_stop_the_checker(engine: Engine) -> None:
    load(engine, keyed(100))
    router = Router()
    router.add(make_replica(engine, region_of(1, b"", b"")))
    requests = Requests(fail=True)
    requests.release.set()
    c, _ = checker(engine, router, requests)
    async with trio.open_nursery() as nursery:
        await c.check_once(nursery)
    assert len(requests.calls) == 1 and c.splitting == set()
    assert c.statistics().failures == 1
    async with trio.open_nursery() as nursery:
        assert await c.check_once(nursery) == 1  # checked (and requested) again


async def test_a_region_that_changed_during_its_scan_is_left_alone(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(engine, keyed(100))
    router = Router()
    r = make_replica(engine, region_of(1, b"", b""))
    router.add(r)
    real = split_check.scan_region

    def scan_then_split(*args: object, **kw: object) -> split_check.RegionScan:
        got = real(*args, **kw)  # type: ignore[arg-type]
        # The region split while the worker thread scanned it (the loop was idle here).
        r.region = Region(1, b"k00050", b"", RegionEpoch(1, 2), r.region.peers)
        return got

    monkeypatch.setattr(split_check, "scan_region", scan_then_split)
    requests = Requests()
    c, metrics = checker(engine, router, requests)
    async with trio.open_nursery() as nursery:
        await c.check_once(nursery)
    assert requests.calls == [] and count(metrics, "stale") == 1
    assert r.approx_size == 0  # the old range's size is not this region's
    assert c.is_due(r)  # still unmeasured


async def test_writes_applied_during_the_scan_are_kept(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(engine, keyed(10))
    router = Router()
    r = make_replica(engine, region_of(1, b"", b""))
    router.add(r)
    real = split_check.scan_region

    def scan_during_writes(*args: object, **kw: object) -> split_check.RegionScan:
        got = real(*args, **kw)  # type: ignore[arg-type]
        r.approx_size += 100  # apply ran while the thread scanned
        r.approx_keys += 2
        return got

    monkeypatch.setattr(split_check, "scan_region", scan_during_writes)
    c, _ = checker(engine, router, Requests())
    async with trio.open_nursery() as nursery:
        await c.check_once(nursery)
    assert (r.approx_size, r.approx_keys) == (10 * 56 + 100, 12)


async def test_run_checks_every_interval(engine: Engine) -> None:
    # Real time: the scan runs in a worker thread, which an autojump clock would race past.
    load(engine, keyed(10))
    router = Router()
    r = make_replica(engine, region_of(1, b"", b""))
    router.add(r)
    metrics = RaftMetrics(CollectorRegistry())
    c = SplitChecker(router, engine, SMALL, Requests(), interval=0.01, metrics=metrics)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        with trio.fail_after(10):
            while c.statistics().scans < 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert r.approx_keys == 10 and trio.current_time() - t0 >= c.interval
        nursery.cancel_scope.cancel()


def test_bad_intervals_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="positive"):
        SplitChecker(Router(), engine, SMALL, Requests(), interval=0)
