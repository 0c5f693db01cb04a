"""The CLI never shows a user a traceback: expected failures are one line, and the
console script's last guard turns anything unexpected into one line too."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from multiraft.cli import main as cli_main


def test_malformed_placement_address_is_one_line_usage_error() -> None:
    result = CliRunner().invoke(cli_main.app, ["kv", "get", "x", "--placement", "bad:addr:1"])
    assert result.exit_code == 2
    assert "bad placement address" in result.output
    assert "Traceback" not in result.output


def test_unexpected_exception_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_main, "app", typer.Typer())
    cli_main.app.command()(broken)
    monkeypatch.setattr(sys, "argv", ["multiraft"])
    monkeypatch.delenv("MULTIRAFT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.run()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: boom")
    assert "Traceback" not in err


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "multiraft", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert out.stdout.startswith("multiraft ")
