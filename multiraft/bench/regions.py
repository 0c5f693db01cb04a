"""Benchmark of region operations on a local cluster of real processes: ``multiraft bench regions``.

Each section starts its own cluster (:class:`~multiraft.bench.bench_cluster.BenchCluster`:
a placement service and ``stores`` stores as subprocesses on 127.0.0.1, ports from the
OS, data under the run's directory), runs, and stops it. Placement runs with scheduling
*off* (``schedule_enabled = false``), so nothing but the benchmark's own requests moves
regions; a drain still runs (it is an explicit request). ``store`` / ``placement``
settings (``--store-setting``, ``--placement-setting``) go to every cluster. Every wait
has a deadline (``timeout``); the clock is the monotonic one.

**split** (``repeat`` times): region R is ``[split/<i-1>, +inf)``. After a random pause
of up to one heartbeat cycle (the longer of the stores' region and store heartbeat
intervals: an operator's first step reaches the leader with a heartbeat, so requests
made just after the previous split's last heartbeat would all wait alike), ask
placement for a manual ``SplitRegion`` operator at ``split/<i>`` (the clock starts just
before the request), then, concurrently:

* *operator*: poll placement (every 10 ms) until it reports the operator finished;
* *left* / *right*: loop ``client.put`` of a key in each half until a put succeeds
  *through the new region*: the route the client used (its cache, right after the put)
  carries an epoch newer than the parent's. A put the parent took before the split
  applied does not count (the loop goes on).

*serving* is the later of left and right: the time until both new regions took a write.

**move** (for each size in ``move_mib``, ascending, on one region): load the region with
``client.batch_put`` (``value_size``-byte values) up to that many MiB of keys plus
values, wait until every replica applied the whole log, then ask for a ``MovePeer``
operator from a follower's store to the one store without a replica. Measured: until
placement reports the operator finished, and until the new replica has applied the
leader's commit index (polled through the store's RegionStatus every 10 ms). For
scale, on the same machine and bytes: :func:`~multiraft.bench.copy_rates.loopback_tcp_rate`
and :func:`~multiraft.bench.copy_rates.lmdb_write_rate`. Every store setting that looks
like a split threshold is raised for this cluster so the region stays whole (checked:
the bench fails if it split).

**drain**: split the key space into ``regions`` regions (admin split requests straight
to the leader, one at a time: set-up, not measured), write ``region_kib`` KiB into each,
then drain the store holding the most leaders (``PlacementClient.drain_store``).
Measured from the request: until placement's routing table has no replica on the store
(*routes clear*), until the store itself reports no replica (*store empty*), and until
placement has made it a Tombstone (which waits for a store heartbeat; given up after two
store heartbeat intervals and 5 s). Afterwards every key written is scanned back.

Run: ``multiraft bench regions`` (``--only split|move|drain``, ``--repeat``,
``--move-mib``, ``--regions``, ``--json``; see ``--help``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from multiraft.bench.bench_cluster import BenchCluster, BenchClusterError
from multiraft.bench.copy_rates import lmdb_write_rate, loopback_tcp_rate
from multiraft.bench.kv import percentile
from multiraft.bench.region_ops import (
    POLL,
    BenchError,
    Say,
    add_operator,
    load,
    no_split_settings,
    split_by_admin,
    wait_converged,
    wait_operator,
)
from multiraft.client import Client, ClientError
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError
from multiraft.settings import PlacementConfig, StoreConfig
from multiraft.wire.placement_messages import ManualOperator, OperatorInfo, StoreState
from regions.region import Region

__all__ = [
    "SECTIONS",
    "BenchError",
    "DrainFigures",
    "MoveFigures",
    "RegionsBenchConfig",
    "RegionsBenchResult",
    "SplitFigures",
    "run",
]

SECTIONS: Final = ("split", "move", "drain")
MIB: Final = 1 << 20
#: The metric whose growth on the target store says how many snapshot bytes it installed.
SNAPSHOT_APPLIED_BYTES: Final = "multiraft_raft_snapshot_applied_bytes_total"


@dataclass(frozen=True)
class RegionsBenchConfig:
    """What to run (see the module docstring); the CLI options, one field each."""

    only: tuple[str, ...] = SECTIONS
    repeat: int = 20
    move_mib: tuple[float, ...] = (10, 100)
    regions: int = 100
    stores: int = 4
    value_size: int = 1024
    region_kib: int = 64
    #: Seconds any one wait may take.
    timeout: float = 900.0
    seed: int = 5
    #: ``[store]`` settings for every store (``--store-setting``), over the bench's own.
    store: Mapping[str, Any] = field(default_factory=dict)
    #: ``[placement]`` settings (``--placement-setting``), over the bench's own.
    placement: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        bad = [s for s in self.only if s not in SECTIONS]
        if bad or not self.only:
            raise ValueError(f"--only takes {', '.join(SECTIONS)}; got {', '.join(bad) or '-'}")
        if self.repeat < 1 or self.regions < 2 or self.value_size < 1 or self.region_kib < 0:
            raise ValueError("need --repeat >= 1, --regions >= 2, --value-size >= 1")
        if not self.move_mib or any(not 0 < m <= 4096 for m in self.move_mib):
            raise ValueError("--move-mib takes sizes in (0, 4096] MiB, e.g. 10,100")
        if self.stores < 4:
            raise ValueError("--stores must be at least 4 (a move and a drain need a spare store)")
        if not self.timeout > 0:
            raise ValueError("--timeout must be positive")
        for section in SECTIONS:  # ConfigError (a ValueError) names a bad setting
            StoreConfig.from_mapping({"store": self.store_settings(section)})
        PlacementConfig.from_mapping({"placement": self.placement_settings()})

    def store_settings(self, section: str) -> dict[str, Any]:
        """The ``[store]`` settings of the section's cluster."""
        out = no_split_settings(int(max(self.move_mib) * MIB)) if section == "move" else {}
        return out | dict(self.store)

    def placement_settings(self) -> dict[str, Any]:
        """The ``[placement]`` settings: scheduling off (only the bench's requests and the
        drain move regions), then the caller's."""
        return {"schedule_enabled": False} | dict(self.placement)

    def store_value(self, name: str) -> Any:
        """A store setting as the bench's stores run it (given, else the default)."""
        return self.store.get(name, getattr(StoreConfig(), name))

    @property
    def heartbeat_cycle(self) -> float:
        """The longer of the stores' region and store heartbeat intervals: the period over
        which the moment an operator's first step reaches its leader varies."""
        names = ("region_heartbeat_interval", "store_heartbeat_interval")
        return max(float(self.store_value(n)) for n in names)

    @property
    def store_limit(self) -> int:
        """Placement's most running operators per store."""
        value = self.placement.get("schedule_store_limit")
        return int(value) if value is not None else PlacementConfig().schedule_store_limit


