"""The placement service's operator controller, driven by a simulated cluster (time passed in)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from multiraft.cli.main import app
from multiraft.metrics.placement import PlacementMetrics
from multiraft.placement.client import PlacementClient
from multiraft.placement.cluster import Cluster
from multiraft.placement.cluster_meta import ClusterMeta
from multiraft.placement.errors import PlacementRequestError
from multiraft.placement.main import PlacementEndpoints, run_placement
from multiraft.placement.scheduler import OperatorController, SchedulerConfig
from multiraft.settings import ConfigError, PlacementConfig
from multiraft.wire.placement_messages import (
    ManualOperator,
    PlacementErrorCode,
    RegionHeartbeat,
    StoreInfo,
    StoreStats,
)
from regions.region import Region, RegionEpoch
from regions.scheduling import (
    AddLearner,
    OperatorError,
    OperatorKind,
    OperatorStatus,
    OperatorTimeouts,
    SplitRegion,
    StoreState,
    TransferLeader,
    make_transfer_leader,
)
from tests.regions.cluster_sim import SimCluster


def _unbalanced(n_regions: int = 6) -> SimCluster:
    sim = SimCluster()
    for sid in (1, 2, 3, 4, 5):
        sim.add_store(sid)
    for rid in range(1, n_regions + 1):
        sim.add_region(rid, [1, 2, 3], leader=1, size=10)
    return sim


def _drive(sim: SimCluster, ctl: OperatorController, now: float) -> None:
    """Deliver heartbeats and apply the returned steps until no operator runs."""
    for _ in range(100):
        if not ctl.running():
            return
        for op in ctl.running():
            rid = op.region_id
            step = ctl.on_region_heartbeat(sim.regions[rid], sim.leader_peer(rid), now)
            if step is not None:
                sim.apply_step(rid, step)
    raise AssertionError("operators never finished")


def test_creates_balance_operators_when_unbalanced() -> None:
    sim = _unbalanced()
    ctl = OperatorController(SchedulerConfig(store_limit=2))
    made = ctl.tick(sim.snapshot(), 0.0, sim.alloc_id)
    assert made
    kinds = {op.kind for op in made}
    assert kinds & {OperatorKind.TRANSFER_LEADER, OperatorKind.MOVE_PEER}


def test_respects_store_limit_and_one_per_region() -> None:
    sim = _unbalanced(12)
    ctl = OperatorController(SchedulerConfig(store_limit=2, max_operators_per_tick=10))
    ctl.tick(sim.snapshot(), 0.0, sim.alloc_id)
    ctl.tick(sim.snapshot(), 1.0, sim.alloc_id)
    assert all(n <= 2 for n in ctl.store_load().values())
    regions = [op.region_id for op in ctl.running()]
    assert len(regions) == len(set(regions))


def test_advances_on_heartbeats_until_balanced() -> None:
    sim = _unbalanced()
    ctl = OperatorController(SchedulerConfig(store_limit=3))
    for t in range(30):
        ctl.tick(sim.snapshot(), float(t), sim.alloc_id)
        _drive(sim, ctl, float(t))
    assert ctl.history()
    assert all(f.status == OperatorStatus.SUCCESS for f in ctl.history())
    counts = sim.snapshot().stats
    regions = [counts[s].region_count for s in (1, 2, 3, 4, 5)]
    leaders = [counts[s].leader_count for s in (1, 2, 3, 4, 5)]
    assert max(regions) - min(regions) <= 1
    assert max(leaders) - min(leaders) <= 1


def test_disabled_creates_nothing() -> None:
    sim = _unbalanced()
    ctl = OperatorController(SchedulerConfig(enabled=False))
    assert ctl.tick(sim.snapshot(), 0.0, sim.alloc_id) == []


def test_times_out() -> None:
    sim = _unbalanced()
    timeouts = OperatorTimeouts(fast_step=5.0, slow_step=10.0)
    ctl = OperatorController(SchedulerConfig(timeouts=timeouts))
    made = ctl.tick(sim.snapshot(), 0.0, sim.alloc_id)
    assert made
    ctl.tick(sim.snapshot(), 1000.0, sim.alloc_id)
    statuses = {f.status for f in ctl.history()}
    assert statuses == {OperatorStatus.TIMEOUT}
    assert {f.operator for f in ctl.history()} >= set(made)


def test_stale_on_unexpected_epoch_change() -> None:
    sim = _unbalanced(1)
    ctl = OperatorController()
    op = make_transfer_leader(sim.regions[1], 1, 2, now=0.0)
    ctl.add(op, 0.0)
    region = sim.regions[1]
    changed = type(region)(region.id, region.start_key, region.end_key,
                           RegionEpoch(region.epoch.conf_ver, region.epoch.version + 1),
                           list(region.peers))  # fmt: skip
    assert ctl.on_region_heartbeat(changed, sim.leader_peer(1), 1.0) is None
    assert ctl.running() == []
    assert ctl.history()[-1].status == OperatorStatus.STALE
    assert ctl.get(1) is op


def test_down_store_replicas_get_replaced() -> None:
    sim = SimCluster()
    for sid in (1, 2, 3, 4):
        sim.add_store(sid)
    sim.add_region(1, [1, 2, 3], leader=1)
    sim.add_store(3, StoreState.UP, silent=100.0)
    ctl = OperatorController(SchedulerConfig(max_store_down_seconds=60.0))
    made = ctl.tick(sim.snapshot(), 0.0, sim.alloc_id)
    assert [op.region_id for op in made] == [1]
    _drive(sim, ctl, 1.0)
    assert sim.voter_stores(1) == {1, 2, 4}


def test_cancel_and_manual_add() -> None:
    sim = _unbalanced(1)
    registry = CollectorRegistry()
    ctl = OperatorController(metrics=PlacementMetrics(registry))
    op = make_transfer_leader(sim.regions[1], 1, 2, now=0.0)
    ctl.add(op, 0.0)
    with pytest.raises(OperatorError):
        ctl.add(make_transfer_leader(sim.regions[1], 1, 3, now=0.0), 0.0)
    assert ctl.on_region_heartbeat(sim.regions[1], sim.leader_peer(1), 0.5) is op.steps[0]
    assert ctl.cancel(1, 1.0) is op
    assert ctl.cancel(1, 1.0) is None
    assert op.status == OperatorStatus.CANCELED
    assert ctl.on_region_heartbeat(sim.regions[1], sim.leader_peer(1), 2.0) is None
    value = registry.get_sample_value(
        "multiraft_placement_operators_total", {"type": "transfer-leader", "result": "cancelled"}
    )
    assert value == 1.0


def test_manual_add_respects_store_limit() -> None:
    sim = _unbalanced(3)
    ctl = OperatorController(SchedulerConfig(store_limit=1))
    ctl.add(make_transfer_leader(sim.regions[1], 1, 2, now=0.0), 0.0)
    with pytest.raises(OperatorError, match="limit"):
        ctl.add(make_transfer_leader(sim.regions[2], 1, 3, now=0.0), 0.0)


def test_history_is_bounded() -> None:
    sim = _unbalanced(5)
    ctl = OperatorController(SchedulerConfig(history_size=2, store_limit=10))
    for rid in range(1, 6):
        ctl.add(make_transfer_leader(sim.regions[rid], 1, 2, now=0.0), 0.0)
        ctl.cancel(rid, 1.0)
    assert [f.region_id for f in ctl.history()] == [4, 5]


# -- the service and the client, over a real socket -----------------------------------------


@asynccontextmanager
async def _service(data_dir: Path) -> AsyncIterator[PlacementEndpoints]:
    config = PlacementConfig(
        listen="127.0.0.1:0", metrics_listen="", data_dir=data_dir, schedule_enabled=False
    )
    async with trio.open_nursery() as nursery:
        ep: PlacementEndpoints = await nursery.start(
            lambda task_status: run_placement(
                config, registry=CollectorRegistry(), task_status=task_status
            )
        )
        yield ep
        nursery.cancel_scope.cancel()


async def _bootstrapped(pd: PlacementClient, n: int = 4) -> tuple[list[int], Region]:
    stores = []
    for i in range(n):
        sid = (await pd.alloc_ids(1)).first
        await pd.put_store(StoreInfo(sid, f"127.0.0.1:{23000 + i}"))
        stores.append(sid)
    for sid in stores:
        reply = await pd.store_heartbeat(StoreStats(sid))
        if reply.bootstrap_regions:
            first = reply.bootstrap_regions[0]
    await pd.region_heartbeat(first, first.peers[0], 1)
    return stores, first


async def test_service_answers_operator_requests(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with _service(tmp_path) as ep, PlacementClient(ep.address) as pd:
            stores, first = await _bootstrapped(pd)
            assert await pd.list_operators() == []
            assert await pd.get_operator(first.id) is None
            target = first.peers[1].store_id
            info = await pd.add_operator(ManualOperator.TransferLeader, first.id, to_store=target)
            assert (info.kind, info.status, info.step_index) == ("transfer-leader", "running", 0)
            with pytest.raises(PlacementRequestError) as err:  # one operator per region
                await pd.add_operator(ManualOperator.SplitRegion, first.id)
            assert err.value.code == PlacementErrorCode.InvalidArgument

            reply = await pd.region_heartbeat(first, first.peers[0], 1)
            assert isinstance(reply.operator_step, TransferLeader)
            assert reply.operator_step.epoch == first.epoch
            assert reply.operator_step.to_store == target
            assert [o.region_id for o in await pd.list_operators()] == [first.id]

            reply = await pd.region_heartbeat(first, first.peers[1], 2)  # the step is done
            assert reply.operator_step is None
            done = await pd.get_operator(first.id)
            assert done is not None and done.status == "success" and done.finished_at is not None

            spare = next(s for s in stores if first.peer_on_store(s) is None)
            move = await pd.add_operator(
                ManualOperator.MovePeer,
                first.id,
                from_store=first.peers[2].store_id,
                to_store=spare,
            )
            assert move.kind == "move-peer" and len(move.steps) >= 4
            reply = await pd.region_heartbeat(first, first.peers[1], 2)
            assert isinstance(reply.operator_step, AddLearner)
            assert reply.operator_step.peer.store_id == spare
            cancelled = await pd.cancel_operator(first.id)
            assert cancelled.status == "canceled"
            with pytest.raises(PlacementRequestError) as err:
                await pd.cancel_operator(first.id)
            assert err.value.code == PlacementErrorCode.RegionNotFound
            reply = await pd.region_heartbeat(first, first.peers[1], 2)
            assert reply.operator_step is None

            with pytest.raises(PlacementRequestError) as err:
                await pd.add_operator(ManualOperator.TransferLeader, 999_999, to_store=target)
            assert err.value.code == PlacementErrorCode.RegionNotFound
            split = await pd.add_operator(ManualOperator.SplitRegion, first.id, split_key=b"m")
            assert isinstance(split.steps[0], SplitRegion) and split.steps[0].keys == (b"m",)
            statuses = [o.status for o in await pd.list_operators()]
            assert statuses == ["running", "canceled", "success"]


async def test_cluster_schedule_tick_replaces_a_down_store(tmp_path: Path) -> None:
    now = [0.0]
    meta = ClusterMeta.open(tmp_path, sync=False)
    cluster = Cluster(
        meta,
        bootstrap_replicas=3,
        clock=lambda: now[0],
        scheduler=SchedulerConfig(max_store_down_seconds=60.0),
    )
    try:
        stores = []
        for i in range(4):
            sid = (await cluster.alloc_ids(1)).first
            await cluster.put_store(StoreInfo(sid, f"127.0.0.1:{24000 + i}"))
            stores.append(sid)
        found: list[Region] = []
        for sid in stores:
            found += (await cluster.store_heartbeat(StoreStats(sid))).bootstrap_regions
        first = found[0]
        await cluster.region_heartbeat(RegionHeartbeat(first, first.peers[0], 1))
        assert await cluster.schedule_tick() == []  # healthy: nothing to do
        now[0] = 100.0  # only the leader's store and the spare keep heartbeating
        spare = next(s for s in stores if first.peer_on_store(s) is None)
        for sid in (first.peers[0].store_id, first.peers[1].store_id, spare):
            await cluster.store_heartbeat(StoreStats(sid))
        made = await cluster.schedule_tick()
        assert [op.region_id for op in made] == [first.id]
        assert spare in made[0].store_ids()
        step = await cluster.region_heartbeat(RegionHeartbeat(first, first.peers[0], 1))
        assert isinstance(step, AddLearner) and step.peer.store_id == spare
    finally:
        cluster.close()


# -- the CLI ----------------------------------------------------------------------------------


@contextmanager
def _service_in_thread(data_dir: Path) -> Iterator[PlacementEndpoints]:
    started: queue.Queue[tuple[PlacementEndpoints, trio.lowlevel.TrioToken, trio.CancelScope]]
    started = queue.Queue()

    async def main() -> None:
        async with _service(data_dir) as ep:
            with trio.CancelScope() as scope:
                started.put((ep, trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    ep, token, scope = started.get(timeout=10)
    try:
        yield ep
    finally:
        token.run_sync_soon(scope.cancel)
        thread.join(10)


def test_operator_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    with _service_in_thread(tmp_path / "pd") as ep:

        async def setup() -> int:
            async with PlacementClient(ep.address) as pd:
                _, first = await _bootstrapped(pd)
                await pd.add_operator(
                    ManualOperator.TransferLeader, first.id, to_store=first.peers[1].store_id
                )
                return first.id

        rid = trio.run(setup)
        base = ["--placement", ep.address]
        result = runner.invoke(app, ["operator", "list", *base])
        assert result.exit_code == 0, result.output
        assert "transfer-leader" in result.output and "running" in result.output
        result = runner.invoke(app, ["operator", "list", "--json", *base])
        assert result.exit_code == 0, result.output
        [row] = json.loads(result.output)
        assert row["region_id"] == rid and row["progress"] == {"done": 0, "total": 1}
        result = runner.invoke(app, ["operator", "show", str(rid), *base])
        assert result.exit_code == 0 and "transfer leader" in result.output
        result = runner.invoke(app, ["operator", "cancel", str(rid), *base])
        assert result.exit_code == 0 and "cancelled" in result.output
        result = runner.invoke(app, ["operator", "cancel", str(rid), *base])
        assert result.exit_code == 1
        assert result.output.strip().startswith("error:") and len(result.output.splitlines()) == 1
        result = runner.invoke(app, ["operator", "show", "424242", *base])
        assert result.exit_code == 1 and "has no operator" in result.output
    result = runner.invoke(app, ["operator", "list", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no cluster found" in result.output


def test_placement_config_scheduling_knobs() -> None:
    cfg = PlacementConfig.from_mapping(
        {
            "schedule-enabled": False,
            "schedule_interval": 2,
            "schedule_store_limit": 4,
            "max_store_down_seconds": 90,
        }
    )
    assert cfg.schedule_enabled is False and cfg.schedule_interval == 2.0
    assert cfg.schedule_store_limit == 4 and cfg.max_store_down_seconds == 90.0
    assert PlacementConfig().max_store_down_seconds == 1800.0
    for bad in (
        {"schedule_enabled": "yes"},
        {"schedule_interval": "1s"},
        {"schedule_interval": 0},
        {"schedule_store_limit": 0},
        {"max_store_down_seconds": -1},
    ):
        with pytest.raises(ConfigError):
            PlacementConfig.from_mapping(bad)


def test_in_progress_gauge_follows_operators() -> None:
    sim = _unbalanced(2)
    registry = CollectorRegistry()
    ctl = OperatorController(metrics=PlacementMetrics(registry))

    def gauge() -> float | None:
        return registry.get_sample_value(
            "multiraft_placement_operators_in_progress", {"type": "transfer-leader"}
        )

    ctl.add(make_transfer_leader(sim.regions[1], 1, 2, now=0.0), 0.0)
    assert gauge() == 1.0
    _drive(sim, ctl, 1.0)
    assert gauge() == 0.0
    done = registry.get_sample_value(
        "multiraft_placement_operators_total", {"type": "transfer-leader", "result": "success"}
    )
    assert done == 1.0
