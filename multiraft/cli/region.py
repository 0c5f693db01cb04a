"""``multiraft region``: the regions of a cluster, and the operations an operator runs on one.

* ``region list``: the routing table: each region's key range, epoch, peers and last
  reported leader;
* ``region show ID``: one region with its peers' roles and health, its size, and its
  running (else latest) operator;
* ``region split ID [--key K]``, ``region move ID --from S --to S``,
  ``region transfer-leader ID --to S``: start a manual operator, follow it on a status
  line on stderr (:func:`multiraft.cli.operator.run_operator`) and print the result: the
  regions that now cover the old range, the region's new placement, the new leader.
  ``--no-wait`` returns once the operator is started. An operator that ends without
  success (timeout, cancelled, stale) or cannot start (say, the region already has
  one) is a one-line error, exit status 1.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any

import trio
import typer

from multiraft.cli.common import (
    DEFAULT_DATA_DIR_PATH,
    CliError,
    DataDirOption,
    HexOption,
    JsonOption,
    PlacementOption,
    TimeoutOption,
    UsageError,
    cli_errors,
    echo_json,
    echo_table,
    format_bytes,
    parse_bytes,
    run_with_client,
    run_with_placement,
)
from multiraft.cli.operator import (
    POLL_INTERVAL,
    NoWaitOption,
    echo_started,
    operator_to_json,
    run_operator,
    step_text,
    wait_option,
)
from multiraft.client import Client
from multiraft.placement.client import PlacementClient
from multiraft.wire.placement_messages import (
    ManualOperator,
    OperatorInfo,
    RegionRoute,
    RegionStatus,
)
from regions.region import Peer, PeerRole

region_app = typer.Typer(
    help="Inspect the cluster's regions; split, move and transfer them.", no_args_is_help=True
)

RegionArg = Annotated[int, typer.Argument(min=1, help="The region id.", show_default=False)]


def _store_option(name: str, help_: str) -> Any:
    return typer.Option(name, min=1, metavar="STORE", help=help_, show_default=False)


#: Seconds ``split``/``move``/``transfer-leader`` follow their operator by default.
DEFAULT_WAIT = 600.0
WaitOption = Annotated[float, wait_option(DEFAULT_WAIT)]
#: After a split: seconds to wait for the new regions' first reports (the parent's
#: report ends the operator; the regions carved out of it report on their own).
COVER_WAIT = 10.0


def peer_to_json(p: Peer) -> dict[str, Any]:
    return {"id": p.id, "store_id": p.store_id, "role": p.role.name}


def route_to_json(r: RegionRoute, hex_: bool) -> dict[str, Any]:
    """A region as JSON; an empty ``end_key`` means "to the end of the key space"."""
    region = r.region
    return {
        "id": region.id,
        "start_key": format_bytes(region.start_key, hex_),
        "end_key": format_bytes(region.end_key, hex_),
        "epoch": {"conf_ver": region.epoch.conf_ver, "version": region.epoch.version},
        "peers": [peer_to_json(p) for p in region.peers],
        "leader": None if r.leader is None else peer_to_json(r.leader),
    }


def _peer_text(p: Peer) -> str:
    role = "" if p.role == PeerRole.Voter else f"({p.role.name.lower()})"
    return f"{p.id}@{p.store_id}{role}"


def _key_text(key: bytes, hex_: bool, empty: str) -> str:
    return empty if not key else format_bytes(key, hex_)


@region_app.command("list")
@cli_errors
def list_regions(
    start: Annotated[str, typer.Option("--start", help="From the region holding this key.")] = "",
    end: Annotated[str, typer.Option("--end", help="Up to this key (exclusive).")] = "",
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many (0: all).")] = 0,
    hex_: HexOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """List regions in key order: id, key range, epoch, peers (peer@store), leader."""
    lo = parse_bytes(start, hex_)
    hi = parse_bytes(end, hex_)

    async def op(client: Client) -> list[RegionRoute]:
        return await client.list_regions(lo, hi, limit)

    routes = run_with_client(placement, data_dir, timeout, op)
    if as_json:
        echo_json([route_to_json(r, hex_) for r in routes])
        return
    echo_regions(routes, hex_)


def echo_regions(routes: list[RegionRoute], hex_: bool = False) -> None:
    """The ``region list`` table."""
    rows = [
        (
            r.region.id,
            _key_text(r.region.start_key, hex_, "(min)"),
            _key_text(r.region.end_key, hex_, "(max)"),
            f"{r.region.epoch.conf_ver}/{r.region.epoch.version}",
            ",".join(_peer_text(p) for p in r.region.peers),
            "-" if r.leader is None else _peer_text(r.leader),
        )
        for r in routes
    ]
    echo_table(("ID", "START", "END", "EPOCH(conf/ver)", "PEERS(peer@store)", "LEADER"), rows)


# -- show ----------------------------------------------------------------------------------------


def status_to_json(st: RegionStatus, hex_: bool) -> dict[str, Any]:
    return {
        **route_to_json(st.route, hex_),
        "down_peers": [{"peer": peer_to_json(d.peer), "down_seconds": d.down_seconds}
                       for d in st.down_peers],
        "pending_peers": [peer_to_json(p) for p in st.pending_peers],
        "approximate_size": st.approximate_size,
        "approximate_keys": st.approximate_keys,
        "heartbeat_age_seconds": st.heartbeat_age,
        "operator": None if st.operator is None else operator_to_json(st.operator),
    }  # fmt: skip


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def echo_region_status(st: RegionStatus, hex_: bool = False) -> None:
    """The ``region show`` text."""
    region, leader = st.route.region, st.route.leader
    lo = _key_text(region.start_key, hex_, "(min)")
    hi = _key_text(region.end_key, hex_, "(max)")
    typer.echo(f"region {region.id}  [{lo}, {hi})  epoch conf_ver {region.epoch.conf_ver}, "
               f"version {region.epoch.version}")  # fmt: skip
    if st.heartbeat_age is None:
        typer.echo("no leader report since the placement service started")
    else:
        typer.echo(f"approximate size {_size_text(st.approximate_size)}, "
                   f"{st.approximate_keys} keys (leader report {st.heartbeat_age:.1f} s ago)")  # fmt: skip
    down = {d.peer.id: d.down_seconds for d in st.down_peers}
    pending = {p.id for p in st.pending_peers}
    rows = []
    for p in region.peers:
        health = [f"down {down[p.id]} s"] if p.id in down else []
        health += ["pending"] if p.id in pending else []
        is_leader = leader is not None and leader.id == p.id
        rows.append((p.id, p.store_id, p.role.name, "*" if is_leader else "",
                     ", ".join(health) or "ok"))  # fmt: skip
    echo_table(("PEER", "STORE", "ROLE", "LEADER", "HEALTH"), rows)
    op = st.operator
    if op is None:
        typer.echo("operator: none")
    else:
        took = "" if op.finished_at is None else f" in {op.finished_at - op.created_at:.1f} s"
        typer.echo(f"operator: {op.kind} ({op.desc or 'admin'}) {op.status}{took}, "
                   f"step {step_text(op)}")  # fmt: skip


@region_app.command("show")
@cli_errors
def show_region(
    region: RegionArg,
    hex_: HexOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Show a region: range, epoch, peers (role, leader, down/pending), size, operator."""

    async def op(client: PlacementClient) -> RegionStatus | None:
        return await client.region_status(region)

    st = run_with_placement(placement, data_dir, timeout, op)
    if st is None:
        raise CliError(f"region {region} not found")
    if as_json:
        echo_json(status_to_json(st, hex_))
    else:
        echo_region_status(st, hex_)