def summary(values: list[float]) -> dict[str, float]:
    """p50, p90 and max (nearest rank) of ``values``, in seconds."""
    s = sorted(values)
    return {"p50": percentile(s, 50), "p90": percentile(s, 90), "max": s[-1] if s else 0.0}


@dataclass
class SplitFigures:
    splits: int
    #: p50/p90/max seconds from the split request until ...
    serving: dict[str, float]  # ... both new regions took a write
    left: dict[str, float]  # ... the left (new id) region took a write
    right: dict[str, float]  # ... the right (parent id) region took a write
    operator: dict[str, float]  # ... placement reported the operator finished
    #: Seconds of random pause before each split after the first (0 to this).
    pause_up_to: float
    #: Puts the parent took while its split was pending (not counted as serving).
    early_puts: int = 0


@dataclass
class MoveFigures:
    mib: float
    data_bytes: int
    keys: int
    region_id: int
    from_store: int
    to_store: int
    load_seconds: float
    operator_seconds: float
    applied_seconds: float
    #: Snapshot bytes the target store installed during the move (None: not exported).
    snapshot_bytes: int | None
    #: The same bytes over loopback TCP and into LMDB, for scale.
    tcp_mib_per_second: float
    lmdb_mib_per_second: float

    @property
    def move_mib_per_second(self) -> float:
        t = max(self.operator_seconds, self.applied_seconds)
        return self.data_bytes / MIB / t if t > 0 else math.inf


@dataclass
class DrainFigures:
    regions: int
    store_id: int
    replicas: int
    leaders: int
    data_bytes: int
    split_seconds: float
    routes_clear_seconds: float
    store_empty_seconds: float
    #: None: not a Tombstone within the deadline.
    tombstone_seconds: float | None
    #: Operators of the drain by final status, and their durations (p50/p90/max seconds,
    #: from placement's own created/finished times).
    operators: dict[str, int] = field(default_factory=dict)
    operator_seconds: dict[str, float] = field(default_factory=dict)
    store_limit: int = 0


