"""Fixtures of the cluster tests: a real cluster per test (see ``harness.py``), always killed
afterwards, and its logs attached to the report of a failed test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

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
