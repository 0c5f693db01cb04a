"""The client-side CLI (`kv`, `store list`, `region list`, `bench kv`) with typer's CliRunner
against a fake cluster served over real sockets from a background thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from multiraft.cli.common import write_cluster_file
from multiraft.cli.main import app
from tests.client.fakes import BackgroundCluster, FakeCluster, populate

#: No cluster address may leak in from the environment of the test run.
ENV: dict[str, str | None] = {"MULTIRAFT_PLACEMENT": None, "MULTIRAFT_DATA_DIR": None}


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.split(b"m")
    return c


@pytest.fixture
def address(cluster: FakeCluster) -> Iterator[str]:
    with BackgroundCluster(cluster) as addr:
        yield addr


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner(env={**ENV, **(env or {})}).invoke(app, list(args))


def one_line_error(result: Result) -> str:
    """The error a failed command printed: exactly one line on stderr, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_kv_put_get_delete(cluster: FakeCluster, address: str) -> None:
    r = run("kv", "put", "greeting", "héllo wörld", "--placement", address)
    assert (r.exit_code, r.stdout) == (0, "OK\n")
    assert cluster.data[b"greeting"] == "héllo wörld".encode()
    r = run("kv", "get", "greeting", "--placement", address)
    assert (r.exit_code, r.stdout) == (0, "héllo wörld\n")
    r = run("kv", "delete", "greeting", "--placement", address)
    assert (r.exit_code, r.stdout) == (0, "OK\n")
    r = run("kv", "get", "greeting", "--placement", address)
    assert r.exit_code == 3  # not found
    assert r.stdout == "" and "not found: greeting" in r.stderr


def test_kv_hex_and_json(cluster: FakeCluster, address: str) -> None:
    r = run("kv", "put", "00ff", "c0ffee", "--hex", "--placement", address)
    assert r.exit_code == 0
    assert cluster.data[b"\x00\xff"] == b"\xc0\xff\xee"
    r = run("kv", "get", "00ff", "--hex", "--json", "--placement", address)
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"key": "00ff", "value": "c0ffee", "found": True}
    # Without --hex, bytes that are not UTF-8 are printed escaped.
    r = run("kv", "scan", "--placement", address)
    assert r.stdout == "\\x00\\xff\t\\xc0\\xff\\xee\n"
    r = run("kv", "get", "nope", "--json", "--placement", address)
    assert r.exit_code == 3
    assert json.loads(r.stdout) == {"key": "nope", "value": None, "found": False}


def test_kv_scan_across_regions(cluster: FakeCluster, address: str) -> None:
    populate(cluster, [b"apple", b"banana", b"mango", b"zucchini", b"app"])
    r = run("kv", "scan", "--placement", address)
    assert r.exit_code == 0
    assert r.stdout.splitlines() == [
        "app\tv-app", "apple\tv-apple", "banana\tv-banana", "mango\tv-mango",
        "zucchini\tv-zucchini",
    ]  # fmt: skip
    r = run("kv", "scan", "b", "n", "--keys-only", "--placement", address)
    assert r.stdout.splitlines() == ["banana", "mango"]
    r = run("kv", "scan", "--prefix", "app", "--json", "--placement", address)
    assert json.loads(r.stdout) == [
        {"key": "app", "value": "v-app"},
        {"key": "apple", "value": "v-apple"},
    ]
    r = run("kv", "scan", "--limit", "2", "--keys-only", "--json", "--placement", address)
    assert json.loads(r.stdout) == ["app", "apple"]


def test_kv_cas(cluster: FakeCluster, address: str) -> None:
    r = run("kv", "cas", "k", "--absent", "--new", "1", "--placement", address)
    assert (r.exit_code, r.stdout) == (0, "swapped (previous value: absent)\n")
    r = run("kv", "cas", "k", "--expected", "0", "--new", "2", "--placement", address)
    assert (r.exit_code, r.stdout) == (3, "not swapped (previous value: 1)\n")
    r = run("kv", "cas", "k", "--expected", "1", "--delete", "--json", "--placement", address)
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"key": "k", "swapped": True, "previous": "1"}
    assert b"k" not in cluster.data


def test_store_list(address: str) -> None:
    r = run("store", "list", "--placement", address)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "ADDRESS", "STATE", "REGIONS", "LEADERS", "METRICS",
                                "VERSION"]  # fmt: skip
    assert lines[1].split()[:5] == ["1", lines[1].split()[1], "Up", "2", "2"]
    assert len(lines) == 4
    r = run("store", "list", "--json", "--placement", address)
    stores = json.loads(r.stdout)
    assert [(s["id"], s["state"], s["region_count"], s["leader_count"]) for s in stores] == [
        (1, "Up", 2, 2), (2, "Up", 2, 0), (3, "Up", 2, 0),
    ]  # fmt: skip
    assert all(s["address"].startswith("127.0.0.1:") for s in stores)


