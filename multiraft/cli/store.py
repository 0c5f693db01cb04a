"""``multiraft store``: the stores of a cluster, as the placement service knows them.

``store list`` shows each store with the number of regions it holds a peer of and leads,
counted from the routing table.
"""

from __future__ import annotations

from typing import Any

import typer

from multiraft.cli.common import (
    DEFAULT_DATA_DIR_PATH,
    DataDirOption,
    JsonOption,
    PlacementOption,
    TimeoutOption,
    cli_errors,
    echo_json,
    echo_table,
    run_with_client,
)
from multiraft.client import Client
from multiraft.wire.placement_messages import RegionRoute, StoreInfo

store_app = typer.Typer(help="Inspect the cluster's stores.", no_args_is_help=True)


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
    regions, leaders = _counts(routes)
    if as_json:
        echo_json([store_to_json(s, regions.get(s.id, 0), leaders.get(s.id, 0)) for s in stores])
        return
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
