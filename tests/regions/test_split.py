"""BatchSplit apply (deterministic, TiKV's rules) and the split policy."""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regions.keyspace import covers
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.split import MIB, SplitError, SplitPolicy, apply_batch_split


def parent() -> Region:
    return Region(
        7,
        b"b",
        b"x",
        RegionEpoch(conf_ver=4, version=9),
        [Peer(71, 1), Peer(72, 2, PeerRole.Learner), Peer(73, 3)],
    )


def test_right_derive_keeps_the_id_on_the_rightmost_range() -> None:
    p = parent()
    kids = apply_batch_split(p, [b"f", b"m"], [20, 21], [[201, 202, 203], [211, 212, 213]])
    assert [(r.id, r.start_key, r.end_key) for r in kids] == [
        (20, b"b", b"f"),
        (21, b"f", b"m"),
        (7, b"m", b"x"),
    ]
    for r in kids:
        assert r.epoch == RegionEpoch(conf_ver=4, version=11)  # version += 2
    # Peers are mapped position by position: same store, same role, new id.
    assert kids[0].peers == [Peer(201, 1), Peer(202, 2, PeerRole.Learner), Peer(203, 3)]
    assert kids[1].peers == [Peer(211, 1), Peer(212, 2, PeerRole.Learner), Peer(213, 3)]
    assert kids[2].peers == p.peers
    assert p == parent()  # the input is not modified


def test_left_derive_keeps_the_id_on_the_leftmost_range() -> None:
    kids = apply_batch_split(parent(), [b"f", b"m"], [20, 21], [[1, 2, 3], [4, 5, 6]], False)
    assert [(r.id, r.start_key, r.end_key) for r in kids] == [
        (7, b"b", b"f"),
        (20, b"f", b"m"),
        (21, b"m", b"x"),
    ]
    assert kids[0].peers == parent().peers
    assert [p.id for p in kids[1].peers] == [1, 2, 3]


def test_unbounded_region_splits() -> None:
    whole = Region(1, b"", b"", RegionEpoch(), [Peer(1, 1)])
    kids = apply_batch_split(whole, [b"k"], [2], [[5]])
    assert [(r.id, r.start_key, r.end_key) for r in kids] == [(2, b"", b"k"), (1, b"k", b"")]
    assert kids[0].epoch.version == 2


@pytest.mark.parametrize(
    ("keys", "ids", "peer_ids", "message"),
    [
        ([], [], [], "no split key"),
        ([b"b"], [20], [[1, 2, 3]], "not after the start key"),
        ([b"a"], [20], [[1, 2, 3]], "not after the start key"),
        ([b"x"], [20], [[1, 2, 3]], "not before the end"),
        ([b"m", b"f"], [20, 21], [[1, 2, 3], [4, 5, 6]], "previous key"),
        ([b"m", b"m"], [20, 21], [[1, 2, 3], [4, 5, 6]], "previous key"),
        ([b"m"], [20, 21], [[1, 2, 3]], "need 1 new region ids"),
        ([b"m"], [20], [[1, 2]], "needs 3 peer ids"),
        ([b"f", b"m"], [20, 20], [[1, 2, 3], [4, 5, 6]], "repeat"),
        ([b"m"], [0], [[1, 2, 3]], "repeat or are 0"),
        ([b"m"], [7], [[1, 2, 3]], "reuse the parent"),
        ([b"m"], [20], [[1, 71, 3]], "already used"),
        ([b"f", b"m"], [20, 21], [[1, 2, 3], [4, 5, 1]], "already used"),
    ],
)
def test_bad_splits_raise(
    keys: list[bytes], ids: list[int], peer_ids: list[list[int]], message: str
) -> None:
    with pytest.raises(SplitError, match=message):
        apply_batch_split(parent(), keys, ids, peer_ids)


@st.composite
def split_cases(draw: st.DrawFn) -> tuple[Region, list[bytes], list[int], list[list[int]], bool]:
    start = draw(st.binary(max_size=3))
    end = draw(st.one_of(st.just(b""), st.binary(min_size=1, max_size=3)))
    if end and end <= start:
        start, end = end, start if start > end else start + b"\x01"
    if end and end <= start:
        end = b""
    inside = st.binary(max_size=4).filter(lambda k: k > start and (not end or k < end))
    keys = sorted(set(draw(st.lists(inside, min_size=1, max_size=5))))
    n_peers = draw(st.integers(1, 5))
    peers = [
        Peer(100 + i, i + 1, draw(st.sampled_from([PeerRole.Voter, PeerRole.Learner])))
        for i in range(n_peers)
    ]
    region = Region(
        1, start, end, RegionEpoch(draw(st.integers(1, 9)), draw(st.integers(1, 9))), peers
    )
    ids = [10 + i for i in range(len(keys))]
    peer_ids = [[1000 + 10 * i + j for j in range(n_peers)] for i in range(len(keys))]
    return region, keys, ids, peer_ids, draw(st.booleans())


@given(split_cases(), st.lists(st.binary(max_size=5), max_size=20))
@settings(derandomize=True, max_examples=200, deadline=None)
def test_split_apply_is_deterministic_and_partitions_the_parent(
    case: tuple[Region, list[bytes], list[int], list[list[int]], bool], probes: list[bytes]
) -> None:
    region, keys, ids, peer_ids, right_derive = case
    first = apply_batch_split(region, keys, ids, peer_ids, right_derive)
    again = apply_batch_split(copy.deepcopy(region), keys, ids, peer_ids, right_derive)
    assert first == again  # identical inputs, identical regions (every replica agrees)
    assert len(first) == len(keys) + 1
    assert covers([(r.start_key, r.end_key) for r in first], region.start_key, region.end_key)
    assert sorted(r.id for r in first) == sorted([region.id, *ids])
    keeper = first[-1] if right_derive else first[0]
    assert keeper.id == region.id and keeper.peers == region.peers
    for r in first:
        assert r.epoch == RegionEpoch(region.epoch.conf_ver, region.epoch.version + len(keys))
        assert [(p.store_id, p.role) for p in r.peers] == [
            (p.store_id, p.role) for p in region.peers
        ]
    for k in [*probes, *keys, region.start_key]:
        holders = [r.id for r in first if r.contains(k)]
        assert len(holders) == (1 if region.contains(k) else 0)


# -- policy --------------------------------------------------------------------------------


def test_policy_defaults_follow_tikvs_formulas() -> None:
    local = SplitPolicy()
    assert local == SplitPolicy.local()
    assert (local.split_size_bytes, local.max_size_bytes) == (MIB, 3 * MIB // 2)
    assert (local.split_keys, local.max_keys) == (10_000, 15_000)
    assert local.batch_split_limit == 10
    tikv = SplitPolicy.tikv_defaults()
    assert (tikv.split_size_bytes, tikv.max_size_bytes) == (256 * MIB, 384 * MIB)
    assert (tikv.split_keys, tikv.max_keys) == (2_560_000, 3_840_000)
    assert tikv.check_diff_bytes == 16 * MIB
    assert SplitPolicy.from_split_size(96 * MIB).max_keys == 1_440_000
    assert SplitPolicy.from_split_size(1).max_size_bytes >= 1


def test_policy_validates() -> None:
    with pytest.raises(ValueError, match="split_size_bytes"):
        SplitPolicy(max_size_bytes=10, split_size_bytes=20)
    with pytest.raises(ValueError, match="split_keys"):
        SplitPolicy(max_keys=10, split_keys=0)
    with pytest.raises(ValueError, match="batch_split_limit"):
        SplitPolicy(batch_split_limit=0)


def test_should_split_on_size_or_keys() -> None:
    p = SplitPolicy(max_size_bytes=100, max_keys=10, split_size_bytes=60, split_keys=6)
    assert not p.should_split(99, 9)
    assert p.should_split(100, 0)
    assert p.should_split(0, 10)


def kv(*sizes: int, prefix: bytes = b"k") -> list[tuple[bytes, int]]:
    return [(prefix + bytes([i]), s) for i, s in enumerate(sizes)]


def test_choose_split_key_halves_by_size() -> None:
    p = SplitPolicy()
    assert p.choose_split_key(kv(10, 10, 10, 10)) == b"k\x02"
    assert p.choose_split_key(kv(30, 1, 1, 1)) == b"k\x01"
    assert p.choose_split_key(kv(1, 1, 1, 30)) == b"k\x03"
    assert p.choose_split_key(kv(1, 100)) == b"k\x01"  # nothing reaches half: the last key
    assert p.choose_split_key(kv(0, 0, 0, 0)) == b"k\x02"  # no sizes: by count
    assert p.choose_split_key(kv(5)) is None
    assert p.choose_split_key([]) is None


def test_choose_split_key_is_never_the_start_key() -> None:
    p = SplitPolicy()
    pairs = [(b"s", 1000), (b"t", 1)]
    assert p.choose_split_key(pairs, start_key=b"s") == b"t"
    assert p.choose_split_key([(b"s", 1000)], start_key=b"s") is None


def test_choose_split_key_validates_its_input() -> None:
    p = SplitPolicy()
    with pytest.raises(ValueError, match="strictly increasing"):
        p.choose_split_key([(b"b", 1), (b"a", 1)])
    with pytest.raises(ValueError, match="before the start key"):
        p.choose_split_key([(b"a", 1)], start_key=b"b")
    with pytest.raises(ValueError, match="negative"):
        p.choose_split_key([(b"a", -1)])


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=3), st.integers(0, 50)), max_size=30),
    st.binary(max_size=2),
)
@settings(derandomize=True, max_examples=300, deadline=None)
def test_choose_split_key_property(raw: list[tuple[bytes, int]], start: bytes) -> None:
    pairs = sorted({start + k: s for k, s in raw}.items())
    key = SplitPolicy().choose_split_key(pairs, start_key=start)
    if len(pairs) < 2:
        assert key is None
        return
    assert key is not None and key > start and key > pairs[0][0]
    weights = [s for _, s in pairs] if any(s for _, s in pairs) else [1] * len(pairs)
    i = [k for k, _ in pairs].index(key)
    left, total = sum(weights[:i]), sum(weights)
    # Either the left half reaches half, or no key gets there and the last key is taken.
    assert 2 * left >= total or i == len(pairs) - 1
    # And it is the first such key.
    assert all(2 * sum(weights[:j]) < total for j in range(1, i))


