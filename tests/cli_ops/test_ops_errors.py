"""Operations that fail, and CLI misuse: one line on stderr, the exit statuses of
docs/client.md (1 an error, 2 a usage error), never a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import multiraft.cli.operator as operator_cli
from multiraft.cli.main import app
from multiraft.cli.operator import failure_message, step_text
from multiraft.cli.progress import StatusLine, bar
from multiraft.wire.placement_messages import AddOperator, ManualOperator, OperatorInfo
from regions.region import Region, RegionEpoch
from regions.scheduling import SplitRegion, TransferLeader
from tests.cli_ops.ops_harness import OpsCluster, fast_timeouts, ops_cluster

ENV: dict[str, str | None] = {"MULTIRAFT_PLACEMENT": None, "MULTIRAFT_DATA_DIR": None}


def run(oc: OpsCluster, *args: str) -> Result:
    return CliRunner(env=ENV).invoke(app, [*args, "--placement", oc.address])


def one_line_error(r: Result, code: int, *, progress: str = "") -> str:
    """The error line; before it, stderr may only hold progress lines starting ``progress``."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    *before, last = r.stderr.strip().splitlines()
    assert last.startswith("error: "), r.stderr
    assert all(progress and line.startswith(progress) for line in before), r.stderr
    return last


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_cli, "POLL_INTERVAL", 0.01)


@pytest.fixture
def oc(tmp_path: Path) -> Iterator[OpsCluster]:
    with ops_cluster(tmp_path / "pd") as c:
        yield c


def only_region(oc: OpsCluster) -> tuple[Region, int]:
    """The cluster's region and the store of its leader."""
    [region] = oc.call(lambda: list(oc.fake.regions.values()))
    return region, oc.call(lambda: oc.fake.leaders[region.id])


def test_a_busy_region_refuses_another_operator(oc: OpsCluster) -> None:
    region, leader = only_region(oc)
    other = next(p.store_id for p in region.peers if p.store_id != leader)
    busy = AddOperator(ManualOperator.TransferLeader, region.id, to_store=other)
    oc.run(lambda: oc.cluster.handle(busy))  # held: no CLI follows it
    err = one_line_error(run(oc, "region", "split", str(region.id)), 1)
    assert f"region {region.id} already has a running operator; cancel it first" in err
    r = run(oc, "operator", "list", "--json")
    assert [o["status"] for o in json.loads(r.stdout)] == ["running"]


def test_a_cancelled_operator_is_an_error(oc: OpsCluster) -> None:
    region, leader = only_region(oc)
    other = next(p.store_id for p in region.peers if p.store_id != leader)
    oc.call(lambda: oc.cancel_regions.add(region.id))
    r = run(oc, "region", "transfer-leader", str(region.id), "--to", str(other))
    err = one_line_error(r, 1, progress=f"region {region.id}: transfer-leader 1/1")
    assert err.startswith(f"error: region {region.id}: transfer-leader (admin) was cancelled "
                          "at step 1/1 transfer leader")  # fmt: skip
    assert r.stdout == ""


def test_a_stale_operator_is_an_error(oc: OpsCluster) -> None:
    region, leader = only_region(oc)
    follower = next(p.store_id for p in region.peers if p.store_id != leader)
    spare = next(s for s in oc.stores if region.peer_on_store(s) is None)
    oc.call(lambda: oc.stale_regions.add(region.id))
    r = run(oc, "region", "move", str(region.id), "--from", str(follower), "--to", str(spare))
    err = one_line_error(r, 1, progress=f"region {region.id}: move-peer 1/4")
    assert f"region {region.id}: move-peer (admin) became stale at step 1/4 add learner" in err
    assert "the region changed under it" in err


def test_an_operator_that_times_out_is_an_error(tmp_path: Path) -> None:
    with ops_cluster(tmp_path, timeouts=fast_timeouts(0.2)) as oc:
        region, leader = only_region(oc)
        other = next(p.store_id for p in region.peers if p.store_id != leader)
        oc.call(lambda: oc.fake.frozen.add(region.id))
        r = run(oc, "region", "transfer-leader", str(region.id), "--to", str(other))
        err = one_line_error(r, 1, progress=f"region {region.id}: transfer-leader 1/1")
        assert f"region {region.id}: transfer-leader (admin) timed out at step 1/1" in err
        assert "the store did not finish the step in time" in err


def test_following_gives_up_after_timeout_but_the_operator_goes_on(oc: OpsCluster) -> None:
    region, leader = only_region(oc)
    other = next(p.store_id for p in region.peers if p.store_id != leader)
    oc.call(lambda: oc.fake.frozen.add(region.id))
    r = run(oc, "region", "transfer-leader", str(region.id), "--to", str(other),
            "--timeout", "0.2")  # fmt: skip
    err = one_line_error(r, 1, progress=f"region {region.id}: transfer-leader 1/1")
    assert f"transfer-leader still running at step 1/1 transfer leader from store {leader}" in err
    assert "after 0.2 s; it goes on" in err
    r = run(oc, "operator", "show", str(region.id), "--json")
    assert json.loads(r.stdout)["status"] == "running"


