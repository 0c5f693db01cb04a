"""RegionCache: lookups at range boundaries, replacement on EpochNotMatch, leader hints."""

from __future__ import annotations

from multiraft.client import RegionCache
from multiraft.wire.placement_messages import RegionRoute, StoreInfo
from regions.region import Peer, PeerRole, Region, RegionEpoch


def region(rid: int, start: bytes, end: bytes, version: int = 1, conf_ver: int = 1) -> Region:
    base = rid * 10
    peers = [Peer(base + 1, 1), Peer(base + 2, 2), Peer(base + 3, 3)]
    return Region(rid, start, end, RegionEpoch(conf_ver, version), peers)


def route(r: Region, leader_store: int | None = None) -> RegionRoute:
    return RegionRoute(r, None if leader_store is None else r.peer_on_store(leader_store))


def three_regions() -> RegionCache:
    """[, c) -> 1, [c, m) -> 2, [m, ) -> 3."""
    cache = RegionCache()
    for r in (region(1, b"", b"c", 2), region(2, b"c", b"m", 2), region(3, b"m", b"", 2)):
        assert cache.insert(route(r, 1))
    return cache


def looked_up(cache: RegionCache, key: bytes) -> int | None:
    r = cache.lookup(key)
    return None if r is None else r.region.id


def test_lookup_at_boundaries() -> None:
    cache = three_regions()
    assert looked_up(cache, b"") == 1  # the empty key is the smallest key
    assert looked_up(cache, b"b\xff\xff") == 1
    assert looked_up(cache, b"c") == 2  # start keys are inclusive
    assert looked_up(cache, b"l\xff") == 2
    assert looked_up(cache, b"m") == 3  # end keys are exclusive
    assert looked_up(cache, b"\xff" * 10) == 3  # an empty end key is unbounded
    stats = cache.statistics()
    assert (stats.regions, stats.hits, stats.misses) == (3, 6, 0)


def test_lookup_misses_in_a_gap_and_on_an_empty_cache() -> None:
    cache = RegionCache()
    assert cache.lookup(b"a") is None
    cache.insert(route(region(1, b"", b"c")))
    cache.insert(route(region(3, b"m", b"")))
    assert looked_up(cache, b"b") == 1
    assert looked_up(cache, b"c") is None  # [c, m) is not cached
    assert looked_up(cache, b"k") is None
    assert looked_up(cache, b"m") == 3
    assert cache.statistics().misses == 3


def test_insert_evicts_every_overlapping_region() -> None:
    cache = three_regions()
    merged = region(9, b"b", b"n", version=5)  # overlaps all three
    assert cache.insert(route(merged))
    assert [r.region.id for r in cache.routes()] == [9]
    assert looked_up(cache, b"a") is None
    assert looked_up(cache, b"m") == 9


def test_insert_ignores_an_older_description() -> None:
    cache = three_regions()
    # The parent of 1 and 2 before their split (version 1 < 2): placement lagging behind.
    stale_parent = region(1, b"", b"m", version=1)
    assert not cache.insert(route(stale_parent))
    assert [r.region.id for r in cache.routes()] == [1, 2, 3]
    # The same region with an older conf_ver is stale too.
    assert not cache.insert(route(region(2, b"c", b"m", version=2, conf_ver=0)))
    # A newer description of the same region replaces it.
    newer = region(2, b"c", b"m", version=2, conf_ver=2)
    assert cache.insert(route(newer))
    got = cache.get(2)
    assert got is not None and got.region.epoch == RegionEpoch(2, 2)


def test_refresh_without_leader_keeps_the_known_leader() -> None:
    cache = three_regions()
    assert cache.insert(route(region(2, b"c", b"m", 2)))  # no leader in this description
    got = cache.get(2)
    assert got is not None and got.leader == Peer(21, 1)


