"""Smoke test of the storage benchmark (multiraft/bench/storage.py): it runs and reports."""

from __future__ import annotations

from pathlib import Path

from multiraft.bench import storage as bench


def test_bench_runs_both_sides_and_cleans_up(tmp_path: Path) -> None:
    results = bench.run(seconds=0.05, configs=[(10, 4), (1, 3)], directory=str(tmp_path))
    assert [(r.entries_per_round, r.regions, r.regions_per_round) for r in results] == [
        (10, 4, 4),
        (1, 3, 1),
    ]
    for r in results:
        assert r.engine_rounds > 0 and r.raw_rounds > 0
        assert r.engine_entries_per_second == r.engine_rounds_per_second * r.entries_per_round
        assert r.overhead > 0
    table = bench.format_table(results)
    assert "overhead" in table and len(table.splitlines()) == 4
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone
