"""Split check: measure a region's data on disk and find where to split it (multiraft-design §5).

Theory of operation
-------------------
LMDB keeps no range properties (TiKV reads its approximate sizes from SST
properties), so the store keeps an *approximate* size and key count per
replica (``Replica.approx_size`` / ``approx_keys``, raised by apply, allowed to
drift) and corrects them by scanning: :func:`scan_region` walks the region's
range of the ``data`` tree once and returns the exact size (``len(key) +
len(value)`` per entry), the key count, the split keys of the size/keys policy
and, on request, the middle key.

A scan is synchronous and meant for a worker thread
(``trio.to_thread.run_sync``). Its cost and footprint are bounded:

* **One consistent read** across bounded steps (:meth:`Engine.long_read`):
  each step reads ``step_keys`` keys holding the engine's read gate, and
  releases it between steps, so a map resize never waits for a whole scan. A
  resize invalidates the transaction; the scan then starts over (a few times,
  then :class:`~multiraft.storage.engine.ReadInvalidated` is raised).
* **Memory O(batch_split_limit + buckets), not O(keys).** The whole range is
  always walked so that the size and key count are exact, but once
  ``batch_split_limit`` split keys are found the rest is only counted. The
  split keys are cut while streaming, by the rules of
  :meth:`regions.split.SplitPolicy.scan_split_keys` (a piece ends when it
  reaches ``split_size_bytes`` or ``split_keys``; never at the start key;
  the last key is dropped if the tail merged back stays under both maximums).
  That method needs every pair in a list, so the rules are mirrored here and
  ``tests/store/test_split_check.py`` checks, property-based, that both give
  the same keys.
* The **middle key** (``half=True``, for a manual split without a key) is
  :meth:`SplitPolicy.choose_split_key` over *buckets* (TiKV ``half.rs``): runs
  of consecutive keys, each weighed by its size and keyed by its first key. A
  region of at most ``2 * MAX_BUCKETS`` keys has one key per bucket, so the
  choice is exact; beyond that, adjacent buckets merge pairwise whenever there
  are ``2 * MAX_BUCKETS`` of them, and the key is exact to one bucket (at most
  1/1024 of the keys).

:class:`SplitChecker` is the store's trio task. Every ``interval`` seconds it
visits the initialized leader replicas that are *due*: never measured since
this checker started (a restart forgets nothing that matters: the first scan
measures), or grown by at least ``policy.check_diff_bytes`` since the last
check (``size_checked``, lowered to the estimate when a split shared the
estimate out), or over the policy's thresholds and grown since. It
scans them one at a time in a worker thread, resets ``approx_size`` /
``approx_keys`` / ``size_checked`` from the scan (plus what apply added
meanwhile), and, if :meth:`SplitPolicy.should_split` and there are split keys,
starts ``request_split(replica, keys)`` in its own task. A region with a split
request in flight is not scanned again until the request returns; after it
returns the region counts as unmeasured, so its next check measures what the
split left. A scan whose region changed epoch meanwhile is thrown away.

Replicas are read, never driven: between two awaits, on the trio thread, like
every other reader of the router.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import lmdb
import trio

from multiraft.metrics.raft import RaftMetrics
from multiraft.storage.engine import Engine, EngineError, ReadInvalidated
from multiraft.store.replica import Replica
from multiraft.store.router import Router
from regions.region import Region
from regions.split import SplitPolicy

__all__ = [
    "MAX_BUCKETS",
    "RegionScan",
    "RequestSplit",
    "SplitChecker",
    "SplitCheckerStatistics",
    "middle_key",
    "scan_region",
]

log = logging.getLogger(__name__)

#: A half-split scan keeps between this many and twice this many buckets (TiKV: 1024).
MAX_BUCKETS = 1024
#: Keys read per step of a scan's long read.
DEFAULT_STEP_KEYS = 4096
#: How often a scan starts over after a map resize before giving up.
MAX_RESTARTS = 3

#: ``request_split(replica, split_keys)``: ask placement for ids and propose a BatchSplit.
RequestSplit = Callable[[Replica, list[bytes]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RegionScan:
    """What one scan of a region's data found (one consistent read)."""

    #: Sum of ``len(key) + len(value)`` over the region's keys.
    size: int
    keys: int
    #: The size/keys policy's split keys (at most ``batch_split_limit``), in order.
    split_keys: list[bytes]
    #: The middle key by size (only with ``half=True``; None for fewer than two keys).
    half_key: bytes | None