@dataclass
class RegionsBenchResult:
    config: dict[str, Any]
    machine: dict[str, Any]
    split: SplitFigures | None = None
    move: list[MoveFigures] = field(default_factory=list)
    drain: DrainFigures | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for m, j in zip(self.move, out["move"], strict=True):
            j["move_mib_per_second"] = round(m.move_mib_per_second, 2)
        return out


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the sections ------------------------------------------------------------------------------


class _Timer:
    """Seconds since ``t0`` at which named events happened."""

    def __init__(self) -> None:
        self.t0 = trio.current_time()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = trio.current_time() - self.t0


async def _operator_done(pd: PlacementClient, started: OperatorInfo, timer: _Timer) -> None:
    await wait_operator(pd, started)
    timer.mark("operator")


async def put_until_new_region(client: Client, key: bytes, parent: Region) -> int:
    """Put ``key`` until a put goes through a region newer than ``parent`` (the route the
    client used carries a newer epoch); the puts the parent took before (they do not
    count: the split had not applied yet)."""
    early = 0
    while True:
        try:
            await client.put(key, b"v")
        except ClientError:
            await trio.sleep(POLL)
            continue
        used = client.region_cache.lookup(key)  # the route the put just went through
        if used is not None and used.region.epoch.version > parent.epoch.version:
            return early
        early += 1


async def time_split(client: Client, pd: PlacementClient, parent: Region, key: bytes,
                     left_key: bytes, right_key: bytes) -> tuple[dict[str, float], int]:  # fmt: skip
    """Split ``parent`` at ``key`` through placement; the seconds until ``operator``,
    ``left`` and ``right`` (see the module docstring), and the puts taken early."""
    early: list[int] = []

    async def write(name: str, k: bytes) -> None:
        early.append(await put_until_new_region(client, k, parent))
        timer.mark(name)

    timer = _Timer()
    started = await add_operator(pd, ManualOperator.SplitRegion, parent.id, split_key=key)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_operator_done, pd, started, timer)
        nursery.start_soon(write, "left", left_key)
        nursery.start_soon(write, "right", right_key)
    return timer.marks, sum(early)


async def bench_split(cluster: BenchCluster, config: RegionsBenchConfig, say: Say) -> SplitFigures:
    got: dict[str, list[float]] = {k: [] for k in ("serving", "left", "right", "operator")}
    early = 0
    cycle = config.heartbeat_cycle
    pauses = random.Random(config.seed)
    async with cluster.client(timeout=config.timeout) as client, cluster.placement() as pd:
        for i in range(1, config.repeat + 1):
            if i > 1:
                # A request at a random phase of the heartbeats that bring operator steps
                # to leaders, not just after the heartbeat that ended the previous split.
                await trio.sleep(pauses.uniform(0, cycle))
            key = b"split/%06d" % i
            route = await pd.get_region(key)
            if route is None:
                raise BenchError(f"placement routes no region for {key!r}")
            with trio.fail_after(config.timeout):
                marks, n = await time_split(client, pd, route.region, key,
                                            b"split/%06d/w" % (i - 1), key + b"/w")  # fmt: skip
            early += n
            for name in ("left", "right", "operator"):
                got[name].append(marks[name])
            got["serving"].append(max(marks["left"], marks["right"]))
            say(f"split {i}/{config.repeat}: serving {got['serving'][-1] * 1000:.0f} ms, "
                f"operator {marks['operator'] * 1000:.0f} ms")  # fmt: skip
    sm = {k: summary(v) for k, v in got.items()}
    return SplitFigures(config.repeat, sm["serving"], sm["left"], sm["right"], sm["operator"],
                        cycle, early)  # fmt: skip


async def time_move(cluster: BenchCluster, pd: PlacementClient, region_id: int, src: int,
                    dst: int, target: int) -> dict[str, float]:  # fmt: skip
    """Move the region's replica from ``src`` to ``dst`` through placement; the seconds until
    ``operator`` (finished) and ``applied`` (``dst`` applied index ``target``)."""

    async def applied() -> None:
        while True:
            st = await cluster.region_status(dst, region_id)
            if st is not None and st.applied_index >= target:
                timer.mark("applied")
                return
            await trio.sleep(POLL)

    timer = _Timer()
    started = await add_operator(pd, ManualOperator.MovePeer, region_id, from_store=src,
                                 to_store=dst)  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_operator_done, pd, started, timer)
        nursery.start_soon(applied)
    return timer.marks


