"""The routing table and region heartbeat acceptance: key lookups, scans, stale reports, splits."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from multiraft.placement.errors import PlacementFailure
from multiraft.placement.heartbeats import RegionRuntime, check_region_heartbeat
from multiraft.wire.placement_messages import PlacementErrorCode, RegionHeartbeat
from regions.region import Peer, Region, RegionEpoch
from regions.region_map import RegionMap

P = [Peer(1, 1), Peer(2, 2), Peer(3, 3)]


def region(rid: int, start: bytes, end: bytes, conf_ver: int = 1, version: int = 1) -> Region:
    return Region(rid, start, end, RegionEpoch(conf_ver, version), list(P))


def three() -> RegionMap:
    return RegionMap([region(2, b"g", b"p"), region(1, b"", b"g"), region(3, b"p", b"")])


def test_get_by_key_at_boundaries() -> None:
    m = three()
    cases = {
        b"": 1,
        b"\x00": 1,
        b"f\xff\xff": 1,
        b"g": 2,
        b"g\x00": 2,
        b"o\xff": 2,
        b"p": 3,
        b"zzzz": 3,
        b"\xff" * 40: 3,
    }
    for key, want in cases.items():
        got = m.get_by_key(key)
        assert got is not None and got.id == want, key


def test_gaps_and_an_empty_table_route_nowhere() -> None:
    assert RegionMap().get_by_key(b"a") is None
    m = RegionMap([region(1, b"b", b"d"), region(2, b"f", b"h")])
    assert [m.get_by_key(k) for k in (b"a", b"d", b"e", b"h", b"z")] == [None] * 5
    assert m.get_by_key(b"c") is not None and m.get_by_key(b"c").id == 1  # type: ignore[union-attr]


def test_scan_in_key_order_with_bounds_and_limit() -> None:
    m = three()

    def ids(regions: Iterable[Region]) -> list[int]:
        return [r.id for r in regions]

    assert ids(m.scan(b"", b"")) == [1, 2, 3]
    assert ids(m.scan(b"h", b"")) == [2, 3]
    assert ids(m.scan(b"a", b"g")) == [1]  # end is exclusive: "g" starts region 2
    assert ids(m.scan(b"a", b"g\x00")) == [1, 2]
    assert ids(m.scan(b"p", b"q")) == [3]
    assert ids(m.scan(b"", b"", 2)) == [1, 2]
    assert ids(iter(m)) == [1, 2, 3]
    assert len(m) == 3 and 2 in m and 4 not in m


def test_put_replaces_overlapped_regions() -> None:
    m = three()
    merged = region(4, b"f", b"q", version=3)
    removed = m.put(merged)
    assert sorted(r.id for r in removed) == [1, 2, 3]
    assert [r.id for r in m] == [4]
    assert m.get_by_key(b"a") is None and m.get(1) is None


def test_put_updates_a_region_in_place() -> None:
    m = three()
    assert m.put(region(2, b"g", b"k", version=2)) == []  # shrunk by a split: a gap appears
    assert m.get_by_key(b"l") is None
    assert m.get(2) is not None and m.get(2).end_key == b"k"  # type: ignore[union-attr]
    assert m.remove(2) is not None and m.remove(2) is None
    assert [r.id for r in m] == [1, 3]


# -- heartbeats -----------------------------------------------------------------------------------


def hb(r: Region, term: int = 5, leader: Peer = P[0]) -> RegionHeartbeat:
    return RegionHeartbeat(r, leader, term)


def check(m: RegionMap, h: RegionHeartbeat, terms: dict[int, int] | None = None) -> object:
    runtime = {rid: RegionRuntime(term=t) for rid, t in (terms or {}).items()}
    return check_region_heartbeat(m, runtime, h)


def code_of(m: RegionMap, h: RegionHeartbeat, terms: dict[int, int] | None = None) -> str:
    with pytest.raises(PlacementFailure) as info:
        check(m, h, terms)
    return info.value.code.name


def test_stale_epochs_and_terms_are_rejected() -> None:
    m = RegionMap([region(1, b"", b"", conf_ver=3, version=4)])
    assert code_of(m, hb(region(1, b"", b"", 2, 4))) == "StaleEpoch"  # older conf_ver
    assert code_of(m, hb(region(1, b"", b"", 3, 3))) == "StaleEpoch"  # older version
    assert code_of(m, hb(region(1, b"", b"", 4, 3))) == "StaleEpoch"  # compared separately
    assert code_of(m, hb(region(1, b"", b"", 3, 4), term=6), {1: 7}) == "StaleEpoch"
    same = check(m, hb(region(1, b"", b"", 3, 4), term=7), {1: 7})
    assert not same.changed  # type: ignore[attr-defined]
    newer = check(m, hb(region(1, b"", b"", 4, 4), term=2), {1: 7})  # new epoch: any term
    assert newer.changed  # type: ignore[attr-defined]


def test_a_split_replaces_the_parent_range() -> None:
    m = RegionMap([region(1, b"", b"", version=1)])
    # The new left region reports first: it overlaps the unsplit parent, which is older.
    left = region(2, b"", b"m", version=2)
    upd = check(m, hb(left))
    assert [r.id for r in upd.replaced] == [1] and upd.changed  # type: ignore[attr-defined]
    m.put(left)
    assert m.get_by_key(b"a").id == 2  # type: ignore[union-attr]
    assert m.get_by_key(b"x") is None  # the right half waits for its own heartbeat
    right = region(1, b"m", b"", version=2)  # the parent keeps its id (right derive)
    upd = check(m, hb(right))
    assert upd.replaced == [] and upd.changed  # type: ignore[attr-defined]
    m.put(right)
    assert [(r.id, r.start_key, r.end_key) for r in m] == [(2, b"", b"m"), (1, b"m", b"")]
    # The parent's late, pre-split report is stale now, by its own epoch...
    assert code_of(m, hb(region(1, b"", b"", version=1))) == "StaleEpoch"
    # ...and a region never seen that overlaps a newer one is stale too.
    assert code_of(m, hb(region(9, b"a", b"c", version=1))) == "StaleEpoch"


def test_malformed_descriptors_are_invalid() -> None:
    m = RegionMap()
    bad = [
        hb(Region(0, b"", b"", RegionEpoch(), list(P))),
        hb(Region(1, b"b", b"a", RegionEpoch(), list(P))),
        hb(Region(1, b"b", b"b", RegionEpoch(), list(P))),
        hb(Region(1, b"", b"", RegionEpoch(), [])),
        hb(Region(1, b"", b"", RegionEpoch(), [Peer(1, 1), Peer(1, 2)])),
        hb(Region(1, b"", b"", RegionEpoch(), [Peer(1, 1), Peer(2, 1)])),
        hb(region(1, b"", b""), leader=Peer(9, 9)),
        hb(region(1, b"", b""), leader=Peer(1, 2)),  # right id, wrong store
    ]
    for h in bad:
        assert code_of(m, h) == PlacementErrorCode.InvalidArgument.name