# -- operations ------------------------------------------------------------------------------


async def _route(client: PlacementClient, region: int) -> RegionRoute:
    route = await client.get_region_by_id(region)
    if route is None:
        raise CliError(f"region {region} not found")
    return route


def _covers(routes: list[RegionRoute], start: bytes, end: bytes) -> bool:
    """Whether ``routes`` (in key order) cover ``[start, end)`` without a gap."""
    if not routes or routes[0].region.start_key > start:
        return False
    for a, b in pairwise(routes):
        if a.region.end_key != b.region.start_key:
            return False
    last = routes[-1].region.end_key
    return last == b"" or (end != b"" and last >= end)


def _store(value: int | None, option: str) -> int:
    if value is None:
        raise UsageError(f"{option} STORE is required")
    return value


@region_app.command("split")
@cli_errors
def split_region(
    region: RegionArg,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Split at this key (default: the store picks the middle).",
                     show_default=False),
    ] = None,
    hex_: HexOption = False,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: WaitOption = DEFAULT_WAIT,
) -> None:
    """Split a region in two (at --key, or in the middle); print the regions that result."""
    split_key = parse_bytes(key, hex_) if key is not None else b""
    if key is not None and not split_key:
        raise UsageError("--key must not be empty (leave it out to split in the middle)")
    old: list[RegionRoute] = []

    async def start(client: PlacementClient) -> OperatorInfo:
        old.append(await _route(client, region))
        return await client.add_operator(ManualOperator.SplitRegion, region, split_key=split_key)

    async def finish(client: PlacementClient, _op: OperatorInfo) -> list[RegionRoute]:
        lo, hi = old[0].region.start_key, old[0].region.end_key
        routes = await client.scan_regions(lo, hi)
        with trio.move_on_after(COVER_WAIT):
            while not _covers(routes, lo, hi):
                await trio.sleep(POLL_INTERVAL)
                routes = await client.scan_regions(lo, hi)
        return routes

    started, routes = run_operator(placement, data_dir, start, finish, wait=not no_wait,
                                   timeout=timeout)  # fmt: skip
    if routes is None:
        echo_started(started)
        return
    if as_json:
        echo_json([route_to_json(r, hex_) for r in routes])
        return
    typer.echo(f"region {region} split; the regions covering its old range:")
    echo_regions(routes, hex_)
    lo, hi = old[0].region.start_key, old[0].region.end_key
    if not _covers(routes, lo, hi):
        typer.echo("(part of the old range is not reported yet: `multiraft region list`)")


