"""``multiraft store``: the stores of a cluster, as the placement service knows them.

* ``store list``: each store with the number of regions it holds a peer of and leads,
  counted from the routing table;
* ``store show ID``: one store's state and liveness, heartbeat age, counts, balance
  scores, and what its last heartbeat reported (capacity, snapshots, uptime);
* ``store drain ID``: set the store Offline; placement moves every replica off it and
  then retires it (Tombstone: the id never comes back). The command follows the
  remaining replica count on a progress bar (stderr) until the store is a tombstone,
  then prints the store table. ``--no-wait`` returns at once; ``--cancel`` stops a
  drain (the store is Up again; replicas already moved stay where they are).
"""

from __future__ import annotations

from typing import Annotated, Any

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
    run_with_client,
    run_with_placement,
)
from multiraft.cli.operator import POLL_INTERVAL, REQUEST_TIMEOUT, NoWaitOption, wait_option
from multiraft.cli.progress import StatusLine, bar
from multiraft.client import Client
from multiraft.placement.client import PlacementClient
from multiraft.wire.placement_messages import RegionRoute, StoreInfo, StoreState, StoreStatus

store_app = typer.Typer(help="Inspect and drain the cluster's stores.", no_args_is_help=True)

StoreArg = Annotated[int, typer.Argument(min=1, help="The store id.", show_default=False)]
#: Seconds ``store drain`` follows the drain by default.
DEFAULT_DRAIN_WAIT = 3600.0


def _counts(routes: list[RegionRoute]) -> tuple[dict[int, int], dict[int, int]]:
    """Per store id: the regions it has a peer of, and the regions it leads."""
    regions: dict[int, int] = {}
    leaders: dict[int, int] = {}
    for r in routes:
        for p in r.region.peers:
            regions[p.store_id] = regions.get(p.store_id, 0) + 1
        if r.leader is not None:
            leaders[r.leader.store_id] = leaders.get(r.leader.store_id, 0) + 1
    return regions, leaders


def store_to_json(s: StoreInfo, regions: int, leaders: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "address": s.address,
        "metrics_address": s.metrics_address,
        "state": s.state.name,
        "version": s.version,
        "region_count": regions,
        "leader_count": leaders,
    }


