"""``multiraft bench``: the benchmarks, one subcommand each."""

from __future__ import annotations

from typing import Annotated

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


@bench_app.command("regions")
def bench_regions(
    only: str | None = typer.Option(None, "--only", help="split, move or drain (default: all)."),
    repeat: int = typer.Option(20, "--repeat", help="Splits to time."),
    move_mib: str = typer.Option("10,100", "--move-mib", help="Region sizes to move, MiB."),
    regions: int = typer.Option(100, "--regions", help="Regions in the drain."),
    stores: int = typer.Option(4, "--stores", help="Stores per cluster (at least 4)."),
    value_size: int = typer.Option(1024, "--value-size", help="Bytes per value loaded."),
    region_kib: int = typer.Option(64, "--region-kib", help="KiB loaded per drained region."),
    store_setting: Annotated[
        list[str] | None,
        typer.Option("--store-setting", metavar="KEY=VALUE", help="A store setting (repeatable)."),
    ] = None,
    placement_setting: Annotated[
        list[str] | None,
        typer.Option("--placement-setting", metavar="KEY=VALUE", help="A placement setting."),
    ] = None,
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds any one wait may take."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Keep the clusters' data and logs here (default: a temp dir)."
    ),
) -> None:
    """Split, move and drain on local clusters of real processes the bench starts itself."""
    from multiraft.bench.regions_cli import bench_command

    bench_command(
        only=only, as_json=as_json, data_dir=data_dir, repeat=repeat, move_mib=move_mib,
        regions=regions, stores=stores, value_size=value_size, region_kib=region_kib,
        store=store_setting or [], placement=placement_setting or [], timeout=timeout,
    )  # fmt: skip