@region_app.command("move")
@cli_errors
def move_region(
    region: RegionArg,
    from_store: Annotated[int | None, _store_option("--from", "The store to move off.")] = None,
    to_store: Annotated[int | None, _store_option("--to", "The store to move to.")] = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: WaitOption = DEFAULT_WAIT,
) -> None:
    """Move a region's replica from one store to another; print its new placement."""
    src, dst = _store(from_store, "--from"), _store(to_store, "--to")
    if src == dst:
        raise UsageError(f"--from and --to are the same store ({src})")

    async def start(client: PlacementClient) -> OperatorInfo:
        return await client.add_operator(
            ManualOperator.MovePeer, region, from_store=src, to_store=dst
        )

    async def finish(client: PlacementClient, _op: OperatorInfo) -> RegionRoute:
        return await _route(client, region)

    started, route = run_operator(placement, data_dir, start, finish, wait=not no_wait,
                                  timeout=timeout)  # fmt: skip
    if route is None:
        echo_started(started)
    elif as_json:
        echo_json(route_to_json(route, False))
    else:
        typer.echo(f"region {region} moved from store {src} to store {dst}:")
        echo_regions([route])


@region_app.command("transfer-leader")
@cli_errors
def transfer_leader(
    region: RegionArg,
    to_store: Annotated[int | None, _store_option("--to", "The new leader's store.")] = None,
    no_wait: NoWaitOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: WaitOption = DEFAULT_WAIT,
) -> None:
    """Move a region's leadership to its voter on another store; print the new leader."""
    dst = _store(to_store, "--to")

    async def start(client: PlacementClient) -> OperatorInfo:
        return await client.add_operator(ManualOperator.TransferLeader, region, to_store=dst)

    async def finish(client: PlacementClient, _op: OperatorInfo) -> RegionRoute:
        return await _route(client, region)

    started, route = run_operator(placement, data_dir, start, finish, wait=not no_wait,
                                  timeout=timeout)  # fmt: skip
    if route is None:
        echo_started(started)
    elif as_json:
        echo_json(route_to_json(route, False))
    elif route.leader is None:
        typer.echo(f"region {region}: the leadership moved to store {dst}")
    else:
        typer.echo(f"region {region}: the leader is now peer {route.leader.id} on store "
                   f"{route.leader.store_id}")  # fmt: skip