class _Splitter:
    """SplitPolicy.scan_split_keys, streaming: O(batch_split_limit) memory."""

    __slots__ = ("keys", "piece_keys", "piece_size", "policy", "prev_keys", "prev_size", "start")

    def __init__(self, policy: SplitPolicy, start_key: bytes) -> None:
        self.policy = policy
        self.start = start_key
        self.keys: list[bytes] = []
        self.piece_size = self.piece_keys = 0
        self.prev_size = self.prev_keys = 0

    def add(self, key: bytes, size: int) -> None:
        p = self.policy
        if (
            (self.piece_size >= p.split_size_bytes or self.piece_keys >= p.split_keys)
            and key > self.start
            and len(self.keys) < p.batch_split_limit
        ):
            self.keys.append(key)
            self.prev_size, self.prev_keys = self.piece_size, self.piece_keys
            self.piece_size = self.piece_keys = 0
        self.piece_size += size
        self.piece_keys += 1

    def result(self) -> list[bytes]:
        p = self.policy
        out = list(self.keys)
        if (
            out
            and self.prev_size + self.piece_size < p.max_size_bytes
            and self.prev_keys + self.piece_keys < p.max_keys
        ):
            out.pop()
        return out


class _Buckets:
    """Runs of consecutive keys weighed by size: at most ``2 * MAX_BUCKETS`` of them, all
    but the last holding ``per_bucket`` keys; when full, adjacent ones merge pairwise."""

    __slots__ = ("first_keys", "open_keys", "per_bucket", "sizes")

    def __init__(self) -> None:
        self.first_keys: list[bytes] = []
        self.sizes: list[int] = []
        self.per_bucket = 1
        self.open_keys = 0  # keys in the last bucket

    def add(self, key: bytes, size: int) -> None:
        if self.open_keys == 0 or self.open_keys >= self.per_bucket:
            if len(self.sizes) >= 2 * MAX_BUCKETS:
                # Every bucket is full and their count is even: halve it, doubling their keys.
                s = self.sizes
                self.sizes = [s[i] + s[i + 1] for i in range(0, len(s), 2)]
                self.first_keys = self.first_keys[::2]
                self.per_bucket *= 2
            self.first_keys.append(key)
            self.sizes.append(0)
            self.open_keys = 0
        self.sizes[-1] += size
        self.open_keys += 1

    def pairs(self) -> list[tuple[bytes, int]]:
        return list(zip(self.first_keys, self.sizes, strict=True))


def scan_region(
    engine: Engine,
    region: Region,
    policy: SplitPolicy,
    *,
    half: bool = False,
    step_keys: int = DEFAULT_STEP_KEYS,
) -> RegionScan:
    """Measure ``region``'s data and find its split keys (blocking: run it in a worker thread).

    Raises:
        ReadInvalidated: the map was resized during every one of :data:`MAX_RESTARTS` tries.
    """
    for attempt in range(MAX_RESTARTS + 1):
        try:
            return _scan_once(engine, region, policy, half, max(1, step_keys))
        except ReadInvalidated:
            if attempt == MAX_RESTARTS:
                raise
            log.debug("region %d: split-check scan restarts after a map resize", region.id)
    raise AssertionError("unreachable")


def _scan_once(
    engine: Engine, region: Region, policy: SplitPolicy, half: bool, step_keys: int
) -> RegionScan:
    start = region.start_key
    end = region.end_key or None
    splitter = _Splitter(policy, start)
    buckets = _Buckets() if half else None
    size = nkeys = 0
    data = engine.dbs.data
    resume: bytes | None = None  # the last key counted; continue after it
    with engine.long_read() as lr:
        done = False
        while not done:
            done = True
            with lr.step() as txn:
                cur = txn.cursor(data)
                seek = resume if resume is not None else start
                found = cur.set_range(seek) if seek else cur.first()
                if found and resume is not None and cur.key() == resume:
                    found = cur.next()
                if not found:
                    break
                for n, (k, v) in enumerate(cur.iternext(), 1):
                    if end is not None and k >= end:
                        break
                    sz = len(k) + len(v)
                    size += sz
                    nkeys += 1
                    splitter.add(k, sz)
                    if buckets is not None:
                        buckets.add(k, sz)
                    if n >= step_keys:
                        resume = k
                        done = False
                        break
    half_key = None
    if buckets is not None:
        half_key = policy.choose_split_key(buckets.pairs(), start)
    return RegionScan(size, nkeys, splitter.result(), half_key)


def middle_key(engine: Engine, region: Region, policy: SplitPolicy | None = None) -> bytes | None:
    """The key that halves ``region``'s data by size (a manual split without a key); None if
    the region holds fewer than two keys. Blocking: run it in a worker thread."""
    return scan_region(engine, region, policy or SplitPolicy(), half=True).half_key


@dataclass(frozen=True, slots=True)
class SplitCheckerStatistics:
    """Totals since the checker was built."""

    scans: int
    split_requests: int
    failures: int
    in_flight: int
    scanned_bytes: int


