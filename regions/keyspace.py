"""Key-range maths on half-open byte ranges ``[start, end)``.

Conventions (metapb ``Region``):

* Keys are compared as byte strings (lexicographically); ``b""`` is the
  smallest key, so an empty **start** simply means "from the beginning".
* An empty **end** means +infinity: ``[start, b"")`` runs to the end of the
  key space. This is the only place the two empties differ, and every
  comparison of end keys goes through :func:`compare_end_keys` (or the helpers
  built on it) so that ``b""`` is never taken for the smallest end.
* A range is valid when ``start < end`` or ``end`` is empty. The empty range
  has no keys and is never a valid region range.

Everything here is pure and total: invalid input raises :class:`KeyRangeError`
(a ``ValueError``) with a message that names the offending key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "KeyRange",
    "KeyRangeError",
    "check_range",
    "compare_end_keys",
    "contains",
    "covers",
    "end_key_after",
    "format_key",
    "format_range",
    "intersection",
    "is_valid_range",
    "max_end_key",
    "middle_key",
    "min_end_key",
    "overlaps",
    "split_range",
]

#: A half-open range ``(start, end)``; ``end == b""`` is +infinity.
KeyRange = tuple[bytes, bytes]


class KeyRangeError(ValueError):
    """An invalid range or split key."""


def format_key(key: bytes) -> str:
    """A short printable form of ``key`` for messages (``-inf``/``+inf`` are the caller's)."""
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def format_range(start: bytes, end: bytes) -> str:
    """``[start, end)`` with ``-inf``/``+inf`` for the empty bounds."""
    lo = format_key(start) if start else "-inf"
    hi = format_key(end) if end else "+inf"
    return f"[{lo}, {hi})"


def is_valid_range(start: bytes, end: bytes) -> bool:
    """Whether ``[start, end)`` holds at least one key."""
    return not end or start < end


def check_range(start: bytes, end: bytes) -> None:
    """Raise :class:`KeyRangeError` unless ``[start, end)`` is a valid (non-empty) range."""
    if not is_valid_range(start, end):
        raise KeyRangeError(f"empty or reversed range {format_range(start, end)}")


def contains(start: bytes, end: bytes, key: bytes) -> bool:
    """Whether ``key`` lies in ``[start, end)``."""
    return start <= key and (not end or key < end)


def compare_end_keys(a: bytes, b: bytes) -> int:
    """-1, 0 or 1 as end key ``a`` is before, equal to or after end key ``b`` (empty: +inf)."""
    if a == b:
        return 0
    if not a:
        return 1
    if not b:
        return -1
    return -1 if a < b else 1


def end_key_after(end: bytes, key: bytes) -> bool:
    """Whether the end bound ``end`` lies strictly after ``key`` (i.e. ``key < end``)."""
    return not end or key < end


def min_end_key(a: bytes, b: bytes) -> bytes:
    """The smaller of two end keys (empty: +inf)."""
    return a if compare_end_keys(a, b) <= 0 else b


def max_end_key(a: bytes, b: bytes) -> bytes:
    """The larger of two end keys (empty: +inf)."""
    return a if compare_end_keys(a, b) >= 0 else b


def overlaps(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    """Whether the valid ranges ``[a_start, a_end)`` and ``[b_start, b_end)`` share a key."""
    return end_key_after(b_end, a_start) and end_key_after(a_end, b_start)


def intersection(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> KeyRange | None:
    """The common part of two valid ranges, or None when they share no key."""
    start = max(a_start, b_start)
    end = min_end_key(a_end, b_end)
    return (start, end) if is_valid_range(start, end) else None


def split_range(start: bytes, end: bytes, split_keys: Iterable[bytes]) -> list[KeyRange]:
    """Cut ``[start, end)`` at ``split_keys`` into ``len(split_keys) + 1`` adjacent ranges.

    The keys must be strictly increasing and strictly inside the range: each is
    greater than ``start`` (a split at the start key would make an empty
    region, tikv/tikv#14552) and, when ``end`` is bounded, smaller than it.

    Raises:
        KeyRangeError: no split key, an invalid range, or a key out of order or
            not strictly inside.
    """
    check_range(start, end)
    keys = list(split_keys)
    if not keys:
        raise KeyRangeError(f"no split key for {format_range(start, end)}")
    previous = start
    for k in keys:
        if k <= previous:
            what = (
                "the start key" if previous == start else f"the previous key {format_key(previous)}"
            )
            raise KeyRangeError(
                f"split key {format_key(k)} is not after {what} in {format_range(start, end)}"
            )
        if not end_key_after(end, k):
            raise KeyRangeError(
                f"split key {format_key(k)} is not before the end of {format_range(start, end)}"
            )
        previous = k
    bounds = [start, *keys, end]
    return [(bounds[i], bounds[i + 1]) for i in range(len(keys) + 1)]


def middle_key(start: bytes, end: bytes) -> bytes | None:
    """A key strictly inside ``(start, end)`` near the middle of the range, or None if none exists.

    Byte strings are read as base-256 fractions ``0.b1 b2 b3 ...``. Both bounds are
    padded with zeros to one byte more than the longer of them (an empty end is
    1.0), the average is taken, and trailing zero bytes are dropped. The extra
    byte makes the padded bounds differ by at least 256 whenever any key lies
    between them, so the average is strictly between; dropping trailing zeros
    keeps it so (the result is a prefix of the average, and it is still greater
    than ``start``). Between ``b"a"`` and ``b"a\\x00"`` there is no key: None.

    This is the *range* middle, for an explicit split of a region with no data
    to weigh; :meth:`regions.split.SplitPolicy.choose_split_key` picks the
    middle by size.
    """
    check_range(start, end)
    width = max(len(start), len(end)) + 1
    lo = int.from_bytes(start.ljust(width, b"\x00"), "big")
    hi = int.from_bytes(end.ljust(width, b"\x00"), "big") if end else 256**width
    mid = (lo + hi) // 2
    if mid <= lo:
        return None
    key = mid.to_bytes(width, "big").rstrip(b"\x00")
    assert start < key and end_key_after(end, key), "middle key out of its range"
    return key


def covers(ranges: Sequence[KeyRange], start: bytes = b"", end: bytes = b"") -> bool:
    """Whether the sorted, non-overlapping ``ranges`` exactly tile ``[start, end)`` without gaps."""
    if not ranges:
        return False
    cursor = start
    for i, (lo, hi) in enumerate(ranges):
        if lo != cursor or not is_valid_range(lo, hi):
            return False
        if not hi and i != len(ranges) - 1:
            return False  # an unbounded range followed by another one
        cursor = hi
    return cursor == end
