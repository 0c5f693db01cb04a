"""StoreConfig: TOML loading, type checks and validation messages; the server CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from multiraft.cli.main import app
from multiraft.settings import ConfigError, StoreConfig


def test_defaults_are_valid() -> None:
    cfg = StoreConfig().validate()
    assert cfg.election_timeout_seconds() == pytest.approx(1.0)
    assert cfg.advertise_address(20161) == "127.0.0.1:20161"


def test_from_toml_store_table(tmp_path: Path) -> None:
    f = tmp_path / "store.toml"
    f.write_text(
        '[store]\nstore-listen = "0.0.0.0:20160"\nadvertise = "10.0.0.5:20160"\n'
        'placement = "10.0.0.1:2379"\ndata_dir = "/var/lib/mr"\nraft_tick_interval = 1\n'
        "lease_reads = false\nfault_injection = true\n"
    )
    cfg = StoreConfig.load(f)
    assert cfg.store_listen == "0.0.0.0:20160" and cfg.advertise == "10.0.0.5:20160"
    assert cfg.data_dir == Path("/var/lib/mr") and cfg.raft_tick_interval == 1.0
    assert not cfg.lease_reads and cfg.fault_injection
    assert cfg.advertise_address(1) == "10.0.0.5:20160"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("bogus = 1", "unknown setting 'bogus'"),
        ('election_tick = "10"', "election_tick must be an integer"),
        ("election_tick = true", "election_tick must be an integer"),
        ("raft_tick_interval = true", "raft_tick_interval must be a number"),
        ("lease_reads = 1", "lease_reads must be true or false"),
        ("data_dir = 5", "data_dir must be a string"),
        ('store_listen = "0.0.0.0:20160"', "needs an advertise address"),
        ('placement = "nowhere"', "bad placement address"),
        ("heartbeat_tick = 10", "heartbeat_tick < election_tick"),
        ("max_pending_requests = 0", "max_pending_requests must be positive"),
        ("request_timeout = 0", "request_timeout must be a positive"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        StoreConfig.load(f)


def test_server_start_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["server", "start", "--store-listen", "nonsense"])
    assert res.exit_code == 2
    assert "error: bad store listen address" in res.output, res.output
    assert "Traceback" not in res.output
    missing = tmp_path / "nope.toml"
    res = runner.invoke(app, ["server", "start", "--config", str(missing)])
    assert res.exit_code == 2 and "cannot read config file" in res.output
