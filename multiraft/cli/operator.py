"""``multiraft operator``: the placement service's operators (running and recently finished).

``operator list`` shows every running operator, then the recently finished ones;
``operator show REGION`` the region's operator with its steps; ``operator cancel REGION``
stops the region's running operator (a step already sent fails harmlessly: it carries the
epoch it was made for).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

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
    find_placement,
)
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError
from multiraft.wire.placement_messages import OperatorInfo

operator_app = typer.Typer(help="Inspect and cancel scheduling operators.", no_args_is_help=True)

_T = TypeVar("_T")
RegionArg = Annotated[int, typer.Argument(min=1, help="The region id.")]


def _run(
    placement: str | None,
    data_dir: Path,
    timeout: float,
    fn: Callable[[PlacementClient], Awaitable[_T]],
) -> _T:
    address = find_placement(placement, data_dir)

    async def main() -> _T:
        async with PlacementClient(address, timeout=timeout) as client:
            return await fn(client)

    try:
        return trio.run(main)
    except PlacementClientError as e:
        raise CliError(str(e)) from None


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

    ops = _run(placement, data_dir, timeout, op)
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

    info = _run(placement, data_dir, timeout, op)
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

    info = _run(placement, data_dir, timeout, op)
    typer.echo(f"cancelled {info.kind} on region {info.region_id}")
