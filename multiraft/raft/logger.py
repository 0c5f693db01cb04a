"""The logger the core is given: a tiny protocol, so the core never touches global state.

The store injects an adapter over :mod:`logging`; tests inject :class:`ListLogger`
to assert on what was said. The default, :class:`NullLogger`, costs nothing.
"""

from __future__ import annotations

from typing import Protocol


class Logger(Protocol):
    def debug(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


class NullLogger:
    """Drops everything."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


class ListLogger:
    """Keeps ``(level, message)`` pairs, for tests."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def debug(self, msg: str) -> None:
        self.records.append(("debug", msg))

    def info(self, msg: str) -> None:
        self.records.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.records.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.records.append(("error", msg))
