"""``multiraft bench regions``: the report (tables or JSON) and the command's body.

The measuring is in :mod:`multiraft.bench.regions`; this module turns a
:class:`~multiraft.bench.regions.RegionsBenchResult` into readable tables, parses the
options, runs the benchmark in a directory (a temporary one, removed afterwards, unless
``--data-dir`` names one to keep), and reports any failure as one line on stderr (exit
status 1, or 2 for a bad option) after the tail of every process log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import trio

from multiraft.bench.regions import (
    SECTIONS,
    BenchError,
    RegionsBenchConfig,
    RegionsBenchResult,
    run,
)

__all__ = ["bench_command", "format_report", "parse_settings", "parse_sizes"]

MIB: Final = 1 << 20


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns: the first left-aligned, the rest right-aligned."""
    cells = [headers, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in cells]  # fmt: skip


def _ms(s: dict[str, float]) -> list[str]:
    return [f"{s[q] * 1000:,.0f}" for q in ("p50", "p90", "max")]


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MIB:,.1f} MiB"


def format_report(r: RegionsBenchResult) -> str:
    """The result as readable tables."""
    m = r.machine
    lines = [f"{m['cpus']} CPUs, Python {m['python']}, load average at start "
             f"{' '.join(f'{x:.2f}' for x in m['load_average_start'])}"]  # fmt: skip
    stores = r.config["stores"]
    if r.split is not None:
        s = r.split
        lines += ["", f"Split: {s.splits} manual SplitRegion operators at explicit keys, "
                  f"{stores} stores (times from the request)"]  # fmt: skip
        lines += _table(["until", "p50 ms", "p90 ms", "max ms"], [
            ["both new regions took a client write", *_ms(s.serving)],
            ["  the left one (new region id)", *_ms(s.left)],
            ["  the right one (keeps the parent's id)", *_ms(s.right)],
            ["placement reports the operator finished", *_ms(s.operator)],
        ])  # fmt: skip
        lines.append(f"(a random pause of 0-{s.pause_up_to:g} s before each request; "
                     f"{s.early_puts} puts were taken by the parent before its split applied)")  # fmt: skip
    if r.move:
        lines += ["", f"Move: MovePeer of one region from a follower's store to the store "
                  f"without a replica, {stores} stores (seconds from the request)"]  # fmt: skip
        rows = [[f"{x.mib:g} MiB", f"{x.keys:,}", _mib(x.snapshot_bytes),
                 f"{x.operator_seconds:.2f}", f"{x.applied_seconds:.2f}",
                 f"{x.move_mib_per_second:.1f}", f"{x.tcp_mib_per_second:,.0f}",
                 f"{x.lmdb_mib_per_second:,.0f}"] for x in r.move]  # fmt: skip
        lines += _table(["region", "keys", "snapshot", "operator s", "applied s",
                         "move MiB/s", "loopback TCP MiB/s", "LMDB write MiB/s"], rows)  # fmt: skip
    if r.drain is not None:
        d = r.drain
        lines += ["", f"Drain: store {d.store_id} of {stores}, holding {d.replicas} replicas "
                  f"({d.leaders} leaders) of {d.regions} regions, {_mib(d.data_bytes)} in all; "
                  f"store limit {d.store_limit}"]  # fmt: skip
        tomb = "-" if d.tombstone_seconds is None else f"{d.tombstone_seconds:.1f}"
        lines += _table(["until", "seconds"], [
            ["placement routes no replica to the store", f"{d.routes_clear_seconds:.1f}"],
            ["the store reports no replica", f"{d.store_empty_seconds:.1f}"],
            ["placement made it a Tombstone", tomb],
        ])  # fmt: skip
        ops = ", ".join(f"{k} {v}" for k, v in sorted(d.operators.items())) or "none"
        if d.operator_seconds:
            q = d.operator_seconds
            ops += f" (each {q['p50']:.1f} s p50, {q['p90']:.1f} s p90, {q['max']:.1f} s max)"
        lines.append(f"operators: {ops}; the {d.regions} regions were made by manual splits "
                     f"(admin requests) in {d.split_seconds:.1f} s")  # fmt: skip
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple[float, ...]:
    """``"10,100"`` -> (10.0, 100.0). Raises ValueError."""
    try:
        sizes = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ValueError(f"bad --move-mib {text!r}: expected sizes in MiB like 10,100") from None
    if not sizes:
        raise ValueError("--move-mib needs at least one size")
    return sizes


def parse_settings(items: list[str], what: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{"k": v}``, each value read as TOML (``3``, ``0.5``, ``true``,
    ``"x"``), else taken as a string. Raises ValueError."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"bad --{what}-setting {item!r}: expected KEY=VALUE")
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text.strip()
    return out


def bench_command(*, only: str | None, as_json: bool, data_dir: str | None,
                  **options: Any) -> None:  # fmt: skip
    """The body of ``multiraft bench regions``: run, print (one-line errors, exit 1/2).

    ``options`` are :class:`RegionsBenchConfig` fields, ``move_mib`` as given (``"10,100"``)
    and ``store`` / ``placement`` as lists of ``KEY=VALUE``.
    """
    import json
    import shutil
    import tempfile

    import typer

    from multiraft.cli.common import EXIT_USAGE, fail

    def say(line: str) -> None:
        typer.echo(line, err=True)

    keep = Path(data_dir).expanduser() if data_dir else None
    try:
        sections = tuple(p.strip() for p in only.split(",")) if only else SECTIONS
        options["move_mib"] = parse_sizes(options["move_mib"])
        options["store"] = parse_settings(options["store"], "store")
        options["placement"] = parse_settings(options["placement"], "placement")
        config = RegionsBenchConfig(only=sections, **options)
        config.validate()
        if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            raise ValueError(f"--data-dir {keep} is not an empty directory: give a new one")
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    try:
        root = keep or Path(tempfile.mkdtemp(prefix="mr-bench-regions-"))
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"cannot create the data directory: {e.strerror or e}")
    try:
        result = trio.run(run, root, config, say)
    except BenchError as e:
        for line in e.details:
            say(line)
        fail(e.message)
    except OSError as e:
        fail(f"the benchmark failed: {e.strerror or e}")
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(format_report(result))