@store_app.command("list")
@cli_errors
def list_stores(
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """List the stores: id, address, state, regions and leaders, metrics address, version."""

    async def op(client: Client) -> tuple[list[StoreInfo], list[RegionRoute]]:
        return await client.list_stores(), await client.list_regions()

    stores, routes = run_with_client(placement, data_dir, timeout, op)
    if as_json:
        regions, leaders = _counts(routes)
        echo_json([store_to_json(s, regions.get(s.id, 0), leaders.get(s.id, 0)) for s in stores])
        return
    echo_stores(stores, routes)


def echo_stores(stores: list[StoreInfo], routes: list[RegionRoute]) -> None:
    """The ``store list`` table."""
    regions, leaders = _counts(routes)
    rows = [
        (
            s.id,
            s.address,
            s.state.name,
            regions.get(s.id, 0),
            leaders.get(s.id, 0),
            s.metrics_address or "-",
            s.version or "-",
        )
        for s in stores
    ]
    echo_table(("ID", "ADDRESS", "STATE", "REGIONS", "LEADERS", "METRICS", "VERSION"), rows)


# -- show ------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _uptime(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    return f"{h}h {rest // 60:02d}m" if h else f"{rest // 60}m {rest % 60:02d}s"


def status_to_json(st: StoreStatus) -> dict[str, Any]:
    s = st.stats
    return {
        **store_to_json(st.info, st.region_count, st.leader_count),
        "liveness": st.liveness,
        "heartbeat_age_seconds": st.heartbeat_age,
        "region_size": st.region_size,
        "region_score": st.region_score,
        "leader_score": st.leader_score,
        "reported": None if s is None else {
            "region_count": s.region_count, "leader_count": s.leader_count,
            "used_bytes": s.used_bytes, "capacity_bytes": s.capacity_bytes,
            "available_bytes": s.available_bytes, "sending_snap_count": s.sending_snap_count,
            "receiving_snap_count": s.receiving_snap_count,
            "applying_snap_count": s.applying_snap_count, "is_busy": s.is_busy,
            "uptime_seconds": s.uptime_seconds,
        },
    }  # fmt: skip


def _state_text(st: StoreStatus) -> str:
    state = st.info.state
    if state == StoreState.Tombstone:
        return "Tombstone (drained and removed)"
    if state == StoreState.Offline:
        return f"Offline (draining: {st.region_count} replica(s) left)"
    if st.heartbeat_age is None:
        return "Up (no heartbeat since the placement service started)"
    if st.liveness == "up":
        return f"Up (heartbeat {st.heartbeat_age:.1f} s ago)"
    return f"Up, {st.liveness} (no heartbeat for {st.heartbeat_age:.0f} s)"


def echo_store_status(st: StoreStatus) -> None:
    """The ``store show`` text: one ``name: value`` line each."""
    s, i = st.stats, st.info
    lines = [
        ("address", i.address),
        ("metrics", i.metrics_address or "-"),
        ("version", i.version or "-"),
        ("state", _state_text(st)),
        ("regions", str(st.region_count) + (f" ({_size(st.region_size)} approximate)"
                                            if st.region_size > st.region_count else "")),
        ("leaders", str(st.leader_count)),
        ("scores", f"region {st.region_score:g}, leader {st.leader_score:g}"),
    ]
    if s is None:
        lines.append(("reported", "nothing since the placement service started"))
    else:
        lines += [
            ("reported", f"{s.region_count} regions, {s.leader_count} leaders"),
            ("capacity", f"{_size(s.capacity_bytes)}, {_size(s.available_bytes)} available, "
                         f"{_size(s.used_bytes)} used" if s.capacity_bytes else "not reported"),
            ("snapshots", f"sending {s.sending_snap_count}, receiving "
                          f"{s.receiving_snap_count}, applying {s.applying_snap_count}"),
            ("uptime", _uptime(s.uptime_seconds) + (", busy" if s.is_busy else "")),
        ]  # fmt: skip
    typer.echo(f"store {i.id}")
    width = max(len(k) for k, _ in lines) + 1
    for k, v in lines:
        typer.echo(f"  {(k + ':').ljust(width)} {v}")


@store_app.command("show")
@cli_errors
def show_store(
    store: StoreArg,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Show a store: state, heartbeat age, regions and leaders, scores, capacity."""

    async def op(client: PlacementClient) -> StoreStatus:
        return await client.store_status(store)

    st = run_with_placement(placement, data_dir, timeout, op)
    if as_json:
        echo_json(status_to_json(st))
    else:
        echo_store_status(st)


# -- drain -----------------------------------------------------------------------------------


async def _follow_drain(client: PlacementClient, store: int, line: StatusLine) -> None:
    """Poll until the store is a tombstone, showing the replicas left on a bar."""
    t0 = trio.current_time()
    total = 0
    while True:
        st = await client.store_status(store)
        if st.info.state == StoreState.Tombstone:
            return
        if st.info.state == StoreState.Up:
            raise CliError(f"the drain of store {store} was cancelled (it is Up again)")
        left = st.region_count
        total = max(total, left)
        if left:
            status = (f"store {store}: {bar(total - left, total)} {total - left}/{total} "
                      f"replicas moved, {left} left")  # fmt: skip
        else:
            status = f"store {store}: all replicas moved; waiting for it to confirm it holds none"
        line.update(status, f"{trio.current_time() - t0:.0f}s")
        await trio.sleep(POLL_INTERVAL)


@store_app.command("drain")
@cli_errors
def drain_store(
    store: StoreArg,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Stop draining the store (it is Up again).")
    ] = False,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: Annotated[float, wait_option(DEFAULT_DRAIN_WAIT)] = DEFAULT_DRAIN_WAIT,
) -> None:
    """Move every replica off a store, then retire it (Tombstone); print the stores."""

    async def op(client: PlacementClient) -> tuple[StoreInfo, list[StoreInfo] | None,
                                                    list[RegionRoute]]:  # fmt: skip
        if cancel:
            return await client.cancel_drain(store), None, []
        info = await client.drain_store(store)
        if no_wait:
            return info, None, []
        with StatusLine() as line, trio.move_on_after(timeout) as scope:
            await _follow_drain(client, store, line)
        if scope.cancelled_caught:
            left = (await client.store_status(store)).region_count
            raise CliError(
                f"store {store} still holds {left} replica(s) after {timeout:g} s; the drain "
                f"goes on (`multiraft store show {store}`, `multiraft store drain {store} "
                "--cancel`)"
            )
        return info, await client.get_all_stores(), await client.scan_regions(b"", b"")

    info, stores, routes = run_with_placement(placement, data_dir, REQUEST_TIMEOUT, op)
    if cancel:
        typer.echo(f"store {store}: drain cancelled; it is {info.state.name}")
    elif stores is None:
        typer.echo(f"store {store} is draining; follow it with `multiraft store show {store}`")
    elif as_json:
        regions, leaders = _counts(routes)
        echo_json([store_to_json(s, regions.get(s.id, 0), leaders.get(s.id, 0)) for s in stores])
    else:
        typer.echo(f"store {store} is drained and removed (Tombstone):")
        echo_stores(stores, routes)