def test_region_list(cluster: FakeCluster, address: str) -> None:
    r = run("region", "list", "--placement", address)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "START", "END", "EPOCH(conf/ver)", "PEERS(peer@store)",
                                "LEADER"]  # fmt: skip
    assert lines[1].split() == ["1", "(min)", "m", "1/2", "11@1,12@2,13@3", "11@1"]
    assert lines[2].split()[1:4] == ["m", "(max)", "1/2"]
    r = run("region", "list", "--json", "--start", "n", "--placement", address)
    regions = json.loads(r.stdout)
    assert len(regions) == 1
    assert regions[0]["start_key"] == "m" and regions[0]["end_key"] == ""
    assert regions[0]["epoch"] == {"conf_ver": 1, "version": 2}
    assert regions[0]["leader"]["store_id"] == 1
    assert [p["role"] for p in regions[0]["peers"]] == ["Voter"] * 3


def test_cluster_found_from_env_and_from_the_cluster_file(
    cluster: FakeCluster, address: str, tmp_path: Path
) -> None:
    r = run("kv", "put", "a", "1", env={"MULTIRAFT_PLACEMENT": address})
    assert r.exit_code == 0, r.output
    write_cluster_file(tmp_path / "data", {"placement": address, "stores": []})
    r = run("kv", "get", "a", "--data-dir", str(tmp_path / "data"))
    assert (r.exit_code, r.stdout) == (0, "1\n")
    r = run("kv", "get", "a", env={"MULTIRAFT_DATA_DIR": str(tmp_path / "data")})
    assert (r.exit_code, r.stdout) == (0, "1\n")


def test_no_cluster_found(tmp_path: Path) -> None:
    r = run("kv", "get", "a", "--data-dir", str(tmp_path / "nothing"))
    assert r.exit_code == 1
    assert "no cluster found" in one_line_error(r)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cluster.json").write_text("{not json")
    r = run("store", "list", "--data-dir", str(tmp_path / "bad"))
    assert r.exit_code == 1
    assert "not valid JSON" in one_line_error(r)
    write_cluster_file(tmp_path / "bad", {"placement": "nonsense"})
    r = run("region", "list", "--data-dir", str(tmp_path / "bad"))
    assert r.exit_code == 1
    assert "bad placement address" in one_line_error(r)


def test_unreachable_cluster_is_one_line() -> None:
    import socket

    with socket.socket() as s:  # a port that was just free: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["kv", "get", "a"], ["kv", "put", "a", "b"], ["store", "list"],
                 ["region", "list"], ["kv", "scan"]):  # fmt: skip
        r = run(*args, "--placement", f"127.0.0.1:{port}", "--timeout", "0.3")
        assert r.exit_code == 1, (args, r.output)
        assert f"127.0.0.1:{port}" in one_line_error(r)


def test_malformed_arguments_are_usage_errors() -> None:
    r = run("kv", "get", "a", "--placement", "not-an-address")
    assert r.exit_code == 2
    assert "bad placement address" in one_line_error(r)
    r = run("kv", "get", "zz", "--hex", "--placement", "127.0.0.1:1")
    assert r.exit_code == 2
    assert "bad hex key" in one_line_error(r)
    r = run("kv", "cas", "k", "--new", "1", "--placement", "127.0.0.1:1")
    assert r.exit_code == 2
    assert "--expected" in one_line_error(r)
    r = run("kv", "get", "k", "--read-mode", "sloppy", "--placement", "127.0.0.1:1")
    assert r.exit_code == 2
    assert "bad read mode" in one_line_error(r)
    r = run("kv", "scan", "a", "--prefix", "b", "--placement", "127.0.0.1:1")
    assert r.exit_code == 2
    r = run("bench", "kv", "--workload", "nap", "--placement", "127.0.0.1:1")
    assert r.exit_code == 2
    assert "bad workload" in one_line_error(r)
    # Parse errors of typer itself: usage errors too, no traceback.
    r = run("kv", "get")
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = run("kv", "scan", "--limit", "many", "--placement", "127.0.0.1:1")
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.parametrize("workload", ["write", "mixed"])
def test_bench_kv_json(cluster: FakeCluster, address: str, workload: str) -> None:
    r = run("bench", "kv", "--workload", workload, "--clients", "4", "--duration", "0.3",
            "--keys", "50", "--value-size", "8", "--seed", "1", "--json",
            "--placement", address)  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["workload"] == workload and report["clients"] == 4
    assert report["ops"] > 0 and report["ops"] == report["reads"] + report["writes"]
    assert report["ops_per_second"] > 0
    lat = report["latency_seconds"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["errors"] == {}
    assert all(len(v) == 8 for k, v in cluster.data.items() if k.startswith(b"bench-"))
    if workload == "mixed":
        assert report["reads"] > 0 and report["writes"] > 0
        assert len([k for k in cluster.data if k.startswith(b"bench-")]) == 50  # preloaded


def test_bench_kv_text(address: str) -> None:
    r = run("bench", "kv", "--workload", "read", "--clients", "2", "--duration", "0.2",
            "--keys", "10", "--placement", address)  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["workload", "ops", "ops/s", "latency",
                                                   "errors"]  # fmt: skip
    assert "p99" in lines[3] and lines[4].endswith("none")