class SplitChecker:
    """The store's periodic split check (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        engine: Engine,
        policy: SplitPolicy,
        request_split: RequestSplit,
        *,
        interval: float = 10.0,
        metrics: RaftMetrics | None = None,
        step_keys: int = DEFAULT_STEP_KEYS,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"split check interval must be positive, got {interval}")
        self.router = router
        self.engine = engine
        self.policy = policy
        self.request_split = request_split
        self.interval = interval
        self.metrics = metrics
        self.step_keys = step_keys
        #: Regions with a split request in flight: not checked until it returns.
        self.splitting: set[int] = set()
        #: Regions scanned since this checker started (the others are due at once).
        self._measured: set[int] = set()
        # One scan at a time, whatever else uses worker threads.
        self._limiter = trio.CapacityLimiter(1)
        self._scans = 0
        self._requests = 0
        self._failures = 0
        self._scanned_bytes = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check every ``interval`` seconds until cancelled; split requests run as child tasks."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await trio.sleep(self.interval)
                await self.check_once(nursery)

    def is_due(self, r: Replica) -> bool:
        """Whether ``r`` should be scanned now (leader, initialized, no split in flight, and
        unmeasured, grown by the policy's diff, or over the thresholds and grown)."""
        if r.destroyed or not r.initialized or not r.is_leader():
            return False
        if r.region_id in self.splitting:
            return False
        if r.region_id not in self._measured:
            return True
        grown = r.approx_size - r.size_checked
        if grown >= self.policy.check_diff_bytes:
            return True
        return grown > 0 and self.policy.should_split(r.approx_size, r.approx_keys)

    async def check_once(self, nursery: trio.Nursery) -> int:
        """Scan every due replica, one at a time; start split requests in ``nursery``.

        Returns:
            The number of scans run.
        """
        for r in self.router:
            if r.approx_size < r.size_checked:
                # A split shared the estimate out: growth counts from what is left.
                r.size_checked = r.approx_size
        due = [r for r in self.router if self.is_due(r)]
        self._forget_gone()
        n = 0
        for r in due:
            if self.router.get(r.region_id) is not r or not self.is_due(r):
                continue  # changed while earlier scans ran
            keys = await self._check(r)
            n += 1
            if keys:
                self.splitting.add(r.region_id)
                nursery.start_soon(self._split, r, keys)
        return n

    def _forget_gone(self) -> None:
        live = self.router.replicas
        self._measured = {rid for rid in self._measured if rid in live}

    async def _check(self, r: Replica) -> list[bytes]:
        """Scan ``r``, reset its approximate size; the split keys to request (maybe none)."""
        region = r.region_copy()
        size0, keys0 = r.approx_size, r.approx_keys
        t0 = trio.current_time()
        try:
            scan = await trio.to_thread.run_sync(
                lambda: scan_region(self.engine, region, self.policy, step_keys=self.step_keys),
                limiter=self._limiter,
            )
        except (EngineError, lmdb.Error) as exc:
            self._failures += 1
            self._count("failed")
            log.warning("region %d: split check failed: %s", r.region_id, exc)
            return []
        self._scans += 1
        self._scanned_bytes += scan.size
        if self.metrics is not None:
            self.metrics.split_check_duration.observe(trio.current_time() - t0)
        if self.router.get(r.region_id) is not r or r.destroyed or r.region.epoch != region.epoch:
            self._count("stale")  # split, merged or replaced meanwhile: the scan is not its
            return []
        # Keep what apply added while the scan ran (the scan may or may not have seen it).
        r.approx_size = max(0, scan.size + r.approx_size - size0)
        r.approx_keys = max(0, scan.keys + r.approx_keys - keys0)
        r.size_checked = r.approx_size
        self._measured.add(r.region_id)
        if not scan.split_keys or not self.policy.should_split(scan.size, scan.keys):
            self._count("no_split")
            return []
        if not r.is_leader():
            self._count("no_split")
            return []
        self._count("split")
        log.info("region %d: %d bytes, %d keys: asking to split at %d keys", r.region_id,
                 scan.size, scan.keys, len(scan.split_keys))  # fmt: skip
        return scan.split_keys

    async def _split(self, r: Replica, keys: list[bytes]) -> None:
        self._requests += 1
        try:
            await self.request_split(r, keys)
        except Exception as exc:  # a failed request must not end the checker
            self._failures += 1
            log.warning("region %d: split request failed: %s", r.region_id, exc)
        finally:
            self.splitting.discard(r.region_id)
            # Whatever happened, the next check measures the region again.
            self._measured.discard(r.region_id)

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.split_checks.labels(result).inc()

    def statistics(self) -> SplitCheckerStatistics:
        return SplitCheckerStatistics(self._scans, self._requests, self._failures,
                                      len(self.splitting), self._scanned_bytes)  # fmt: skip
