"""A recorded register workload: concurrent clients doing get/put/cas/delete on a few keys.

Each worker is one process of the history (:class:`~tests.support.history.HistoryRecorder`)
with its own :class:`~multiraft.client.Client` and its own seeded ``random.Random``, so the
sequence of operations each worker *chooses* is fixed by the seed (what the cluster answers,
and so the interleaving, is not). Outcomes are recorded as the client reports them:

* a value or success: ``ok``;
* a :class:`~multiraft.client.ClientError` with ``definite=True``: ``fail`` (the client
  guarantees the operation had no effect; every read error is definite);
* any other error (``definite=False``: a timeout or a lost answer after the request was
  sent), or anything unexpected: ``info`` (it may take effect later, or never).

Written values are unique (``w<worker>-<n>``), so the checker can tell every write apart.
A cas expects the value this worker last saw for the key (or absence), so that some
swaps succeed.

Keys rotate, as in Jepsen's register tests: ``key_count`` keys at a time, named
``<prefix>/<generation>/<i>``, and the generation advances after about ``ops_per_key``
operations per key, so that no key collects more operations than the checker handles
comfortably however long the test runs (reliability-anchors.md §0). With ``slot_major`` the
key is ``<prefix>/<i>/<generation>`` instead, so that each slot ``i`` keeps to one range of
the key space whatever the generation (a test that splits at ``<prefix>/2`` keeps slots
0 and 1 on one side).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

import trio

from multiraft.client import Client, ClientError
from tests.cluster.harness import Cluster, fail_after
from tests.support.history import HistoryRecorder, Op, Result
from tests.support.linearizability import check


@dataclass
class WorkloadStats:
    #: (kind, status) -> count, e.g. ("write", "ok").
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return sum(n for (_, status), n in self.counts.items() if status == "ok")

    def describe(self) -> str:
        return ", ".join(f"{k}/{s}={n}" for (k, s), n in sorted(self.counts.items()))


class Workload:
    """``workers`` concurrent clients on rotating keys until :meth:`stop` (see the module
    docstring)."""

    def __init__(
        self,
        placement: str,
        recorder: HistoryRecorder,
        *,
        prefix: bytes = b"reg",
        key_count: int = 5,
        ops_per_key: int = 200,
        workers: int = 4,
        seed: int = 0,
        op_timeout: float = 3.0,
        slot_major: bool = False,
    ) -> None:
        self.placement = placement
        self.recorder = recorder
        self.prefix = prefix
        self.key_count = key_count
        self.ops_per_key = ops_per_key
        #: Every key an operation was invoked on, in order of first use.
        self.keys: list[bytes] = []
        self._invoked = 0
        self.workers = workers
        self.seed = seed
        self.op_timeout = op_timeout
        self.slot_major = slot_major
        self.stats = WorkloadStats()
        self._stopping = False
        #: Set (and replaced) whenever an operation completes ok.
        self._progress = trio.Event()

    def stop(self) -> None:
        """Let each worker finish its current operation, then end :meth:`run`."""
        self._stopping = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(self.workers):
                nursery.start_soon(self._worker, i)
            task_status.started()

    async def wait_ok(
        self,
        more: int,
        *,
        at_least: float = 0.0,
        timeout: float = 30.0,  # noqa: ASYNC109
        what: str = "",
    ) -> None:
        """Wait until ``more`` further operations have completed ``ok`` and, so that each
        phase of a test carries some load, at least ``at_least`` seconds have passed."""
        target = self.stats.ok + more
        label = f"{more} more ok operations{' ' + what if what else ''} ({self.stats.describe()})"
        with fail_after(timeout, label):
            await trio.sleep(at_least)  # load for a while (not a synchronisation)
            while self.stats.ok < target:
                await self._progress.wait()

    async def _worker(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + i)
        seen: dict[bytes, bytes | None] = {}  # the last value this worker saw, per key
        n = 0
        async with Client(self.placement, timeout=self.op_timeout, rng=random.Random(i)) as client:
            while not self._stopping:
                n += 1
                key = self._key(rng.randrange(self.key_count))
                value = f"w{i}-{n}".encode()
                r = rng.random()
                if r < 0.4:
                    op = Op.read(key)
                elif r < 0.7:
                    op = Op.write(key, value)
                elif r < 0.95:
                    op = Op.cas(key, seen.get(key), value)
                else:
                    op = Op.delete(key)
                ok, result = await self._do(client, i, op)
                if ok and op.kind == "read":
                    assert result is None or isinstance(result, bytes)
                    seen[key] = result
                elif (ok and op.kind == "write") or (op.kind == "cas" and result is True):
                    seen[key] = value

    def _key(self, i: int) -> bytes:
        generation = self._invoked // (self.ops_per_key * self.key_count)
        self._invoked += 1
        first, second = (i, generation) if self.slot_major else (generation, i)
        key = b"%s/%d/%d" % (self.prefix, first, second)
        if key not in self.keys:
            self.keys.append(key)
        return key

    async def _do(self, client: Client, worker: int, op: Op) -> tuple[bool, Result]:
        """Run one recorded operation: (whether it completed ok, its result)."""
        op_id = self.recorder.invoke(worker, op)
        try:
            result = await _call(client, op)
        except ClientError as e:
            if e.definite:
                self.recorder.fail(op_id)
            else:
                self.recorder.info(op_id)
            self.stats.counts[(op.kind, "fail" if e.definite else "info")] += 1
            return False, None
        except BaseException:
            self.recorder.info(op_id)
            self.stats.counts[(op.kind, "info")] += 1
            raise
        self.recorder.complete(op_id, result)
        self.stats.counts[(op.kind, "ok")] += 1
        self._progress.set()
        self._progress = trio.Event()
        return True, result


async def _call(client: Client, op: Op) -> Result:
    """Send ``op``; its result as the history records it."""
    if op.kind == "read":
        return await client.get(op.key)
    if op.kind == "write":
        assert op.value is not None
        await client.put(op.key, op.value)
        return None
    if op.kind == "cas":
        swapped, _ = await client.cas(op.key, op.expected, op.new)
        return swapped
    await client.delete(op.key)
    return None


async def final_reads(
    placement: str, recorder: HistoryRecorder, keys: list[bytes]
) -> dict[bytes, bytes | None]:
    """Read every key once, linearizably, recording each read (process ``"final"``)."""
    values: dict[bytes, bytes | None] = {}
    async with Client(placement, timeout=10.0) as client:
        for key in keys:
            op_id = recorder.invoke("final", Op.read(key))
            try:
                values[key] = await client.get(key)
            except BaseException:
                recorder.info(op_id)
                raise
            recorder.complete(op_id, values[key])
    return values


async def check_workload(cluster: Cluster, workload: Workload) -> dict[bytes, bytes]:
    """After :meth:`Workload.stop` and its run ended: a final read of every key is recorded,
    the whole history is linearizable (so no acknowledged write was lost), and every replica
    of every region holds the same data (``Cluster.replicas_agree``). Returns the cluster's
    content."""
    final = await final_reads(cluster.placement_address, workload.recorder, workload.keys)
    history = workload.recorder.history()
    t0 = time.monotonic()
    result = check(history, timeout=60)
    print(f"{workload.stats.describe()}; checked {len(history)} ops on "
          f"{len(workload.keys)} keys in {time.monotonic() - t0:.2f}s")  # fmt: skip
    assert result.ok is True, f"{result.verdict}:\n{result.explanation}"
    content = await cluster.replicas_agree()
    for key, value in final.items():
        assert content.get(key) == value, (key, value, content.get(key))
    return content
