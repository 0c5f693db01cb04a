"""Fixtures of the cluster tests: a real cluster per test (see ``harness.py``), always killed
afterwards, and its logs attached to the report of a failed test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A 3-store cluster, not started yet (``await cluster.start()``); always killed after."""
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.kill_all()


class ClusterFactory:
    """Makes clusters with options (``make_cluster(stores=5, store_settings={...})``), each in
    its own directory of the test's ``tmp_path``; all of them are killed after the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Cluster] = []

    def __call__(self, **options: Any) -> Cluster:
        c = Cluster(self.root / f"cluster{len(self.made)}", **options)
        self.made.append(c)
        return c

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(c.log_tails(lines) for c in self.made)

    def kill_all(self) -> None:
        for c in self.made:
            c.kill_all()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """A factory of clusters with options, not started yet; every one is killed after."""
    factory = ClusterFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the logs of a failed test's cluster to its report."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.failed and rep.when in ("call", "setup"):
        for value in getattr(item, "funcargs", {}).values():
            if hasattr(value, "log_tails"):
                with contextlib.suppress(Exception):
                    rep.sections.append(("cluster logs", value.log_tails()))
