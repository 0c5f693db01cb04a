"""Scheduling settings: PlacementConfig, `placement start` options, and the placement.toml that
`cluster up` writes (local-demo defaults, options, hand edits kept)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from multiraft.cli.main import app
from multiraft.cluster.local import ClusterError, LocalCluster
from multiraft.cluster.placement_settings import LOCAL_DEFAULTS, write_placement_config
from multiraft.placement.main import scheduler_config
from multiraft.settings import ConfigError, PlacementConfig
from regions.scheduling import OperatorTimeouts


def test_operator_timeouts_and_down_time_reach_the_scheduler() -> None:
    cfg = PlacementConfig.from_mapping({"placement": {
        "operator-step-seconds": 5, "operator_snapshot_step_seconds": 50,
        "max_store_down_seconds": 20, "schedule_enabled": True, "bootstrap_replicas": 5,
    }})  # fmt: skip
    sc = scheduler_config(cfg)
    assert sc.timeouts == OperatorTimeouts(fast_step=5.0, slow_step=50.0)
    assert (sc.max_store_down_seconds, sc.enabled, sc.max_replicas) == (20.0, True, 5)
    defaults = scheduler_config(PlacementConfig())
    assert defaults.timeouts == OperatorTimeouts(60.0, 600.0) and defaults.enabled
    for bad in ({"operator_step_seconds": 0}, {"operator_snapshot_step_seconds": "1m"},
                {"operator_step_seconds": -3.0}):  # fmt: skip
        with pytest.raises(ConfigError, match="operator_"):
            PlacementConfig.from_mapping(bad)


def test_placement_start_has_the_scheduling_options() -> None:
    wide = CliRunner(env={"COLUMNS": "200"})
    r = wide.invoke(app, ["placement", "start", "--help"])
    assert r.exit_code == 0
    assert "--schedule" in r.output and "--max-store-down-seconds" in r.output
    r = wide.invoke(app, ["cluster", "up", "--help"])
    assert "--schedule" in r.output and "--max-store-down-seconds" in r.output


def test_cluster_up_writes_demo_settings_and_keeps_edits(tmp_path: Path) -> None:
    written = write_placement_config(tmp_path, 1)
    assert written == {**LOCAL_DEFAULTS, "bootstrap_replicas": 1}
    cfg = PlacementConfig.load(tmp_path / "placement.toml")
    assert cfg.max_store_down_seconds == 30.0 and cfg.operator_step_seconds == 30.0
    assert cfg.schedule_enabled is True  # the service's default, unless asked otherwise

    write_placement_config(tmp_path, 3, {"schedule_enabled": True,
                                         "max_store_down_seconds": 12.5})  # fmt: skip
    path = tmp_path / "placement.toml"
    path.write_text(path.read_text() + "schedule-interval = 0.5\n")  # a hand edit
    written = write_placement_config(tmp_path, 5, {"schedule_enabled": None})
    cfg = PlacementConfig.load(path)
    assert (cfg.schedule_enabled, cfg.max_store_down_seconds) == (True, 12.5)  # kept
    assert cfg.schedule_interval == 0.5 and cfg.bootstrap_replicas == 3
    assert written["bootstrap_replicas"] == 3

    with pytest.raises(ConfigError, match=r"placement\.toml"):
        write_placement_config(tmp_path, 3, {"max_store_down_seconds": -1.0})
    assert PlacementConfig.load(path).max_store_down_seconds == 12.5  # left as it was


def test_cluster_up_refuses_bad_settings_before_starting_anything(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c")
    with pytest.raises(ClusterError, match="max_store_down_seconds must be positive"):
        cluster.up(stores=1, placement_settings={"max_store_down_seconds": -5.0})
    assert cluster.load() is None  # no cluster file: nothing was started
