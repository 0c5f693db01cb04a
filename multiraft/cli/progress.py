"""Progress of long CLI operations (operators, drains): one status line on stderr.

On a terminal the line is rewritten in place (``\\r``) and may carry a detail that
changes every poll (the elapsed time); anywhere else (a pipe, a log, a test) each new
status is printed as a line of its own, once, without the detail, so the output is a
readable record of the steps and not a flood of timer updates. Standard output stays
for the result (a table, or JSON).
"""

from __future__ import annotations

from types import TracebackType

import typer

from multiraft.cli.common import stderr_is_tty

__all__ = ["StatusLine", "bar"]


def bar(done: int, total: int, width: int = 24) -> str:
    """``[########----------------]``: ``done`` of ``total`` (clamped; total 0 is full)."""
    if total <= 0:
        filled = width
    else:
        filled = round(width * min(max(done, 0), total) / total)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class StatusLine:
    """A status line on stderr (see the module docstring). Use as a context manager, so
    that the line is ended before anything else is printed.

    Args:
        tty: whether to rewrite in place (default: whether stderr is a terminal).
    """

    def __init__(self, *, tty: bool | None = None) -> None:
        self._tty = stderr_is_tty() if tty is None else tty
        self._last: str | None = None
        self._shown = ""

    def update(self, status: str, detail: str = "") -> None:
        """Show ``status`` (and, on a terminal, ``detail`` after it)."""
        if self._tty:
            text = f"{status}  {detail}" if detail else status
            if text != self._shown:
                pad = " " * max(len(self._shown) - len(text), 0)
                typer.echo("\r" + text + pad, err=True, nl=False)
                self._shown = text
        elif status != self._last:
            typer.echo(status, err=True)
        self._last = status

    def close(self) -> None:
        """End the line (on a terminal); later updates start a new one."""
        if self._tty and self._shown:
            typer.echo("", err=True)
        self._shown = ""
        self._last = None

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
