"""The sorted region map: lookups, replacement by newer epochs, gaps, siblings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regions.keyspace import covers, middle_key
from regions.region import Peer, Region, RegionEpoch
from regions.region_map import RegionMap
from regions.split import apply_batch_split


def reg(rid: int, start: bytes, end: bytes, version: int = 1, conf_ver: int = 1) -> Region:
    return Region(rid, start, end, RegionEpoch(conf_ver, version), [Peer(rid * 10, 1)])


def three() -> RegionMap:
    return RegionMap([reg(1, b"", b"g"), reg(2, b"g", b"p"), reg(3, b"p", b"")])


def test_lookups() -> None:
    m = three()
    m.check()
    assert len(m) == 3 and 2 in m and 4 not in m
    assert [r.id for r in m] == [1, 2, 3]
    assert m.get(2) is not None and m.get(9) is None
    assert m.get_by_key(b"").id == 1  # type: ignore[union-attr]
    assert m.get_by_key(b"f\xff").id == 1  # type: ignore[union-attr]
    assert m.get_by_key(b"g").id == 2  # type: ignore[union-attr]
    assert m.get_by_key(b"\xff\xff").id == 3  # type: ignore[union-attr]


def test_range_queries() -> None:
    m = three()
    assert [r.id for r in m.overlapping(b"a", b"h")] == [1, 2]
    assert [r.id for r in m.overlapping(b"g", b"p")] == [2]
    assert [r.id for r in m.overlapping(b"q", b"")] == [3]
    assert [r.id for r in m.scan(b"")] == [1, 2, 3]
    assert [r.id for r in m.scan(b"", limit=2)] == [1, 2]
    assert [r.id for r in m.scan(b"h", b"i")] == [2]
    assert m.gaps() == []


def test_gaps() -> None:
    m = RegionMap([reg(1, b"b", b"d"), reg(2, b"f", b"h")])
    assert m.gaps() == [(b"", b"b"), (b"d", b"f"), (b"h", b"")]
    assert m.gaps(b"c", b"g") == [(b"d", b"f")]
    assert m.get_by_key(b"e") is None and m.get_by_key(b"a") is None
    assert RegionMap().gaps() == [(b"", b"")]
    assert RegionMap([reg(1, b"", b"")]).gaps() == []


def test_put_replaces_overlaps_and_the_same_id() -> None:
    m = three()
    removed = m.put(reg(4, b"e", b"q", version=2))
    assert [r.id for r in removed] == [1, 2, 3]
    assert [r.id for r in m] == [4]
    m.put(reg(4, b"a", b"b", version=3))  # same id, moved range: the old entry goes
    assert [(r.id, r.start_key) for r in m] == [(4, b"a")]
    m.check()
    with pytest.raises(ValueError, match="empty range"):
        m.put(reg(5, b"b", b"b"))
    assert m.remove(4) is not None and m.remove(4) is None and len(m) == 0


def test_update_refuses_stale_descriptors() -> None:
    m = three()
    # Same id with an older component: stale either way.
    m.put(reg(2, b"g", b"p", version=3, conf_ver=3))
    assert m.update(reg(2, b"g", b"p", version=2, conf_ver=9)) is None
    assert m.update(reg(2, b"g", b"p", version=9, conf_ver=2)) is None
    # Overlapping a region whose version is newer: the report predates a split.
    assert m.update(reg(9, b"f", b"h", version=2)) is None
    assert m.stale_against(reg(9, b"f", b"h", version=2)) is m.get(2)
    # Equal or newer versions win, and the older overlapped regions go.
    assert [r.id for r in m.update(reg(9, b"f", b"h", version=3)) or []] == [1, 2]
    assert m.get(2) is None and m.get_by_key(b"g").id == 9  # type: ignore[union-attr]
    m.check()


def split_all(m: RegionMap, rid: int, keys: list[bytes], ids: list[int]) -> list[Region]:
    parent = m.get(rid)
    assert parent is not None
    kids = apply_batch_split(parent, keys, ids, [[i * 10] for i in ids])
    for k in kids:
        assert m.update(k) is not None
    return kids


def test_siblings_after_splits_right_derive() -> None:
    m = RegionMap([reg(1, b"", b"")])
    split_all(m, 1, [b"m"], [2])  # 2=[, m) 1=[m, ) v2
    split_all(m, 1, [b"t"], [3])  # 3=[m, t) 1=[t, ) v3
    assert [r.id for r in m] == [2, 3, 1]
    # A client at version 1 missed two splits of region 1: 3, and 2 before it.
    assert [r.id for r in m.siblings(1, requested_version=1)] == [1, 3, 2]
    assert [r.id for r in m.siblings(1, requested_version=2)] == [1, 3]
    assert [r.id for r in m.siblings(1, requested_version=3)] == [1]
    assert [r.id for r in m.siblings(1, requested_version=1, limit=1)] == [1, 3]
    assert m.siblings(42, requested_version=1) == []


def test_siblings_without_right_derive_walk_right() -> None:
    m = RegionMap([reg(1, b"", b"")])
    kids = apply_batch_split(m.get(1), [b"m"], [2], [[20]], right_derive=False)  # type: ignore[arg-type]
    for k in kids:
        m.update(k)
    assert [r.id for r in m.siblings(1, 1, right_derive=False)] == [1, 2]


def test_siblings_count_a_later_split_of_a_sibling() -> None:
    # A splits into B, A; then B splits into C, B: B has the greater version.
    m = RegionMap([reg(1, b"", b"")])
    split_all(m, 1, [b"m"], [2])  # 2=[, m) v2, 1=[m, ) v2
    split_all(m, 2, [b"f"], [3])  # 3=[, f) v3, 2=[f, m) v3
    assert [r.id for r in m.siblings(1, requested_version=1)] == [1, 2, 3]


@st.composite
def split_plans(draw: st.DrawFn) -> list[tuple[int, int, bool]]:
    """(which region to split, how many keys, whether to report children out of order)."""
    n = draw(st.integers(1, 25))
    return [
        (draw(st.integers(0, 10_000)), draw(st.integers(1, 3)), draw(st.booleans()))
        for _ in range(n)
    ]


@given(split_plans())
@settings(derandomize=True, max_examples=100, deadline=None)
def test_random_splits_keep_the_map_tiled(plan: list[tuple[int, int, bool]]) -> None:
    m = RegionMap([reg(1, b"", b"")])
    next_id = 2
    for pick, count, reverse in plan:
        regions = list(m)
        parent = regions[pick % len(regions)]
        keys: list[bytes] = []
        lo = parent.start_key
        for _ in range(count):
            k = middle_key(lo, parent.end_key)
            if k is None:
                break
            keys.append(k)
            lo = k
        if not keys:
            continue
        ids = list(range(next_id, next_id + len(keys)))
        next_id += len(keys)
        kids = apply_batch_split(parent, keys, ids, [[i * 10] for i in ids])
        for kid in reversed(kids) if reverse else kids:
            assert m.update(kid) is not None
            m.check()
        # A late report of the parent, as it was before the split, is refused.
        assert m.update(parent) is None
        assert covers([(r.start_key, r.end_key) for r in m])
        assert m.gaps() == []
    assert len(m) == next_id - 1
    for r in m:
        assert m.get_by_key(r.start_key) is r
