"""``multiraft region``: the regions of a cluster, as the placement service knows them.

``region list`` shows the routing table: each region's key range, epoch, peers and last
reported leader. (More subcommands, ``show``, ``key``, ``split``..., belong to this group.)
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from multiraft.cli.common import (
    DEFAULT_DATA_DIR_PATH,
    DataDirOption,
    HexOption,
    JsonOption,
    PlacementOption,
    TimeoutOption,
    cli_errors,
    echo_json,
    echo_table,
    format_bytes,
    parse_bytes,
    run_with_client,
)
from multiraft.client import Client
from multiraft.wire.placement_messages import RegionRoute
from regions.region import Peer, PeerRole

region_app = typer.Typer(help="Inspect the cluster's regions.", no_args_is_help=True)


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