def test_scan_split_keys_cuts_pieces_of_the_target_size() -> None:
    p = SplitPolicy(max_size_bytes=150, max_keys=10**6, split_size_bytes=100, split_keys=10**5)
    pairs = kv(*[10] * 35)  # 350 bytes
    keys = p.scan_split_keys(pairs)
    assert keys == [b"k\x0a", b"k\x14", b"k\x1e"]  # pieces of 100, 100, 100, and a 50 tail
    # A tail smaller than max - split (here 50) drops the last key.
    assert p.scan_split_keys(kv(*[10] * 34)) == [b"k\x0a", b"k\x14"]
    assert p.scan_split_keys(kv(*[10] * 10)) == []


def test_scan_split_keys_by_key_count_and_limit() -> None:
    p = SplitPolicy(
        max_size_bytes=10**9,
        max_keys=15,
        split_size_bytes=10**9,
        split_keys=10,
        batch_split_limit=2,
    )
    pairs = kv(*[1] * 100)
    assert p.scan_split_keys(pairs) == [b"k\x0a", b"k\x14"]  # limited to 2
    assert p.scan_split_keys(kv(*[1] * 14)) == []  # the tail of 4 keys is too small


def test_scan_split_keys_never_start_key() -> None:
    p = SplitPolicy(max_size_bytes=2, max_keys=10, split_size_bytes=1, split_keys=5)
    assert p.scan_split_keys([(b"a", 5), (b"b", 5), (b"c", 5)], start_key=b"a") == [b"b", b"c"]


@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=3), st.integers(0, 40)), max_size=60),
    st.integers(1, 4),
)
@settings(derandomize=True, max_examples=300, deadline=None)
def test_scan_split_keys_property(raw: list[tuple[bytes, int]], limit: int) -> None:
    p = SplitPolicy(
        max_size_bytes=150,
        max_keys=15,
        split_size_bytes=100,
        split_keys=10,
        batch_split_limit=limit,
    )
    pairs = sorted(dict(raw).items())
    keys = p.scan_split_keys(pairs, start_key=b"")
    assert len(keys) <= limit
    assert keys == sorted(set(keys)) and all(k > pairs[0][0] for k in keys)
    # Every piece but the last reaches the target size or key count.
    bounds = [pairs[0][0] if pairs else b"", *keys]
    for lo, hi in itertools.pairwise(bounds):
        piece = [s for k, s in pairs if lo <= k < hi]
        assert sum(piece) >= p.split_size_bytes or len(piece) >= p.split_keys
