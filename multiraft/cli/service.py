"""Running a long-lived service (the placement service, a store) from the CLI.

Both ``multiraft placement start`` and ``multiraft server start`` do the same
things around their own service: load the settings (TOML file, then the flags,
which win), run the service in the foreground until SIGINT or SIGTERM, and turn
every failure into one line on stderr with a non-zero exit status. The part that
differs — which service, how it announces itself, which failures a user can fix —
is passed in.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import trio
import typer

from multiraft.settings import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("multiraft.cli.service")


class _Config(Protocol):
    def validate(self) -> Any: ...


C = TypeVar("C", bound=_Config)
E = TypeVar("E")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself if it is not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out += leaves(e)
        return out
    return [exc]


def os_error_message(exc: BaseException) -> str | None:
    """One line for a permission or other OS error, else None."""
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


def load_config(
    default: Callable[[], C],
    load: Callable[[Path], C],
    config_file: Path | None,
    flags: Mapping[str, Any],
) -> C:
    """Settings from ``config_file`` (or the defaults), overridden by the non-None flags.

    A bad file or value exits with status 2 and one line.
    """
    try:
        config = load(config_file) if config_file else default()
        config = dataclasses.replace(  # type: ignore[type-var]
            config, **{k: v for k, v in flags.items() if v is not None}
        )
        config.validate()
        return config
    except ConfigError as e:
        fail(str(e), 2)


def run_service(
    name: str,
    serve: Callable[[], Awaitable[None]],
    *,
    log_level: str,
    user_message: Callable[[BaseException], str | None],
) -> None:
    """Run ``serve`` under trio until it returns; report failures as one line.

    ``user_message`` explains failures a user can fix (None: unexpected, which is
    reported with its type and a hint to use ``--log-level debug``).
    """
    if log_level not in LOG_LEVELS:
        fail(f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}", 2)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        trio.run(serve)
    except BaseException as exc:  # everything becomes one line for the user
        found = leaves(exc)
        if any(isinstance(e, KeyboardInterrupt) for e in found):
            raise typer.Exit(130) from None
        for leaf in found:
            message = user_message(leaf)
            if message is not None:
                fail(message)
        log.debug("%s failed", name, exc_info=exc)
        first = found[0] if found else exc
        fail(
            f"the {name} failed: {type(first).__name__}: {first} "
            "(run with --log-level debug for details)"
        )
    typer.echo(f"{name} stopped")


async def serve_until_signal(
    start: Callable[..., Awaitable[Any]],
    config: Any,
    announce: Callable[[E], str],
) -> None:
    """Start ``start(config, task_status=...)``, print ``announce(endpoints)``, and run
    until SIGINT or SIGTERM, which cancels the service cleanly."""
    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(start, config)
        typer.echo(announce(endpoints))
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
