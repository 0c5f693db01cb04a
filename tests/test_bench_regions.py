"""Smoke tests of ``multiraft bench regions`` (multiraft/bench/regions.py and its helpers).

The benchmark's figures are recorded in docs/performance.md, never asserted here. These
tests keep its code path alive: every section runs once on real processes at tiny sizes
(2 splits, a 0.25 MiB move, a drain of 3 regions), with fast heartbeats so that no wait is
a heartbeat interval of seconds, and the result is checked for coherence (the move went
through a snapshot holding the data, the drain's operators all succeeded, every process is
gone afterwards). The command line is checked for its one-line usage errors.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from typer.testing import CliRunner

from multiraft.bench.copy_rates import lmdb_write_rate, loopback_tcp_rate
from multiraft.bench.region_ops import BenchError, wait_operator
from multiraft.bench.regions import RegionsBenchConfig, put_until_new_region, run
from multiraft.bench.regions_cli import format_report, parse_settings
from multiraft.cli.main import app
from multiraft.client import RequestTimeout
from multiraft.client.region_cache import RegionCache
from multiraft.wire.placement_messages import OperatorInfo, RegionRoute
from regions.region import Peer, Region, RegionEpoch

#: Heartbeats fast enough that operators start at once and a drained store turns into a
#: Tombstone within a second.
FAST_STORES = {"region_heartbeat_interval": 0.2, "store_heartbeat_interval": 0.5}


def processes_mentioning(root: Path) -> list[int]:
    """Pids of live processes whose command line names ``root`` (the bench's clusters)."""
    marker = str(root.resolve()).encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(d.name))
    return pids


@pytest.mark.slow
async def test_every_section_runs_on_real_processes(tmp_path: Path) -> None:
    config = RegionsBenchConfig(
        repeat=2, move_mib=(0.25,), regions=3, region_kib=4, timeout=60.0, store=FAST_STORES
    )
    said: list[str] = []
    result = await run(tmp_path, config, said.append)

    split = result.split
    assert split is not None and split.splits == 2
    assert 0 < split.serving["p50"] <= split.serving["max"]
    # Serving is the later of the two new regions' first writes.
    assert split.serving["max"] == max(split.left["max"], split.right["max"])
    assert split.operator["max"] > 0 and split.pause_up_to == 0.5

    (move,) = result.move
    assert move.data_bytes >= 0.25 * (1 << 20) and move.from_store != move.to_store
    assert move.operator_seconds > 0 and move.applied_seconds > 0
    # The new replica was built from a snapshot carrying at least the region's data.
    assert move.snapshot_bytes is not None and move.snapshot_bytes >= move.data_bytes
    assert move.tcp_mib_per_second > 0 and move.lmdb_mib_per_second > 0

    drain = result.drain
    assert drain is not None and drain.regions == 3
    assert drain.replicas == 3 and drain.operators == {"success": 3}
    assert 0 < drain.operator_seconds["p50"] <= drain.operator_seconds["max"]
    assert drain.routes_clear_seconds > 0
    assert drain.tombstone_seconds is not None

    report = format_report(result)
    for heading in ("Split:", "Move:", "Drain:"):
        assert heading in report
    assert json.loads(json.dumps(result.to_json()))["drain"]["store_id"] == drain.store_id
    assert any("split 2/2" in line for line in said)
    assert processes_mentioning(tmp_path) == []


class FakeClient:
    """Puts that succeed (after one transient failure) through whatever region the cache
    holds; after ``applied_after`` puts the split applies and the cache sees the new region."""

    def __init__(self, parent: Region, child: Region, applied_after: int) -> None:
        self.region_cache = RegionCache()
        self.region_cache.insert(RegionRoute(parent, Peer(1, 1)))
        self.child = child
        self.puts = 0
        self.applied_after = applied_after
        self.failed_once = False

    async def put(self, key: bytes, value: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if not self.failed_once:
            self.failed_once = True
            raise RequestTimeout("a transient failure")
        self.puts += 1
        if self.puts == self.applied_after:  # this put found the split applied
            self.region_cache.insert(RegionRoute(self.child, Peer(1, 1)))


async def test_only_a_put_through_a_post_split_region_counts(autojump_clock: Any) -> None:
    parent = Region(4, b"", b"", RegionEpoch(1, 3))
    left = Region(9, b"", b"k", RegionEpoch(1, 4))
    client = FakeClient(parent, left, applied_after=3)
    early = await put_until_new_region(client, b"a", parent)  # type: ignore[arg-type]
    assert (early, client.puts) == (2, 3)  # two puts the parent took, then the new region's


class FakePlacement:
    """``get_operator`` answers the given states of one operator in turn."""

    def __init__(self, states: list[OperatorInfo]) -> None:
        self.states = states

    async def get_operator(self, region_id: int) -> OperatorInfo:
        await trio.lowlevel.checkpoint()
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def list_operators(self) -> list[OperatorInfo]:
        return []


async def test_wait_operator_needs_success(autojump_clock: Any) -> None:
    running = OperatorInfo(4, "move-peer", "move", "running", 0, [], 12.5)
    done = replace(running, status="success", step_index=4, finished_at=20.0)
    pd = FakePlacement([running, running, done])
    assert await wait_operator(pd, running) == done  # type: ignore[arg-type]
    pd = FakePlacement([running, replace(running, status="timeout", step_index=1)])
    with pytest.raises(BenchError, match="ended timeout at step 1"):
        await wait_operator(pd, running)  # type: ignore[arg-type]
    other = replace(running, created_at=99.0)  # a later operator of the same region
    with pytest.raises(BenchError, match="lost the move-peer operator"):
        await wait_operator(FakePlacement([other]), running)  # type: ignore[arg-type]


async def test_copy_rates_move_the_bytes_asked(tmp_path: Path) -> None:
    tcp = await loopback_tcp_rate(3 << 20, chunk=100_000)
    assert tcp.bytes == 3 << 20 and tcp.seconds > 0
    disk = await lmdb_write_rate(1000, 16, 100, transactions=3, directory=tmp_path)
    assert disk.bytes == 1000 * 116 and disk.seconds > 0
    assert list(await trio.Path(tmp_path).iterdir()) == []  # the temporary environment is gone


def test_settings_are_read_as_toml_values() -> None:
    got = parse_settings(["region-heartbeat-interval=0.5", "sync=false", "x=abc", "n=3"], "store")
    assert got == {"region_heartbeat_interval": 0.5, "sync": False, "x": "abc", "n": 3}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["nokey"], "store")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "bogus"], "--only takes split, move, drain; got bogus"),
        (["--move-mib", "ten"], "bad --move-mib 'ten'"),
        (["--move-mib", "0"], "--move-mib takes sizes in (0, 4096] MiB"),
        (["--stores", "3"], "--stores must be at least 4"),
        (["--store-setting", "nope=1"], "unknown setting 'nope' in [store]"),
        (["--placement-setting", "schedule_store_limit=0"], "schedule_store_limit must be"),
    ],
)
def test_bad_options_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    res = CliRunner().invoke(app, ["bench", "regions", "--data-dir", str(tmp_path / "d"), *args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and message in res.output
    assert res.output.count("\n") == 1 and "Traceback" not in res.output
    assert not (tmp_path / "d").exists()  # nothing started, nothing created


def test_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("x")
    res = CliRunner().invoke(app, ["bench", "regions", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "is not an empty directory" in res.output