def test_no_wait_returns_once_started(oc: OpsCluster) -> None:
    region, leader = only_region(oc)
    other = next(p.store_id for p in region.peers if p.store_id != leader)
    r = run(oc, "region", "transfer-leader", str(region.id), "--to", str(other), "--no-wait")
    assert r.exit_code == 0, r.output
    assert r.stdout == (f"started transfer-leader on region {region.id} (1 step(s)); follow "
                        f"it with `multiraft operator show {region.id}`\n")  # fmt: skip
    assert r.stderr == ""


def test_misuse_is_one_line(oc: OpsCluster) -> None:
    region, leader = only_region(oc)
    rid = str(region.id)
    follower = str(next(p.store_id for p in region.peers if p.store_id != leader))
    for args in (("region", "show", "4242"), ("region", "split", "4242"),
                 ("region", "move", "4242", "--from", "1", "--to", "2"),
                 ("region", "transfer-leader", "4242", "--to", "2")):  # fmt: skip
        assert "region 4242 not found" in one_line_error(run(oc, *args), 1), args
    for args in (("region", "move", rid, "--from", follower, "--to", "999"),
                 ("store", "show", "999"), ("store", "drain", "999")):  # fmt: skip
        assert "store 999 is not registered" in one_line_error(run(oc, *args), 1), args
    err = one_line_error(run(oc, "region", "move", rid, "--from", "7", "--to", "7"), 2)
    assert "--from and --to are the same store (7)" in err
    assert "--from STORE is required" in one_line_error(
        run(oc, "region", "move", rid, "--to", "7"), 2)  # fmt: skip
    assert "--to STORE is required" in one_line_error(
        run(oc, "region", "transfer-leader", rid), 2)  # fmt: skip
    assert "--key must not be empty" in one_line_error(
        run(oc, "region", "split", rid, "--key", ""), 2)  # fmt: skip
    assert "bad hex key" in one_line_error(
        run(oc, "region", "split", rid, "--key", "zz", "--hex"), 2)  # fmt: skip
    err = one_line_error(run(oc, "region", "transfer-leader", rid, "--to", str(leader)), 1)
    assert f"store {leader} already leads" in err


def test_a_drain_that_would_leave_too_few_stores_is_refused(tmp_path: Path) -> None:
    with ops_cluster(tmp_path, stores=3) as oc:
        s = oc.stores[0]
        err = one_line_error(run(oc, "store", "drain", str(s)), 1)
        assert f"cannot drain store {s}: regions keep 3 replicas, and only 2 other" in err
        r = run(oc, "store", "show", str(s), "--json")
        assert json.loads(r.stdout)["state"] == "Up"


# -- the pieces, without a cluster -------------------------------------------------------------


def _op(status: str, step_index: int, finished: float | None = 12.5) -> OperatorInfo:
    epoch = RegionEpoch(1, 1)
    steps = [TransferLeader(epoch, 1, 2), SplitRegion(epoch, (b"k",))]
    return OperatorInfo(7, "move-peer", "", status, step_index, list(steps), 10.0, finished)


def test_step_text_and_failure_messages() -> None:
    assert step_text(_op("running", 1)) == "2/2 split region at b'k'"
    assert step_text(_op("success", 2)) == "2/2 split region at b'k'"  # past the end: the last
    assert failure_message(_op("timeout", 0)) == (
        "region 7: move-peer (admin) timed out at step 1/2 transfer leader from store 1 to "
        "store 2 after 2.5 s: the store did not finish the step in time"
    )
    assert failure_message(_op("canceled", 1)).startswith(
        "region 7: move-peer (admin) was cancelled at step 2/2"
    )
    assert "became stale at step 1/2" in failure_message(_op("stale", 0, None))


def test_status_line_on_a_terminal_and_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    with StatusLine(tty=False) as line:
        line.update("step 1", "0s")
        line.update("step 1", "1s")  # same status: not repeated
        line.update("step 2", "2s")
    assert capsys.readouterr().err == "step 1\nstep 2\n"
    with StatusLine(tty=True) as line:
        line.update("step one", "0s")
        line.update("step one", "1s")
        line.update("step 2")
    assert capsys.readouterr().err == "\rstep one  0s\rstep one  1s\rstep 2      \n"
    assert bar(1, 4, width=8) == "[##------]"
    assert bar(9, 4, width=4) == "[####]" and bar(0, 0, width=2) == "[##]"
