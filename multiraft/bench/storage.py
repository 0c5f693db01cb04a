"""Benchmark of the LMDB storage engine against raw LMDB doing the same writes.

What it measures: the cost of making a ready round durable. Each round
appends ``entries`` log entries (100-byte payloads) spread evenly over
``min(entries, regions)`` of ``regions`` regions (round-robin, so every region
is touched in turn), and writes each touched region's hard state, as a store
does after a Ready. Every round is one write transaction committed with
``sync=True`` (LMDB fsyncs data, then meta), so the figures include one
durable commit per round.

* **engine**: :meth:`~multiraft.storage.raft_storage.RaftStorage.stage_ready`
  (entries + hard state) for each touched region into one
  :class:`~multiraft.storage.write_batch.WriteBatch`, then ``commit``:
  encoding, tail cache, bookkeeping and the transaction.
* **raw**: the same keys and values with plain ``txn.put`` calls (values
  pre-encoded, keys packed per put), one transaction per round, on a
  separate environment with the same settings.

The ratio ``raw rounds/s / engine rounds/s`` is the engine's overhead (the
target is at most 1.5x for rounds of 100+ entries). Building the Entry
objects is the Raft core's work and is not timed.

Run: ``multiraft bench storage`` or ``python -m multiraft.bench.storage``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import lmdb

from multiraft.raft.types import Entry, HardState
from multiraft.storage import keys
from multiraft.storage.engine import Engine
from multiraft.storage.raft_storage import RaftStorage
from multiraft.storage.write_batch import WriteBatch
from multiraft.wire.records import encode_entry, encode_raft_local_state

__all__ = ["DEFAULT_CONFIGS", "StorageBenchResult", "format_table", "main", "run"]

PAYLOAD = b"x" * 100
MAP_SIZE = 1 << 30
#: (entries per round, regions), the grid of the issue.
DEFAULT_CONFIGS: tuple[tuple[int, int], ...] = tuple(
    (e, r) for e in (1, 100, 1000) for r in (1, 100, 1000)
)


@dataclass
class StorageBenchResult:
    entries_per_round: int
    regions: int
    regions_per_round: int
    engine_rounds: int
    engine_rounds_per_second: float
    engine_entries_per_second: float
    engine_us_per_round: float
    raw_rounds: int
    raw_rounds_per_second: float
    raw_entries_per_second: float
    raw_us_per_round: float
    #: raw rounds/s divided by engine rounds/s: 1.0 means no overhead.
    overhead: float


def _schedule(entries: int, regions: int, rnd: int) -> tuple[list[int], int]:
    """The regions touched in round ``rnd`` and the entries each gets."""
    touched = min(entries, regions)
    base = (rnd * touched) % regions
    return [(base + j) % regions + 1 for j in range(touched)], entries // touched


class _EngineSide:
    """The engine under test: RaftStorage + WriteBatch, one commit per round."""

    def __init__(self, path: Path, entries: int, regions: int) -> None:
        self.engine = Engine.open(path, map_size=MAP_SIZE, sync=True)
        self.stores = {rid: RaftStorage.open(self.engine, rid) for rid in range(1, regions + 1)}
        self.last = dict.fromkeys(self.stores, 0)
        self.entries = entries
        self.regions = regions
        self.rounds = 0
        self.busy = 0.0

    def round(self) -> None:
        rids, per = _schedule(self.entries, self.regions, self.rounds)
        work: list[tuple[RaftStorage, list[Entry], HardState]] = []
        last = self.last
        for rid in rids:
            lo = last[rid] + 1
            ents = [Entry(term=1, index=i, data=PAYLOAD) for i in range(lo, lo + per)]
            last[rid] = lo + per - 1
            work.append((self.stores[rid], ents, HardState(term=1, vote=1, commit=lo - 1)))
        t0 = time.perf_counter()
        batch = WriteBatch()
        for st, ents, hs in work:
            st.stage_ready(ents, hs, batch)
        batch.commit(self.engine)
        self.busy += time.perf_counter() - t0
        self.rounds += 1

    def close(self) -> None:
        self.engine.close()


class _RawSide:
    """Plain py-lmdb: the same keys and values put one by one, one transaction per round."""

    def __init__(self, path: Path, entries: int, regions: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=16, sync=True, readahead=False)
        self.log_db = self.env.open_db(keys.DB_RAFT_LOG)
        self.state_db = self.env.open_db(keys.DB_RAFT_STATE)
        self.value = encode_entry(Entry(term=1, index=1, data=PAYLOAD))
        self.state = encode_raft_local_state(HardState(term=1, vote=1, commit=1), 1)
        self.last = dict.fromkeys(range(1, regions + 1), 0)
        self.entries = entries
        self.regions = regions
        self.rounds = 0
        self.busy = 0.0

    def round(self) -> None:
        rids, per = _schedule(self.entries, self.regions, self.rounds)
        log_key, region_key = _LOG_KEY, _REGION_KEY
        log_db, state_db, value, state, last = (
            self.log_db,
            self.state_db,
            self.value,
            self.state,
            self.last,
        )
        t0 = time.perf_counter()
        with self.env.begin(write=True) as txn:
            put = txn.put
            for rid in rids:
                lo = last[rid] + 1
                for i in range(lo, lo + per):
                    put(log_key(rid, i), value, db=log_db)
                last[rid] = lo + per - 1
                put(region_key(rid), state, db=state_db)
        self.busy += time.perf_counter() - t0
        self.rounds += 1

    def close(self) -> None:
        self.env.close()


_LOG_KEY = struct.Struct(">QQ").pack
_REGION_KEY = struct.Struct(">Q").pack
#: The two sides alternate in slices of this much timed work, so background
#: load on the machine affects both alike.
_SLICE_SECONDS = 0.1


def _measure(
    root: Path, entries: int, regions: int, seconds: float
) -> tuple[_EngineSide, _RawSide]:
    eng = _EngineSide(root / "engine", entries, regions)
    raw = _RawSide(root / "raw", entries, regions)
    try:
        # One warm-up round each (page cache, first allocations), not counted.
        eng.round()
        raw.round()
        eng.rounds = raw.rounds = 1
        eng.busy = raw.busy = 0.0
        wall_deadline = time.perf_counter() + seconds * 6
        while (eng.busy < seconds or raw.busy < seconds) and time.perf_counter() < wall_deadline:
            for side in (eng, raw):
                stop = side.busy + _SLICE_SECONDS
                while side.busy < stop:
                    side.round()
    finally:
        eng.close()
        raw.close()
    return eng, raw


def run(
    seconds: float = 2.0,
    configs: Sequence[tuple[int, int]] = DEFAULT_CONFIGS,
    directory: str | None = None,
    progress: Callable[[StorageBenchResult], None] | None = None,
) -> list[StorageBenchResult]:
    """Measure every ``(entries per round, regions)`` config for ``seconds`` each side.

    Uses a fresh temporary directory under ``directory`` (default: the
    system's), removed afterwards.
    """
    results: list[StorageBenchResult] = []
    root = Path(tempfile.mkdtemp(prefix="multiraft-bench-storage-", dir=directory))
    try:
        for n, (entries, regions) in enumerate(configs):
            eng, raw = _measure(root / str(n), entries, regions, seconds)
            shutil.rmtree(root / str(n))
            e_rounds, r_rounds = eng.rounds - 1, raw.rounds - 1
            e_rps = e_rounds / eng.busy
            r_rps = r_rounds / raw.busy
            res = StorageBenchResult(
                entries_per_round=entries,
                regions=regions,
                regions_per_round=min(entries, regions),
                engine_rounds=e_rounds,
                engine_rounds_per_second=e_rps,
                engine_entries_per_second=e_rps * entries,
                engine_us_per_round=1e6 / e_rps,
                raw_rounds=r_rounds,
                raw_rounds_per_second=r_rps,
                raw_entries_per_second=r_rps * entries,
                raw_us_per_round=1e6 / r_rps,
                overhead=r_rps / e_rps,
            )
            results.append(res)
            if progress is not None:
                progress(res)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


_HEADER = (
    f"{'entries':>7} {'regions':>7} {'touched':>7} | {'engine rounds/s':>15} {'entries/s':>10} "
    f"{'us/round':>9} | {'raw rounds/s':>12} {'entries/s':>10} {'us/round':>9} | {'overhead':>8}"
)


def _row(r: StorageBenchResult) -> str:
    return (
        f"{r.entries_per_round:>7} {r.regions:>7} {r.regions_per_round:>7} | "
        f"{r.engine_rounds_per_second:>15,.0f} {r.engine_entries_per_second:>10,.0f} "
        f"{r.engine_us_per_round:>9,.0f} | {r.raw_rounds_per_second:>12,.0f} "
        f"{r.raw_entries_per_second:>10,.0f} {r.raw_us_per_round:>9,.0f} | {r.overhead:>7.2f}x"
    )


def format_table(results: Sequence[StorageBenchResult]) -> str:
    """The results as a fixed-width table, one row per config."""
    return "\n".join([_HEADER, "-" * len(_HEADER), *(_row(r) for r in results)])


def main(seconds: float = 2.0, as_json: bool = False) -> None:
    """Run the default grid and print a table (or JSON)."""
    if as_json:
        print(json.dumps([asdict(r) for r in run(seconds)], indent=2))
        return
    print("LMDB storage engine vs raw LMDB: one sync=True write transaction per round")
    print(_HEADER)
    print("-" * len(_HEADER))
    run(seconds, progress=lambda r: print(_row(r), flush=True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="timed seconds per config and side"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    main(seconds=args.seconds, as_json=args.json)
