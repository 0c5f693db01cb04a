"""``multiraft bench``: the benchmarks, one subcommand each."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Run benchmarks and print their figures.", no_args_is_help=True)


@bench_app.command("raft")
def bench_raft(
    seconds: float = typer.Option(3.0, "--seconds", min=0.1, help="Run time per batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Raft core only: a 3-node in-memory group, proposals batched 1, 16 and 256."""
    from multiraft.bench import raft

    raft.main(seconds=seconds, as_json=as_json)


@bench_app.command("kv")
def bench_kv(
    workload: str = typer.Option("write", "--workload", help="write, read, or mixed (half each)."),
    clients: int = typer.Option(16, "--clients", min=1, help="Concurrent client tasks."),
    duration: float = typer.Option(10.0, "--duration", min=0.1, help="Seconds to run."),
    value_size: int = typer.Option(100, "--value-size", min=0, help="Bytes per value."),
    keys: int = typer.Option(10_000, "--keys", min=1, help="Distinct keys used."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for keys and values."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    placement: str | None = typer.Option(
        None,
        "--placement",
        envvar="MULTIRAFT_PLACEMENT",
        metavar="HOST:PORT",
        help="The placement service's address (default: from <data-dir>/cluster.json).",
    ),
    data_dir: str = typer.Option(
        "./multiraft-data",
        "--data-dir",
        envvar="MULTIRAFT_DATA_DIR",
        help="A local cluster's data directory, where `cluster up` wrote cluster.json.",
    ),
    timeout: float = typer.Option(5.0, "--timeout", min=0.001, help="Seconds per request."),
) -> None:
    """A running cluster through the client: ops/s and latency p50/p95/p99/max."""
    from multiraft.bench.kv import bench_command

    bench_command(
        workload=workload, clients=clients, duration=duration, value_size=value_size,
        keys=keys, seed=seed, as_json=as_json, placement=placement, data_dir=data_dir,
        timeout=timeout,
    )  # fmt: skip


@bench_app.command("storage")
def bench_storage(
    seconds: float = typer.Option(2.0, "--seconds", min=0.1, help="Run time per configuration."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """LMDB engine vs raw LMDB (rounds of 1/100/1000 entries over 1/100/1000 regions), and the wire codec."""
    from multiraft.bench import codec, storage

    storage.main(seconds=seconds, as_json=as_json)
    codec.main(seconds=seconds, as_json=as_json)
