"""``multiraft placement start``: help, one-line errors, and a real process that stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from typer.testing import CliRunner

from multiraft.cli.main import app
from multiraft.placement import ClusterMeta, PlacementClient

runner = CliRunner()


def start(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["placement", "start", *args])
    return result.exit_code, result.output


def assert_one_line_error(output: str, *fragments: str) -> None:
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for f in fragments:
        assert f in lines[0], output


def test_help_lists_the_options() -> None:
    code, out = start("--help")
    assert code == 0
    for option in ("--listen", "--advertise", "--data-dir", "--metrics-listen", "--config"):
        assert option in out


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--listen", "nope"], ["bad listen address 'nope'"]),
        (["--listen", "127.0.0.1:99999"], ["port must be a number in 0..65535"]),
        (["--listen", "::1:2379"], ["IPv6 host in brackets"]),
        (["--listen", "0.0.0.0:2379"], ["needs an advertise address"]),
        (["--metrics-listen", "localhost"], ["bad metrics listen address"]),
        (["--log-level", "loud"], ["--log-level"]),
    ],
)
def test_bad_arguments_are_one_line_errors(args: list[str], fragments: list[str]) -> None:
    code, out = start(*args)
    assert code == 2
    assert_one_line_error(out, *fragments)


def test_config_file_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    code, out = start("--config", str(missing))
    assert code == 2
    assert_one_line_error(out, "cannot read config file")
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = \n")
    assert_one_line_error(start("--config", str(bad))[1], "not valid TOML")
    typo = tmp_path / "typo.toml"
    typo.write_text('[placement]\nlisen = "127.0.0.1:1"\n')
    assert_one_line_error(start("--config", str(typo))[1], "unknown setting 'lisen'")


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = start(
            "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path), "--metrics-listen", ""
        )
    assert code == 1
    assert_one_line_error(out, f"127.0.0.1:{port}", "already in use")


def test_a_locked_data_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with ClusterMeta.open(tmp_path):
        code, out = start("--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
                          "--metrics-listen", "")  # fmt: skip
    assert code == 1
    assert_one_line_error(out, str(tmp_path), "in use by another process")


async def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "pd.toml"
    config.write_text(
        f'[placement]\nlisten = "127.0.0.1:0"\nmetrics-listen = ""\ndata_dir = "{tmp_path / "pd"}"\n'
    )
    cmd = [sys.executable, "-m", "multiraft", "placement", "start", "--config", str(config)]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with trio.fail_after(20):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                assert chunk, "the service exited before it was ready"
                line += chunk
            assert line.startswith(b"placement service of cluster 0x"), line
            address = line.split(b"listening on ")[1].split()[0].decode().rstrip(",")
            async with PlacementClient(address) as pd:
                assert (await pd.alloc_ids(2)).first == 1
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
            rest = b""
            while chunk := await proc.stdout.receive_some(4096):
                rest += chunk
            assert b"placement service stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