async def bench_move(
    cluster: BenchCluster, config: RegionsBenchConfig, say: Say
) -> list[MoveFigures]:
    rng = random.Random(config.seed)
    results: list[MoveFigures] = []
    key_size = len(b"move/%010d" % 0)
    pair = key_size + config.value_size
    loaded = 0
    async with cluster.client() as client, cluster.placement() as pd:
        for mib in sorted(config.move_mib):
            want = math.ceil(mib * MIB / pair)
            say(f"move {mib:g} MiB: loading {want - loaded} keys...")
            t_load = trio.current_time()
            with trio.fail_after(config.timeout):
                await load(client, [b"move/%010d" % i for i in range(loaded, want)],
                           config.value_size, rng)  # fmt: skip
            loaded = want
            routes = await pd.scan_regions(b"", b"")
            if len(routes) != 1:
                raise BenchError(f"the region split while loading {mib:g} MiB ({len(routes)} "
                                 "regions): the store's split thresholds were not raised")  # fmt: skip
            region_id = routes[0].region.id
            with trio.fail_after(config.timeout):
                target = await wait_converged(cluster, pd, region_id)
                route = await pd.get_region_by_id(region_id) or routes[0]
            load_seconds = trio.current_time() - t_load
            holders = {p.store_id for p in route.region.peers}
            leader = route.leader.store_id if route.leader is not None else 0
            src = min(s for s in holders if s != leader)  # a follower: no leader transfer
            dst = min(set(cluster.stores) - holders)
            snap0 = await cluster.metric(dst, SNAPSHOT_APPLIED_BYTES)
            say(f"move {mib:g} MiB: region {region_id} from store {src} to store {dst}...")
            with trio.fail_after(config.timeout):
                marks = await time_move(cluster, pd, region_id, src, dst, target)
            snap1 = await cluster.metric(dst, SNAPSHOT_APPLIED_BYTES)
            data_bytes = loaded * pair
            say(f"move {mib:g} MiB: done in {max(marks.values()):.2f} s; measuring loopback TCP "
                "and LMDB on the same bytes...")  # fmt: skip
            tcp = await loopback_tcp_rate(data_bytes)
            disk = await lmdb_write_rate(loaded, key_size, config.value_size,
                                         directory=cluster.root)  # fmt: skip
            results.append(MoveFigures(
                mib=mib, data_bytes=data_bytes, keys=loaded, region_id=region_id,
                from_store=src, to_store=dst, load_seconds=round(load_seconds, 3),
                operator_seconds=marks["operator"], applied_seconds=marks["applied"],
                snapshot_bytes=None if snap0 is None or snap1 is None else int(snap1 - snap0),
                tcp_mib_per_second=round(tcp.mib_per_second, 1),
                lmdb_mib_per_second=round(disk.mib_per_second, 1),
            ))  # fmt: skip
    return results


async def follow_drain(cluster: BenchCluster, pd: PlacementClient, sid: int, *,
                       timeout: float, tombstone_wait: float, say: Say) -> dict[str, float]:  # noqa: ASYNC109  # fmt: skip
    """Poll after a drain request: seconds until ``routes`` (placement routes no replica to
    store ``sid``), ``store`` (it reports none) and, if within ``tombstone_wait`` seconds
    after both, ``tombstone``. Raises BenchError if the first two take over ``timeout``."""
    timer = _Timer()
    last = -1
    with trio.move_on_after(timeout):
        while "routes" not in timer.marks or "store" not in timer.marks:
            if "routes" not in timer.marks:
                routes = await pd.scan_regions(b"", b"")
                left = sum(any(p.store_id == sid for p in r.region.peers) for r in routes)
                if left == 0:
                    timer.mark("routes")
                elif last < 0 or left <= last - 10:
                    say(f"drain: {left} replicas left after {trio.current_time() - timer.t0:.1f} s")
                    last = left
            if "store" not in timer.marks:
                st = await cluster.store_status(sid)
                if st is not None and st.region_count == 0:
                    timer.mark("store")
            await trio.sleep(POLL * 5)
    if "routes" not in timer.marks or "store" not in timer.marks:
        raise BenchError(f"store {sid} still held replicas after {timeout:g} s")
    with trio.move_on_after(tombstone_wait):
        while True:
            if (await pd.store_status(sid)).info.state == StoreState.Tombstone:
                timer.mark("tombstone")
                break
            await trio.sleep(POLL * 5)
    return timer.marks


