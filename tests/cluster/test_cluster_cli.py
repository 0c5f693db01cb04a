"""``multiraft cluster up|status|down`` as a user runs them: real commands in subprocesses, a
real cluster in a temporary data directory, and the ``kv`` commands finding it there."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from multiraft.cli.main import app
from multiraft.cluster import supervisor

#: No cluster address may leak in from the environment of the test run.
_ENV = {
    k: v for k, v in os.environ.items() if k not in ("MULTIRAFT_PLACEMENT", "MULTIRAFT_DATA_DIR")
}


class LocalClusterDir:
    """A data directory for ``cluster up``; remembers every pid it saw, to kill them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pids: set[tuple[int, str]] = set()

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``multiraft ARGS --data-dir ROOT`` in a subprocess."""
        proc = subprocess.run(
            [sys.executable, "-m", "multiraft", *args, "--data-dir", str(self.root)],
            capture_output=True, text=True, timeout=timeout, env=_ENV, cwd=self.root.parent,
        )  # fmt: skip
        self.remember()
        return proc

    def file(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "cluster.json").read_text())
        return data

    def remember(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for p in self.file()["processes"]:
                if p["pid"]:
                    self.pids.add((p["pid"], str(self.root / p["data_dir"])))

    def running(self) -> list[int]:
        return [pid for pid, marker in self.pids if supervisor.is_running(pid, marker)]

    def kill_all(self) -> None:
        for pid in self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        supervisor.wait_exited(self.pids, 10.0)

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for log in sorted((self.root / "logs").glob("*.log")):
            out.append(f"--- {log}")
            out.extend(supervisor.tail(log, lines))
        return "\n".join(out)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalClusterDir]:
    d = LocalClusterDir(tmp_path / "data")
    try:
        yield d
    finally:
        with contextlib.suppress(Exception):
            d.run("cluster", "down", "--timeout", "5", timeout=30)
        d.kill_all()


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_up_status_down_up_keeps_data(local: LocalClusterDir) -> None:
    out = _ok(local.run("cluster", "up", "--stores", "3"))
    assert "is up in" in out and "multiraft kv put hello world" in out, out
    first = local.file()
    assert [p["name"] for p in first["processes"]] == ["placement", "store1", "store2", "store3"]
    assert all(p["pid"] for p in first["processes"])
    assert sorted(p["store_id"] for p in first["processes"][1:]) == [1, 2, 3]
    assert first["placement"] == first["processes"][0]["address"]

    assert _ok(local.run("kv", "put", "greeting", "hello")) == "OK\n"
    assert _ok(local.run("kv", "get", "greeting")) == "hello\n"

    # A second `up` finds it running and changes nothing.
    out = _ok(local.run("cluster", "up"))
    assert "already running" in out, out
    assert local.file() == first

    status = json.loads(_ok(local.run("cluster", "status", "--json")))
    assert status["state"] == "running" and status["error"] is None, status
    assert [p["running"] for p in status["processes"]] == [True] * 4
    assert len(status["stores"]) == 3 and all(s["serving"] for s in status["stores"]), status
    assert [s["region_count"] for s in status["stores"]] == [1, 1, 1], status
    assert len(status["regions"]) == 1
    text = _ok(local.run("cluster", "status"))
    assert "running (4 of 4 processes running)" in text, text

    out = _ok(local.run("cluster", "down"))
    assert "is down" in out, out
    assert local.running() == [], "processes survived `cluster down`"
    assert [p["pid"] for p in local.file()["processes"]] == [None] * 4
    stopped = local.run("cluster", "status")
    assert stopped.returncode == 3 and "stopped (0 of 4" in stopped.stdout, stopped

    # Up again: same processes, same ports (free again), same data.
    out = _ok(local.run("cluster", "up"))
    again = local.file()
    if "note:" not in out:  # a port taken meanwhile by someone else would move (with a note)
        assert [p["address"] for p in again["processes"]] == [
            p["address"] for p in first["processes"]
        ]
    assert again["cluster_id"] == first["cluster_id"]
    assert [p["store_id"] for p in again["processes"]] == [
        p["store_id"] for p in first["processes"]
    ]
    assert _ok(local.run("kv", "get", "greeting")) == "hello\n"
    _ok(local.run("cluster", "down"))
    assert local.running() == []


# -- errors (no processes are started) ---------------------------------------------------------


def _invoke(*args: str) -> Any:
    return CliRunner(env={"MULTIRAFT_PLACEMENT": None, "MULTIRAFT_DATA_DIR": None}).invoke(
        app, list(args)
    )


def _one_line_error(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return str(lines[0])


def test_status_and_down_without_a_cluster(tmp_path: Path) -> None:
    for cmd in ("status", "down"):
        r = _invoke("cluster", cmd, "--data-dir", str(tmp_path / "none"))
        assert r.exit_code == 1
        assert "no cluster in" in _one_line_error(r)
    assert not (tmp_path / "none").exists()


def test_up_refuses_bad_arguments(tmp_path: Path) -> None:
    r = _invoke("cluster", "up", "--stores", "0", "--data-dir", str(tmp_path / "a"))
    assert r.exit_code == 2
    r = _invoke("cluster", "up", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "a"))
    assert r.exit_code == 1 and "wildcard" in _one_line_error(r)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    r = _invoke("cluster", "up", "--data-dir", str(busy))
    assert r.exit_code == 1 and "not empty" in _one_line_error(r)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cluster.json").write_text("{not json")
    r = _invoke("cluster", "status", "--data-dir", str(tmp_path / "bad"))
    assert r.exit_code == 1 and "not valid JSON" in _one_line_error(r)
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_a_drained_store_is_retired_and_up_leaves_it_out(local: LocalClusterDir) -> None:
    """``store drain`` empties a store and placement retires it; the store then stops by itself,
    and a later ``cluster up`` says so instead of failing on a store that can never rejoin."""
    _ok(local.run("cluster", "up", "--stores", "4", "--no-schedule"))
    assert _ok(local.run("kv", "put", "kept", "yes")) == "OK\n"
    stores = json.loads(_ok(local.run("store", "list", "--json")))
    region = json.loads(_ok(local.run("region", "list", "--json")))[0]
    holder = region["peers"][0]["store_id"]
    out = _ok(local.run("store", "drain", str(holder)))
    assert "Tombstone" in out, out
    assert len(stores) == 4
    _ok(local.run("cluster", "down"))
    up = local.run("cluster", "up")
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
    assert f"(store {holder}) was drained and removed: not started" in up.stdout + up.stderr
    assert _ok(local.run("kv", "get", "kept")) == "yes\n"
