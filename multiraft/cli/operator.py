"""``multiraft operator``: the placement service's operators (running and recently finished).

``operator list`` shows every running operator, then the recently finished ones;
``operator show REGION`` the region's operator with its steps; ``operator cancel REGION``
stops the region's running operator (a step already sent fails harmlessly: it carries the
epoch it was made for).

:func:`run_operator` is what ``region split|move|transfer-leader`` share: start a manual
operator, follow it on a status line (:mod:`multiraft.cli.progress`) until it ends, and
turn any end but success (timeout, cancelled, stale) into a one-line error saying why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import trio
import typer

from multiraft.cli.common import (
    DEFAULT_DATA_DIR_PATH,
    CliError,
    DataDirOption,
    JsonOption,
    PlacementOption,
    TimeoutOption,
    cli_errors,
    echo_json,
    echo_table,
    run_with_placement,
)
from multiraft.cli.progress import StatusLine
from multiraft.placement.client import PlacementClient
from multiraft.wire.placement_messages import OperatorInfo

operator_app = typer.Typer(help="Inspect and cancel scheduling operators.", no_args_is_help=True)

_T = TypeVar("_T")
RegionArg = Annotated[int, typer.Argument(min=1, help="The region id.")]

#: Seconds between two looks at a running operator (or a draining store).
POLL_INTERVAL: Final = 0.2
#: Deadline of each placement request while following an operation.
REQUEST_TIMEOUT: Final = 5.0

NoWaitOption = Annotated[
    bool, typer.Option("--no-wait", help="Start it and return; do not follow it.")
]


def wait_option(default: float) -> Any:
    return typer.Option(
        "--timeout", min=0.001, help=f"Seconds to follow the operation (default {default:g}); "
        "it goes on in the background after that.", show_default=False,
    )  # fmt: skip


def operator_to_json(o: OperatorInfo) -> dict[str, Any]:
    return {
        "region_id": o.region_id,
        "kind": o.kind,
        "desc": o.desc,
        "status": o.status,
        "progress": {"done": o.step_index, "total": len(o.steps)},
        "steps": [s.describe() for s in o.steps],
        "current_step": o.steps[o.step_index].describe()
        if o.status == "running" and o.step_index < len(o.steps)
        else None,
        "created_at": o.created_at,
        "finished_at": o.finished_at,
    }


def step_text(o: OperatorInfo) -> str:
    """``2/4 promote learner peer 17 on store 4 to voter``: the current (or last) step."""
    n = len(o.steps)
    if not n:
        return "0/0"
    i = min(o.step_index, n - 1)
    return f"{i + 1}/{n} {o.steps[i].describe()}"


def failure_message(o: OperatorInfo) -> str:
    """Why an operator that ended without success ended, in one line."""
    what = f"region {o.region_id}: {o.kind} ({o.desc or 'admin'})"
    took = "" if o.finished_at is None else f" after {o.finished_at - o.created_at:.1f} s"
    at = f"at step {step_text(o)}"
    if o.status == "timeout":
        return f"{what} timed out {at}{took}: the store did not finish the step in time"
    if o.status == "canceled":
        return f"{what} was cancelled {at}{took}"
    if o.status == "stale":
        return (f"{what} became stale {at}: the region changed under it (a split, a "
                "membership change or another operator); it stopped without harm")  # fmt: skip
    return f"{what} ended {o.status} {at}{took}"


def _same(a: OperatorInfo, b: OperatorInfo) -> bool:
    return (a.region_id, a.kind, a.created_at) == (b.region_id, b.kind, b.created_at)


async def _find(client: PlacementClient, started: OperatorInfo) -> OperatorInfo | None:
    """The operator ``started`` as it is now (running, or in the finished history)."""
    info = await client.get_operator(started.region_id)
    if info is not None and _same(info, started):
        return info
    for o in await client.list_operators():  # ended, and the region has a newer one
        if _same(o, started):
            return o
    return None


async def follow(client: PlacementClient, started: OperatorInfo, line: StatusLine) -> OperatorInfo:
    """Poll until ``started`` ends, showing its current step; its last state."""
    t0 = trio.current_time()
    while True:
        info = await _find(client, started)
        if info is None:
            raise CliError(
                f"region {started.region_id}: the placement service no longer knows the "
                f"{started.kind} operator (restarted?)"
            )
        if info.status != "running":
            return info
        line.update(f"region {info.region_id}: {info.kind} {step_text(info)}",
                    f"{trio.current_time() - t0:.0f}s")  # fmt: skip
        await trio.sleep(POLL_INTERVAL)


def run_operator(
    placement: str | None,
    data_dir: Path,
    start: Callable[[PlacementClient], Awaitable[OperatorInfo]],
    finish: Callable[[PlacementClient, OperatorInfo], Awaitable[_T]],
    *,
    wait: bool,
    timeout: float,
) -> tuple[OperatorInfo, _T | None]:
    """Start an operator with ``start``; unless ``wait`` is false, follow it for at most
    ``timeout`` seconds and, once it succeeded, run ``finish``. Returns the operator as
    started and what ``finish`` returned (None without waiting).

    Raises:
        CliError: the operator could not be started, ended without success, or is still
            running after ``timeout`` (it goes on; the message says how to follow it).
    """

    async def main(client: PlacementClient) -> tuple[OperatorInfo, _T | None]:
        started = await start(client)
        if not wait:
            return started, None
        final: OperatorInfo | None = None
        with StatusLine() as line, trio.move_on_after(timeout):
            final = await follow(client, started, line)
        if final is None:
            now = await _find(client, started)
            where = f" at step {step_text(now)}" if now is not None else ""
            raise CliError(
                f"region {started.region_id}: {started.kind} still running{where} after "
                f"{timeout:g} s; it goes on (`multiraft operator show {started.region_id}`, "
                f"`multiraft operator cancel {started.region_id}`)"
            )
        if final.status != "success":
            raise CliError(failure_message(final))
        return started, await finish(client, final)

    return run_with_placement(placement, data_dir, REQUEST_TIMEOUT, main)


def echo_started(o: OperatorInfo) -> None:
    """What ``--no-wait`` prints."""
    typer.echo(
        f"started {o.kind} on region {o.region_id} ({len(o.steps)} step(s)); follow it with "
        f"`multiraft operator show {o.region_id}`"
    )


def _duration(o: OperatorInfo) -> str:
    return "-" if o.finished_at is None else f"{o.finished_at - o.created_at:.1f}s"


@operator_app.command("list")
@cli_errors
def list_operators(
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """List operators: region, kind, status, progress, who made it, duration."""

    async def op(client: PlacementClient) -> list[OperatorInfo]:
        return await client.list_operators()

    ops = run_with_placement(placement, data_dir, timeout, op)
    if as_json:
        echo_json([operator_to_json(o) for o in ops])
        return
    if not ops:
        typer.echo("no operators")
        return
    echo_table(
        ["REGION", "KIND", "STATUS", "PROGRESS", "DESC", "DURATION"],
        [
            [
                o.region_id,
                o.kind,
                o.status,
                f"{o.step_index}/{len(o.steps)}",
                o.desc or "-",
                _duration(o),
            ]
            for o in ops
        ],
    )


@operator_app.command("show")
@cli_errors
def show_operator(
    region: RegionArg,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Show the region's operator (running, else the latest finished) and its steps."""

    async def op(client: PlacementClient) -> OperatorInfo | None:
        return await client.get_operator(region)

    info = run_with_placement(placement, data_dir, timeout, op)
    if info is None:
        raise CliError(f"region {region} has no operator")
    if as_json:
        echo_json(operator_to_json(info))
        return
    typer.echo(f"region {info.region_id}: {info.kind} ({info.desc or 'admin'}) [{info.status}]")
    for i, step in enumerate(info.steps):
        mark = "done" if i < info.step_index else ("now" if i == info.step_index else "")
        typer.echo(f"  {i + 1}. {step.describe()}" + (f"  [{mark}]" if mark else ""))


@operator_app.command("cancel")
@cli_errors
def cancel_operator(
    region: RegionArg,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Cancel the region's running operator."""

    async def op(client: PlacementClient) -> OperatorInfo:
        return await client.cancel_operator(region)

    info = run_with_placement(placement, data_dir, timeout, op)
    typer.echo(f"cancelled {info.kind} on region {info.region_id}")
