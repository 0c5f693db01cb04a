"""Benchmark of a running cluster through the client: ``multiraft bench kv``.

What it measures: end-to-end throughput and latency of single-key operations as an
application sees them. ``clients`` concurrent trio tasks each loop for ``duration``
seconds issuing one operation at a time on a key drawn uniformly from ``keys`` keys
(``bench-00000000`` ...):

* ``write``: ``put`` of a ``value_size``-byte value;
* ``read``: ``get`` (linearizable), after one preload of every key with ``batch_put``;
* ``mixed``: half reads, half writes, after the same preload.

The tasks share a few :class:`~multiraft.client.Client` objects (one per 64 tasks, at
most 8), so each store sees a few multiplexed connections, as an application server
would open. Latency is measured per operation from call to return with the monotonic
clock; failed operations are counted by error kind and not in the latency figures.

Run: ``multiraft bench kv --workload write --clients 16 --duration 10`` (the cluster is
found as for every client command).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import trio

from multiraft.client import Client, ClientError

__all__ = ["WORKLOADS", "KvBenchConfig", "KvBenchResult", "format_report", "run"]

Workload = Literal["write", "read", "mixed"]
WORKLOADS: Final = ("write", "read", "mixed")
#: Tasks per Client, and the most Clients one run opens.
TASKS_PER_CLIENT: Final = 64
MAX_CLIENTS: Final = 8
#: Pairs per batch_put while preloading.
PRELOAD_BATCH: Final = 256
#: Seconds between progress reports.
PROGRESS_INTERVAL: Final = 0.5
#: Seconds a task pauses after a failed operation (so an outage is not a busy loop).
ERROR_PAUSE: Final = 0.05


@dataclass(frozen=True)
class KvBenchConfig:
    workload: Workload = "write"
    clients: int = 16
    duration: float = 10.0
    value_size: int = 100
    keys: int = 10_000
    timeout: float = 5.0
    seed: int | None = None

    def validate(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}")
        if self.clients < 1 or self.keys < 1 or self.value_size < 0 or self.duration <= 0:
            raise ValueError("clients and keys must be >= 1, value size >= 0, duration > 0")


@dataclass
class KvBenchResult:
    workload: str
    clients: int
    duration_seconds: float
    value_size: int
    keys: int
    ops: int
    ops_per_second: float
    #: Latency percentiles of successful operations, seconds.
    latency_seconds: dict[str, float]
    #: Failed operations by error kind (exception class name).
    errors: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def key_name(i: int) -> bytes:
    return b"bench-%08d" % i


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of sorted values; 0.0 if none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.reads = 0
        self.writes = 0

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


async def _preload(client: Client, config: KvBenchConfig, value: bytes) -> None:
    for lo in range(0, config.keys, PRELOAD_BATCH):
        hi = min(lo + PRELOAD_BATCH, config.keys)
        await client.batch_put([(key_name(i), value) for i in range(lo, hi)])


async def _worker(
    client: Client,
    config: KvBenchConfig,
    rng: random.Random,
    value: bytes,
    stop_at: float,
    stats: _Stats,
) -> None:
    keys, workload = config.keys, config.workload
    while True:
        start = trio.current_time()
        if start >= stop_at:
            return
        key = key_name(rng.randrange(keys))
        is_read = workload == "read" or (workload == "mixed" and rng.random() < 0.5)
        try:
            if is_read:
                await client.get(key)
            else:
                await client.put(key, value)
        except ClientError as e:
            name = type(e).__name__
            stats.errors[name] = stats.errors.get(name, 0) + 1
            await trio.sleep(ERROR_PAUSE)
            continue
        stats.latencies.append(trio.current_time() - start)
        if is_read:
            stats.reads += 1
        else:
            stats.writes += 1


ProgressFn = Callable[[float, int, int], None]


async def run(
    placement_address: str,
    config: KvBenchConfig,
    *,
    progress: ProgressFn | None = None,
) -> KvBenchResult:
    """Run one benchmark against the cluster whose placement service is at the address.

    Args:
        progress: called about every half second with ``(elapsed seconds, ops so far,
            errors so far)``.

    Raises:
        ClientError: the cluster cannot be reached at the start, or the preload failed.
    """
    config.validate()
    master = random.Random(config.seed)
    value = master.randbytes(config.value_size)
    n_clients = min(MAX_CLIENTS, math.ceil(config.clients / TASKS_PER_CLIENT))
    stats = _Stats()
    clients = [Client(placement_address, timeout=config.timeout) for _ in range(n_clients)]
    try:
        for c in clients:
            await c.connect()
        if config.workload != "write":
            await _preload(clients[0], config, value)
        began = trio.current_time()
        stop_at = began + config.duration
        async with trio.open_nursery() as nursery:
            for i in range(config.clients):
                rng = random.Random(master.getrandbits(64))
                nursery.start_soon(
                    _worker, clients[i % n_clients], config, rng, value, stop_at, stats
                )
            if progress is not None:
                while trio.current_time() < stop_at:
                    await trio.sleep(min(PROGRESS_INTERVAL, stop_at - trio.current_time()))
                    progress(trio.current_time() - began, stats.ops, stats.failed)
        elapsed = trio.current_time() - began
    finally:
        for c in clients:
            await c.aclose()
    lat = sorted(stats.latencies)
    return KvBenchResult(
        workload=config.workload,
        clients=config.clients,
        duration_seconds=round(elapsed, 3),
        value_size=config.value_size,
        keys=config.keys,
        ops=stats.ops,
        ops_per_second=round(stats.ops / elapsed, 1) if elapsed > 0 else 0.0,
        latency_seconds={
            "p50": percentile(lat, 50),
            "p95": percentile(lat, 95),
            "p99": percentile(lat, 99),
            "max": lat[-1] if lat else 0.0,
        },
        errors=dict(sorted(stats.errors.items())),
        reads=stats.reads,
        writes=stats.writes,
    )


def format_report(r: KvBenchResult) -> str:
    """The result as a few lines of text."""

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f} ms"

    lat = r.latency_seconds
    errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "none"
    return "\n".join(
        [
            f"workload   {r.workload}, {r.clients} clients, {r.duration_seconds:.1f} s, "
            f"{r.value_size}-byte values, {r.keys} keys",
            f"ops        {r.ops} ({r.reads} reads, {r.writes} writes)",
            f"ops/s      {r.ops_per_second:.1f}",
            f"latency    p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  "
            f"max {ms(lat['max'])}",
            f"errors     {errors}",
        ]
    )


def bench_command(
    *,
    workload: str,
    clients: int,
    duration: float,
    value_size: int,
    keys: int,
    seed: int | None,
    as_json: bool,
    placement: str | None,
    data_dir: str,
    timeout: float,
) -> None:
    """The body of ``multiraft bench kv``: find the cluster, run, print (one-line errors)."""
    import json
    import sys

    import typer

    from multiraft.cli.common import CliError, UsageError, fail, find_placement

    try:
        if workload not in WORKLOADS:
            raise UsageError(f"bad workload {workload!r}: expected one of {', '.join(WORKLOADS)}")
        config = KvBenchConfig(
            workload=workload,  # type: ignore[arg-type]  # checked above
            clients=clients, duration=duration, value_size=value_size, keys=keys,
            timeout=timeout, seed=seed,
        )  # fmt: skip
        address = find_placement(placement, data_dir)
        steps = max(1, round(duration / PROGRESS_INTERVAL))
        label = f"bench kv {workload} x{clients}"
        with typer.progressbar(length=steps, label=label, file=sys.stderr) as bar:
            done = 0

            def progress(elapsed: float, ops: int, errors: int) -> None:
                nonlocal done
                now = min(steps, round(elapsed / PROGRESS_INTERVAL))
                if now > done:
                    bar.update(now - done)
                    done = now

            result = trio.run(lambda: run(address, config, progress=progress))
    except CliError as e:
        fail(e.message, e.exit_code)
    except ClientError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(format_report(result))
