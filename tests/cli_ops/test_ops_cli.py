"""``multiraft region show|split|move|transfer-leader`` and ``store show|drain`` end to end:
the CLI (typer's CliRunner) against a real placement service with fake stores that execute
the steps (:mod:`tests.cli_ops.ops_harness`), progress lines and final tables included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import multiraft.cli.operator as operator_cli
import multiraft.cli.region as region_cli
import multiraft.cli.store as store_cli
from multiraft.cli.main import app
from multiraft.cli.progress import bar
from regions.region import Region
from tests.cli_ops.ops_harness import OpsCluster, ops_cluster

ENV: dict[str, str | None] = {"MULTIRAFT_PLACEMENT": None, "MULTIRAFT_DATA_DIR": None}


def run(oc: OpsCluster, *args: str) -> Result:
    return CliRunner(env=ENV).invoke(app, [*args, "--placement", oc.address])


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (operator_cli, region_cli, store_cli):
        monkeypatch.setattr(module, "POLL_INTERVAL", 0.01)


@pytest.fixture
def oc(tmp_path: Path) -> Iterator[OpsCluster]:
    with ops_cluster(tmp_path / "pd") as c:
        yield c


def regions(oc: OpsCluster) -> dict[int, Region]:
    return oc.call(lambda: dict(oc.fake.regions))


def leader_of(oc: OpsCluster, rid: int) -> int:
    return oc.call(lambda: oc.fake.leaders[rid])


def only_region(oc: OpsCluster) -> Region:
    [region] = regions(oc).values()
    return region


def test_region_show_text_and_json(oc: OpsCluster) -> None:
    region = only_region(oc)
    leader = leader_of(oc, region.id)
    r = run(oc, "region", "show", str(region.id))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    epoch = region.epoch
    assert lines[0] == (f"region {region.id}  [(min), (max))  epoch conf_ver {epoch.conf_ver}, "
                        f"version {epoch.version}")  # fmt: skip
    assert lines[1].startswith("approximate size 0 B, 0 keys (leader report ")
    assert lines[2].split() == ["PEER", "STORE", "ROLE", "LEADER", "HEALTH"]
    rows = [line.split() for line in lines[3:6]]
    assert rows == [
        [str(p.id), str(p.store_id), "Voter", *(["*"] if p.store_id == leader else []), "ok"]
        for p in region.peers
    ]
    assert lines[6:] == ["operator: none"]

    r = run(oc, "region", "show", str(region.id), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert (d["id"], d["start_key"], d["end_key"]) == (region.id, "", "")
    assert d["leader"]["store_id"] == leader and len(d["peers"]) == 3
    assert d["operator"] is None and d["pending_peers"] == [] and d["down_peers"] == []
    assert d["heartbeat_age_seconds"] >= 0


def test_split_at_a_key_then_in_the_middle(oc: OpsCluster) -> None:
    rid = only_region(oc).id
    r = run(oc, "region", "split", str(rid), "--key", "m")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [f"region {rid}: split-region 1/1 split region at b'm'"]
    out = r.stdout.splitlines()
    assert out[0] == f"region {rid} split; the regions covering its old range:"
    assert out[1].split()[:3] == ["ID", "START", "END"]
    rows = [line.split() for line in out[2:]]
    assert [(row[1], row[2]) for row in rows] == [("(min)", "m"), ("m", "(max)")]
    assert rows[1][0] == str(rid)  # the right part keeps the id
    assert sorted(regions(oc)) == sorted(int(row[0]) for row in rows)

    # No key: the store picks the middle of [m, max); JSON with hex keys this time.
    r = run(oc, "region", "split", str(rid), "--json", "--hex")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [f"region {rid}: split-region 1/1 split region in half"]
    left, right = json.loads(r.stdout)
    assert left["start_key"] == b"m".hex() and right["end_key"] == ""
    assert left["end_key"] == right["start_key"] and bytes.fromhex(left["end_key"]) > b"m"
    assert right["id"] == rid and right["epoch"]["version"] == 3


def test_move_a_follower_then_the_leader(oc: OpsCluster) -> None:
    region = only_region(oc)
    rid, leader = region.id, leader_of(oc, region.id)
    follower = next(p.store_id for p in region.peers if p.store_id != leader)
    spare = next(s for s in oc.stores if region.peer_on_store(s) is None)
    r = run(oc, "region", "move", str(rid), "--from", str(follower), "--to", str(spare))
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert [line.split()[3] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(line.startswith(f"region {rid}: move-peer ") for line in lines)
    assert "add learner" in lines[0] and lines[0].endswith(f"on store {spare}")
    assert "enter joint" in lines[1] and "leave joint" in lines[2]
    assert "remove peer" in lines[3] and lines[3].endswith(f"on store {follower}")
    out = r.stdout.splitlines()
    assert out[0] == f"region {rid} moved from store {follower} to store {spare}:"
    row = out[2].split()
    stores = {int(p.split("@")[1]) for p in row[4].split(",")}
    assert stores == {s for s in (p.store_id for p in region.peers) if s != follower} | {spare}

    # The leader's replica: the leadership goes to another voter first.
    r = run(oc, "region", "move", str(rid), "--from", str(leader), "--to", str(follower),
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert [line.split()[3] for line in lines] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert "transfer leader from store" in lines[1]
    d = json.loads(r.stdout)
    assert leader not in {p["store_id"] for p in d["peers"]}
    assert d["leader"]["store_id"] != leader
    moved = regions(oc)[rid]
    assert moved.peer_on_store(follower) is not None and moved.peer_on_store(leader) is None


def test_transfer_leader(oc: OpsCluster) -> None:
    region = only_region(oc)
    rid, leader = region.id, leader_of(oc, region.id)
    target = next(p for p in region.peers if p.store_id != leader)
    r = run(oc, "region", "transfer-leader", str(rid), "--to", str(target.store_id))
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [
        f"region {rid}: transfer-leader 1/1 transfer leader from store {leader} to store "
        f"{target.store_id}"
    ]
    assert r.stdout == (f"region {rid}: the leader is now peer {target.id} on store "
                        f"{target.store_id}\n")  # fmt: skip
    assert leader_of(oc, rid) == target.store_id
    r = run(oc, "region", "transfer-leader", str(rid), "--to", str(leader), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["leader"]["store_id"] == leader


def test_store_show_and_drain(oc: OpsCluster) -> None:
    region = only_region(oc)
    for key in ("g", "p"):
        r = run(oc, "region", "split", str(region.id), "--key", key)
        assert r.exit_code == 0, r.output
    drained = leader_of(oc, region.id)  # it leads all three regions
    spare = next(s for s in oc.stores if region.peer_on_store(s) is None)

    r = run(oc, "store", "show", str(drained))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"store {drained}"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert fields["address"] == f"127.0.0.1:{30000 + drained}" and fields["version"] == "test"
    assert fields["state"].startswith("Up (heartbeat ")
    assert fields["regions"] == "3" and fields["leaders"] == "3"  # no sizes reported
    assert fields["scores"].endswith("leader 3")
    assert fields["reported"] == "3 regions, 3 leaders"
    assert fields["capacity"] == "not reported"
    r = run(oc, "store", "show", str(spare), "--json")
    d = json.loads(r.stdout)
    assert (d["id"], d["state"], d["liveness"], d["region_count"]) == (spare, "Up", "up", 0)
    assert d["reported"]["region_count"] == 0 and d["region_score"] == 0

    r = run(oc, "store", "drain", str(drained))
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert lines[:3] == [
        f"store {drained}: {bar(0, 3)} 0/3 replicas moved, 3 left",
        f"store {drained}: {bar(1, 3)} 1/3 replicas moved, 2 left",
        f"store {drained}: {bar(2, 3)} 2/3 replicas moved, 1 left",
    ]
    assert lines[3:] in ([], [f"store {drained}: all replicas moved; waiting for it to confirm "
                              "it holds none"])  # fmt: skip
    out = r.stdout.splitlines()
    assert out[0] == f"store {drained} is drained and removed (Tombstone):"
    table = {int(line.split()[0]): line.split() for line in out[2:]}
    assert table[drained][2:5] == ["Tombstone", "0", "0"]
    assert table[spare][2:4] == ["Up", "3"]
    r = run(oc, "store", "show", str(drained))
    assert "Tombstone (drained and removed)" in r.stdout


def test_drain_without_waiting_and_cancel(oc: OpsCluster) -> None:
    region = only_region(oc)
    s = region.peers[1].store_id
    r = run(oc, "store", "drain", str(s), "--no-wait")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"store {s} is draining; follow it with `multiraft store show {s}`\n"
    # (No `store show` here: the fake stores let a draining store lose a replica only once
    # a client has seen its count, so until then the drain cannot finish.)
    assert oc.call(lambda: oc.cluster.get_store(s).state.name) == "Offline"
    r = run(oc, "store", "drain", str(s), "--cancel")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"store {s}: drain cancelled; it is Up\n"
    r = run(oc, "store", "show", str(s), "--json")
    assert json.loads(r.stdout)["state"] == "Up"


def test_list_commands_have_json(oc: OpsCluster) -> None:
    for args in (("region", "list"), ("store", "list"), ("operator", "list")):
        r = run(oc, *args, "--json")
        assert r.exit_code == 0, (args, r.output)
        assert isinstance(json.loads(r.stdout), list)
