"""Shared pytest configuration."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite the expected outputs of datadriven scenario files instead of "
        "checking them (as MULTIRAFT_REWRITE=1 does); inspect the diff before committing",
    )


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    """Whether datadriven tests regenerate their expectations: pass it to ``run_test``."""
    # Imported here so that loading this conftest never depends on ``tests`` being importable.
    from tests.datadriven import rewrite_from_env

    return bool(request.config.getoption("rewrite")) or rewrite_from_env()
