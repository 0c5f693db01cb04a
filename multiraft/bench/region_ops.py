"""What the region benchmark does to a cluster and waits for (``multiraft bench regions``).

Helpers over :class:`~multiraft.bench.bench_cluster.BenchCluster`, the client and the
placement client: start a manual operator and wait until placement reports it ended,
load keys with ``batch_put``, wait until every replica of a region applied its whole log,
find a region's leader, and split by admin requests (benchmark set-up). Every wait polls every :data:`POLL` seconds and has no
deadline of its own: callers wrap it in ``trio.fail_after``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any, Final

import trio

from multiraft.bench.bench_cluster import BenchCluster
from multiraft.client import Client
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementRequestError
from multiraft.settings import StoreConfig
from multiraft.wire import SplitRegion, SplitResult
from multiraft.wire.placement_messages import ManualOperator, OperatorInfo
from regions.region import Region

__all__ = [
    "POLL",
    "BenchError",
    "Say",
    "add_operator",
    "find_leader",
    "load",
    "no_split_settings",
    "split_by_admin",
    "wait_converged",
    "wait_operator",
]

#: Seconds between polls of placement and of the stores while timing.
POLL: Final = 0.01
#: Pairs per batch_put while loading, and batch_puts in flight.
LOAD_BATCH: Final = 256
LOAD_TASKS: Final = 4

Say = Callable[[str], None]


class BenchError(Exception):
    """The benchmark could not measure what it was asked to (one line; ``details``: logs)."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


def _same(a: OperatorInfo, b: OperatorInfo) -> bool:
    return (a.region_id, a.kind, a.created_at) == (b.region_id, b.kind, b.created_at)


async def wait_operator(pd: PlacementClient, started: OperatorInfo) -> OperatorInfo:
    """Poll placement until ``started`` ends; raise BenchError unless it succeeded."""
    while True:
        info = await pd.get_operator(started.region_id)
        if info is None or not _same(info, started):
            info = next((o for o in await pd.list_operators() if _same(o, started)), None)
        if info is None:
            raise BenchError(f"placement lost the {started.kind} operator of region "
                             f"{started.region_id}")  # fmt: skip
        if info.status != "running":
            if info.status != "success":
                raise BenchError(f"the {info.kind} operator of region {info.region_id} ended "
                                 f"{info.status} at step {info.step_index} ({info.desc})")  # fmt: skip
            return info
        await trio.sleep(POLL)


async def add_operator(pd: PlacementClient, kind: ManualOperator, region_id: int,
                       **kw: Any) -> OperatorInfo:  # fmt: skip
    """Start a manual operator, retrying while the region or a store is busy."""
    while True:
        try:
            return await pd.add_operator(kind, region_id, **kw)
        except PlacementRequestError as e:
            if "busy" not in e.message and "running" not in e.message:
                raise BenchError(f"placement refused {kind.name} on region {region_id}: "
                                 f"{e.message}") from None  # fmt: skip
        await trio.sleep(0.05)


async def load(client: Client, keys: list[bytes], value_size: int, rng: random.Random) -> None:
    """batch_put ``keys`` (random ``value_size``-byte values), a few batches in flight."""
    slots = trio.Semaphore(LOAD_TASKS)

    async def put(batch: list[bytes]) -> None:
        try:
            value = rng.randbytes(value_size)
            await client.batch_put([(k, value) for k in batch], timeout=120.0)
        finally:
            slots.release()

    async with trio.open_nursery() as nursery:
        for lo in range(0, len(keys), LOAD_BATCH):
            await slots.acquire()  # at most LOAD_TASKS batches in memory and in flight
            nursery.start_soon(put, keys[lo : lo + LOAD_BATCH])


async def wait_converged(cluster: BenchCluster, pd: PlacementClient, region_id: int) -> int:
    """Poll until the region's leader committed its whole log and every replica applied
    it; that index."""
    while True:
        route = await pd.get_region_by_id(region_id)
        if route is not None and route.leader is not None:
            lst = await cluster.region_status(route.leader.store_id, region_id)
            if lst is not None and lst.commit_index == lst.last_index:
                sts = [await cluster.region_status(p.store_id, region_id)
                       for p in route.region.peers]  # fmt: skip
                if all(s is not None and s.applied_index >= lst.commit_index for s in sts):
                    return lst.commit_index
        await trio.sleep(POLL)


async def find_leader(cluster: BenchCluster, region_id: int) -> tuple[Region, int]:
    """The region as its leader sees it, and the leader's store (polled until one leads)."""
    while True:
        for sid in cluster.stores:
            st = await cluster.region_status(sid, region_id)
            if st is not None and st.leader is not None and st.leader.store_id == sid:
                return st.region, sid
        await trio.sleep(POLL)


def no_split_settings(region_bytes: int) -> dict[str, Any]:
    """Store settings that keep a region of ``region_bytes`` whole: every StoreConfig split
    threshold (a field named ``*split*`` or ``region_max_*`` counting bytes or keys)
    raised far above it."""
    big = max(4 * region_bytes, 1 << 30)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(StoreConfig):
        name = f.name
        if not ("split" in name or name.startswith("region_max")) or f.type not in ("int", int):
            continue
        if name.endswith(("_bytes", "_size")) or name.endswith("_keys"):
            out[name] = big
    return out


async def split_by_admin(cluster: BenchCluster, pd: PlacementClient, keys: list[bytes],
                         say: Say) -> None:  # fmt: skip
    """Split the region holding ``keys[0]`` at each key in turn (ascending: each split cuts
    the right part of the last), by admin requests straight to its leader: set-up, so no
    placement operator and no heartbeat to wait for."""
    route = await pd.get_region(keys[0])
    if route is None:
        raise BenchError(f"placement routes no region for {keys[0]!r}")
    region, leader = await find_leader(cluster, route.region.id)
    for n, key in enumerate(keys, 1):
        while True:
            got = await cluster.admin(leader, SplitRegion(key), region.id, region.epoch,
                                      timeout=30.0)  # fmt: skip
            if isinstance(got, SplitResult):
                region = next(r for r in got.regions if r.id == region.id)  # right_derive
                break
            region, leader = await find_leader(cluster, region.id)  # moved, or not applied yet
        if n % 20 == 0 or n == len(keys):
            say(f"drain: {n + 1} regions")