async def bench_drain(cluster: BenchCluster, config: RegionsBenchConfig, say: Say) -> DrainFigures:
    rng = random.Random(config.seed)
    bounds = [b"drain/%06d" % i for i in range(1, config.regions)]
    pair = len(b"drain/000000/000000") + config.value_size
    per_region = math.ceil(config.region_kib * 1024 / pair)
    keys = [b"drain/%06d/%06d" % (r, j) for r in range(config.regions) for j in range(per_region)]
    async with cluster.client() as client, cluster.placement() as pd:
        t_split = trio.current_time()
        with trio.fail_after(config.timeout):
            await split_by_admin(cluster, pd, bounds, say)
        split_seconds = trio.current_time() - t_split
        with trio.fail_after(config.timeout):
            await load(client, keys, config.value_size, rng)
            while True:  # every region reported, with a leader
                routes = await pd.scan_regions(b"", b"")
                if len(routes) == config.regions and all(r.leader for r in routes):
                    break
                await trio.sleep(POLL)
        leaders = {s: sum(r.leader is not None and r.leader.store_id == s for r in routes)
                   for s in cluster.stores}  # fmt: skip
        replicas = {s: sum(any(p.store_id == s for p in r.region.peers) for r in routes)
                    for s in cluster.stores}  # fmt: skip
        sid = max(cluster.stores, key=lambda s: (leaders[s], replicas[s], -s))
        say(f"drain: store {sid} ({replicas[sid]} replicas, {leaders[sid]} leaders)...")
        hb = float(config.store_value("store_heartbeat_interval"))
        await pd.drain_store(sid)
        marks = await follow_drain(cluster, pd, sid, timeout=config.timeout,
                                   tombstone_wait=2 * float(hb) + 5.0, say=say)  # fmt: skip
        ops: dict[str, int] = {}
        took: list[float] = []
        for o in await pd.list_operators():  # only splits ran on this cluster before
            if o.kind != "split-region":
                ops[o.status] = ops.get(o.status, 0) + 1
                if o.finished_at is not None:
                    took.append(o.finished_at - o.created_at)
        # A new client: this one's cache still names the drained store as every region's
        # leader, and a scan retrying region after region under one backoff can outlast
        # its deadline (reported; the check here is the data, not the client's cache).
        async with cluster.client(timeout=config.timeout) as fresh:
            got = await fresh.scan(b"drain/", b"drain0", limit=len(keys) + 1)
        if len(got) != len(keys):
            raise BenchError(f"after the drain a scan found {len(got)} of {len(keys)} keys")
    return DrainFigures(
        regions=config.regions, store_id=sid, replicas=replicas[sid], leaders=leaders[sid],
        data_bytes=len(keys) * pair, split_seconds=round(split_seconds, 2),
        routes_clear_seconds=marks["routes"], store_empty_seconds=marks["store"],
        tombstone_seconds=marks.get("tombstone"), operators=ops, operator_seconds=summary(took),
        store_limit=config.store_limit,
    )  # fmt: skip


# -- running -----------------------------------------------------------------------------------


async def _section(name: str, root: Path, config: RegionsBenchConfig, say: Say) -> Any:
    cluster = BenchCluster(root / name, stores=config.stores,
                           placement_settings=config.placement_settings(),
                           store_settings=config.store_settings(name))  # fmt: skip
    try:
        say(f"{name}: starting a placement service and {config.stores} stores in {cluster.root}")
        await cluster.start()
        if name == "split":
            return await bench_split(cluster, config, say)
        if name == "move":
            return await bench_move(cluster, config, say)
        return await bench_drain(cluster, config, say)
    except (BenchClusterError, BenchError) as e:
        raise BenchError(e.message, e.details or cluster.log_tails()) from None
    except (ClientError, PlacementClientError) as e:
        raise BenchError(f"{name}: {e}", cluster.log_tails()) from None
    except trio.TooSlowError:
        raise BenchError(f"{name}: a wait took longer than {config.timeout:g} s",
                         cluster.log_tails()) from None  # fmt: skip
    finally:
        await cluster.aclose()
        cluster.stop()


async def run(root: Path, config: RegionsBenchConfig, say: Say | None = None) -> RegionsBenchResult:
    """Run the configured sections, each on its own cluster under ``root``.

    Raises:
        ValueError: a bad configuration.
        BenchError: a section could not complete (processes are stopped first).
    """
    config.validate()
    out = say or (lambda _line: None)
    result = RegionsBenchResult(
        config=dataclasses.asdict(config),
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "platform": platform.platform(), "load_average_start": load_average()},
    )  # fmt: skip
    for name in SECTIONS:
        if name not in config.only:
            continue
        got = await _section(name, root, config, out)
        if name == "split":
            result.split = got
        elif name == "move":
            result.move = got
        else:
            result.drain = got
        result.machine[f"load_average_after_{name}"] = load_average()
    return result
