"""Key-range maths: half-open ranges where an empty end key is +infinity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regions.keyspace import (
    KeyRangeError,
    check_range,
    compare_end_keys,
    contains,
    covers,
    format_range,
    intersection,
    is_valid_range,
    max_end_key,
    middle_key,
    min_end_key,
    overlaps,
    split_range,
)

keys = st.binary(max_size=4)


def test_contains_half_open_and_unbounded() -> None:
    assert contains(b"a", b"c", b"a")
    assert contains(b"a", b"c", b"b\xff")
    assert not contains(b"a", b"c", b"c")
    assert not contains(b"a", b"c", b"")
    assert contains(b"", b"", b"")
    assert contains(b"a", b"", b"\xff" * 10)
    assert not contains(b"b", b"", b"a")


def test_end_keys_compare_with_empty_as_infinity() -> None:
    assert compare_end_keys(b"", b"") == 0
    assert compare_end_keys(b"", b"z") == 1
    assert compare_end_keys(b"z", b"") == -1
    assert compare_end_keys(b"a", b"b") == -1
    assert compare_end_keys(b"b", b"a") == 1
    assert min_end_key(b"", b"m") == b"m"
    assert max_end_key(b"", b"m") == b""
    assert min_end_key(b"a", b"b") == b"a"


def test_validity() -> None:
    assert is_valid_range(b"", b"")
    assert is_valid_range(b"a", b"b")
    assert not is_valid_range(b"b", b"b")
    assert not is_valid_range(b"c", b"b")
    with pytest.raises(KeyRangeError, match=r"\[b'c', b'b'\)"):
        check_range(b"c", b"b")
    assert format_range(b"", b"") == "[-inf, +inf)"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((b"a", b"c"), (b"b", b"d"), True),
        ((b"a", b"c"), (b"c", b"d"), False),  # touching is not overlapping
        ((b"a", b""), (b"z", b""), True),
        ((b"", b""), (b"q", b"r"), True),
        ((b"m", b""), (b"a", b"m"), False),
        ((b"m", b""), (b"a", b"m\x00"), True),
    ],
)
def test_overlaps(a: tuple[bytes, bytes], b: tuple[bytes, bytes], expected: bool) -> None:
    assert overlaps(*a, *b) is expected
    assert overlaps(*b, *a) is expected


def test_intersection() -> None:
    assert intersection(b"a", b"c", b"b", b"") == (b"b", b"c")
    assert intersection(b"", b"", b"k", b"") == (b"k", b"")
    assert intersection(b"a", b"b", b"b", b"c") is None


@given(keys, keys, keys, keys, keys)
@settings(derandomize=True, max_examples=300, deadline=None)
def test_overlap_and_intersection_agree_with_membership(
    a: bytes, b: bytes, c: bytes, d: bytes, probe: bytes
) -> None:
    a, b = sorted((a, b))
    c, d = sorted((c, d))
    r1 = (a, b if b > a else b"")
    r2 = (c, d if d > c else b"")
    both = contains(*r1, probe) and contains(*r2, probe)
    inter = intersection(*r1, *r2)
    assert (inter is not None and contains(*inter, probe)) == both
    if both:
        assert overlaps(*r1, *r2)
    assert overlaps(*r1, *r2) == (inter is not None)


def test_split_range_cuts_into_adjacent_pieces() -> None:
    assert split_range(b"", b"", [b"m"]) == [(b"", b"m"), (b"m", b"")]
    assert split_range(b"a", b"z", [b"c", b"k"]) == [(b"a", b"c"), (b"c", b"k"), (b"k", b"z")]


@pytest.mark.parametrize(
    ("start", "end", "split_keys", "message"),
    [
        (b"a", b"z", [], "no split key"),
        (b"a", b"z", [b"a"], "not after the start key"),
        (b"a", b"z", [b"0"], "not after the start key"),
        (b"a", b"z", [b"c", b"c"], "not after the previous key"),
        (b"a", b"z", [b"k", b"c"], "not after the previous key"),
        (b"a", b"z", [b"z"], "not before the end"),
        (b"a", b"z", [b"zz"], "not before the end"),
        (b"", b"", [b""], "not after the start key"),
        (b"z", b"a", [b"m"], "empty or reversed"),
    ],
)
def test_split_range_refuses(
    start: bytes, end: bytes, split_keys: list[bytes], message: str
) -> None:
    with pytest.raises(KeyRangeError, match=message):
        split_range(start, end, split_keys)


def test_middle_key_examples() -> None:
    assert middle_key(b"", b"") == b"\x80"
    assert middle_key(b"a", b"b") == b"a\x80"
    assert middle_key(b"\xff", b"") == b"\xff\x80"
    assert middle_key(b"", b"\x00\x01") == b"\x00\x00\x80"
    # Nothing lies strictly between a key and the same key with a zero byte appended.
    assert middle_key(b"a", b"a\x00") is None
    assert middle_key(b"", b"\x00") is None
    with pytest.raises(KeyRangeError):
        middle_key(b"b", b"a")


@given(keys, keys)
@settings(derandomize=True, max_examples=500, deadline=None)
def test_middle_key_is_strictly_inside_or_none_exists(a: bytes, b: bytes) -> None:
    start, end = sorted((a, b))
    if start == end:
        end = b""
    m = middle_key(start, end)
    if m is None:
        # No key in between: ``end`` is ``start`` followed by zero bytes only.
        assert end and end.startswith(start) and set(end[len(start) :]) == {0}
    else:
        assert start < m and (not end or m < end)
        split_range(start, end, [m])  # a valid split key


def test_covers() -> None:
    assert covers([(b"", b"m"), (b"m", b"")])
    assert covers([(b"a", b"c"), (b"c", b"d")], b"a", b"d")
    assert not covers([])
    assert not covers([(b"", b"m")])
    assert not covers([(b"", b"m"), (b"n", b"")])
    assert not covers([(b"", b""), (b"m", b"")])
    assert not covers([(b"a", b"")], b"", b"")