def test_replace_on_epoch_not_match_installs_the_split_regions() -> None:
    cache = RegionCache()
    parent = region(1, b"", b"", version=1)
    cache.insert(route(parent, 1))
    left, right = region(1, b"", b"k", version=2), region(5, b"k", b"", version=2)
    cache.replace([left, right], refused=parent)
    assert [(r.region.id, r.region.epoch.version) for r in cache.routes()] == [(1, 2), (5, 2)]
    assert looked_up(cache, b"j") == 1
    assert looked_up(cache, b"k") == 5
    # The leader known for the parent's id is kept, since it is still one of its peers.
    got = cache.get(1)
    assert got is not None and got.leader == Peer(11, 1)


def test_replace_with_no_current_regions_evicts_the_refused_one() -> None:
    cache = three_regions()
    refused = region(2, b"c", b"m", 2)
    cache.replace([], refused=refused)
    assert looked_up(cache, b"d") is None  # ask placement next time
    assert [r.region.id for r in cache.routes()] == [1, 3]


def test_replace_from_a_lagging_store_keeps_the_newer_description() -> None:
    cache = three_regions()
    ours = region(2, b"c", b"m", 2)
    # The store still has version 1 of region 2 (it has not applied the split yet).
    cache.replace([region(2, b"c", b"z", 1)], refused=ours)
    got = cache.get(2)
    assert got is not None and got.region.epoch.version == 2 and got.region.end_key == b"m"


def test_leader_hint_updates_the_leader() -> None:
    cache = three_regions()
    assert cache.update_leader(2, Peer(23, 3))
    got = cache.lookup(b"d")
    assert got is not None and got.leader == Peer(23, 3)
    assert RegionCache.target(got) == Peer(23, 3)


def test_leader_hint_for_an_unknown_peer_evicts_the_stale_region() -> None:
    cache = three_regions()
    # Peer 77 is not among region 2's cached peers: our copy predates a conf change.
    assert not cache.update_leader(2, Peer(77, 4))
    assert cache.get(2) is None
    assert not cache.update_leader(42, Peer(1, 1))  # not cached at all


def test_switch_peer_cycles_through_the_voters() -> None:
    cache = RegionCache()
    r = region(1, b"", b"")
    r.peers.append(Peer(19, 4, PeerRole.Learner))
    cache.insert(route(r, 1))
    assert cache.switch_peer(1, Peer(11, 1)) == Peer(12, 2)
    assert cache.switch_peer(1, Peer(12, 2)) == Peer(13, 3)
    # Every voter failed: start again from the one after the last failure, never a learner.
    assert cache.switch_peer(1, Peer(13, 3)) == Peer(11, 1)
    assert cache.switch_peer(42, None) is None


def test_target_without_leader_is_the_first_voter() -> None:
    r = region(1, b"", b"")
    r.peers.insert(0, Peer(5, 9, PeerRole.Learner))
    assert RegionCache.target(RegionRoute(r, None)) == Peer(11, 1)


def test_store_addresses() -> None:
    cache = RegionCache()
    cache.set_stores([StoreInfo(1, "127.0.0.1:1"), StoreInfo(2, "127.0.0.1:2")])
    assert cache.store_address(2) == "127.0.0.1:2"
    cache.invalidate_store(2)
    assert cache.store_address(2) is None
    assert cache.statistics().stores == 1


def test_invalidate_and_clear() -> None:
    cache = three_regions()
    cache.invalidate(2)
    cache.invalidate(2)  # idempotent
    assert [r.region.id for r in cache.routes()] == [1, 3]
    assert cache.get(3) is not None
    cache.clear()
    assert cache.routes() == [] and cache.get(1) is None


def test_an_unreachable_store_forgets_every_region_it_led() -> None:
    cache = RegionCache()
    for i, (start, end, leader) in enumerate(((b"", b"g", 1), (b"g", b"p", 2), (b"p", b"", 1))):
        assert cache.insert(route(region(10 + i, start, end), leader))
    assert cache.invalidate_led_by(1) == 2
    assert [r.region.id for r in cache.routes()] == [11]
    assert cache.invalidate_led_by(1) == 0
