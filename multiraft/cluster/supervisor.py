"""Background processes of a local cluster: start them, tell whether they run, stop them.

A local cluster's processes are ordinary ``multiraft placement start`` / ``multiraft
server start`` commands run as ``sys.executable -m multiraft ...`` in a session of their
own (so a Ctrl-C in the terminal that started them does not reach them, and they outlive
``multiraft cluster up``), with stdin from ``/dev/null`` and stdout and stderr appended to
one log file each.

Rules:

* **A pid is ours only if its command line says so.** A recorded pid may have been reused
  by an unrelated process since; :func:`is_running` checks (on Linux, through
  ``/proc/<pid>/cmdline``) that the process runs ``multiraft`` on the expected data
  directory before anything signals it, and counts a zombie as gone.
* **Stopping is bounded.** :func:`stop` sends SIGTERM, waits up to ``timeout`` seconds
  for the processes to exit, then SIGKILLs what is left.
* **Ports are probed, not guessed.** :func:`free_ports` asks the OS for distinct free
  ports by binding port 0 (all sockets stay open until every port is chosen);
  :func:`port_is_free` tells whether a recorded port can be bound again. A port can
  still be taken by someone else between the probe and the server's bind: the server
  then fails with a clear error, which the caller reports.

Nothing here is async: spawning and signalling do not block, and waiting polls with
short sleeps under a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

__all__ = [
    "free_ports",
    "is_running",
    "multiraft_command",
    "port_is_free",
    "spawn",
    "stop",
    "tail",
    "wait_exited",
]

#: Seconds between liveness polls while waiting for processes to exit.
_POLL: Final = 0.05


def multiraft_command(*args: str) -> list[str]:
    """The argv that runs ``multiraft ARGS...`` with this interpreter."""
    return [sys.executable, "-m", "multiraft", *args]


def spawn(
    argv: Sequence[str], log_path: Path, *, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the background, in a new session, output appended to ``log_path``.

    A line with the time and the command is written to the log first, so that the log of
    a process restarted several times shows where each run begins.

    Raises:
        OSError: the log cannot be opened or the program cannot be run.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"=== {stamp} starting: {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is an exited child of ours; True if it was."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _proc_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc (None: no /proc or no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) S ...": the command may hold spaces and parentheses; the state follows
    # the last ")".
    return stat.rpartition(")")[2].split()[0] if ")" in stat else None


def _cmdline(pid: int) -> list[str] | None:
    """The command line of ``pid`` (None if it cannot be read, e.g. no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_running(pid: int | None, marker: str | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie) whose command line runs multiraft
    and has ``marker`` as one of its arguments (e.g. its data directory), when that can be
    checked."""
    if pid is None or pid <= 0:
        return False
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not one we started
    if _proc_state(pid) in ("Z", "X"):
        return False
    argv = _cmdline(pid)
    if argv is None:
        return True  # no /proc (macOS): trust the pid
    if not any("multiraft" in a for a in argv):
        return False
    return marker is None or marker in argv


def wait_exited(pids: Iterable[tuple[int, str | None]], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for the processes to exit; the pids still running."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [(p, m) for p, m in left if is_running(p, m)]
        if not left or time.monotonic() >= deadline:
            return [p for p, _ in left]
        time.sleep(_POLL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop(pids: Iterable[tuple[int, str | None]], *, timeout: float = 10.0) -> dict[int, str]:
    """Stop processes: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL the rest.

    ``pids`` are ``(pid, marker)`` pairs as for :func:`is_running`; pids that are not
    running (or not ours) are left alone.

    Returns:
        For every pid that was running: ``"stopped"`` (exited after SIGTERM) or
        ``"killed"`` (needed SIGKILL).
    """
    running = [(p, m) for p, m in pids if is_running(p, m)]
    for pid, _ in running:
        _signal(pid, signal.SIGTERM)
    stubborn = set(wait_exited(running, timeout))
    for pid in stubborn:
        _signal(pid, signal.SIGKILL)
    wait_exited([(p, m) for p, m in running if p in stubborn], 5.0)
    return {p: ("killed" if p in stubborn else "stopped") for p, _ in running}


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports on ``host`` that the OS says are free right now.

    Raises:
        OSError: ``host`` cannot be bound (not an address of this machine).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (as the servers do, with
    SO_REUSEADDR, so that connections in TIME_WAIT from a previous run do not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a text file (empty if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - 64 * 1024, 0))
            data = f.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]
