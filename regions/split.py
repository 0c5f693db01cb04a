"""Split: the deterministic apply of BatchSplit, and the policy that decides when and where.

Apply (TiKV ``fsm/apply.rs exec_batch_split``; multiraft-design §4.2)
---------------------------------------------------------------------
A split is data in the log: the split keys, the new region ids and, for each
new region, one new peer id per peer of the parent *in the order of
``region.peers``* all come from the placement service before the proposal.
Every replica then computes the same regions from the same inputs:

* the keys are validated: at least one, strictly increasing, each strictly
  inside the parent's range (never the start key, tikv/tikv#14552);
* ``version += n`` for ``n`` new regions; ``conf_ver`` is unchanged;
* every resulting region gets the parent's *new* epoch;
* a new region's peers are the parent's peers (same stores, same roles) with
  the ids replaced position by position;
* with ``right_derive`` (TiKV's default) the rightmost range keeps the parent's
  id and peers, and the new ids take the ranges from the left; without it the
  leftmost range keeps the id and the new ids take the ranges to the right.

Nothing here looks at clocks, sizes or configuration, so every replica
agrees; a bad request raises :class:`SplitError` identically everywhere (the
store answers it and applies nothing).

Policy (TiKV ``coprocessor/split_check``; multiraft-design §5)
--------------------------------------------------------------
A region is checked when its approximate size reaches ``max_size_bytes`` or its
key count reaches ``max_keys`` (:meth:`SplitPolicy.should_split`). TiKV's
defaults are a 256 MiB split size (96 MiB before 2024), ``max = split * 3/2``
and ``split_keys = split_MiB * 10000``; :meth:`SplitPolicy.local` applies the
same formulas to 1 MiB (1.5 MiB / 10k keys / 15k keys), so a demo cluster
splits within seconds. Where to split:

* :meth:`SplitPolicy.choose_split_key` (half split): the first key at which the
  keys before it weigh at least half of the total, never the region's start key;
* :meth:`SplitPolicy.scan_split_keys` (TiKV's scan policy): a key each time the
  piece before it reaches ``split_size_bytes`` or ``split_keys`` keys, at most
  ``batch_split_limit`` keys, dropping the last one if the tail is small enough
  to stay with the piece before it.

The store measures the sizes; these functions only read the ``(key, size)``
pairs it passes, in key order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from regions.keyspace import KeyRangeError, format_key, split_range
from regions.region import Peer, Region, RegionEpoch

__all__ = [
    "KIB",
    "MIB",
    "SplitError",
    "SplitPolicy",
    "apply_batch_split",
]

KIB = 1024
MIB = 1024 * KIB


class SplitError(ValueError):
    """A BatchSplit that cannot apply: bad keys, ids or peer ids."""


def apply_batch_split(
    region: Region,
    split_keys: Sequence[bytes],
    new_region_ids: Sequence[int],
    new_peer_ids_per_region: Sequence[Sequence[int]],
    right_derive: bool = True,
) -> list[Region]:
    """The regions ``region`` becomes after a BatchSplit at ``split_keys``, in key order.

    ``new_region_ids[i]`` and ``new_peer_ids_per_region[i]`` describe the i-th
    *new* region (ranges assigned left to right, skipping the range that keeps
    the parent's id). ``region`` itself is not modified.

    Raises:
        SplitError: no key, keys not strictly increasing or not strictly inside
            the range, a count mismatch, or an id that is 0, repeated, or
            already used by the parent or one of its peers.
    """
    n = len(split_keys)
    try:
        ranges = split_range(region.start_key, region.end_key, split_keys)
    except KeyRangeError as exc:
        raise SplitError(f"region {region.id}: {exc}") from None
    if len(new_region_ids) != n or len(new_peer_ids_per_region) != n:
        raise SplitError(
            f"region {region.id}: {n} split keys need {n} new region ids and {n} peer id "
            f"lists, got {len(new_region_ids)} and {len(new_peer_ids_per_region)}"
        )
    _check_ids(region, new_region_ids, new_peer_ids_per_region)
    epoch = RegionEpoch(conf_ver=region.epoch.conf_ver, version=region.epoch.version + n)
    ids = [*new_region_ids, region.id] if right_derive else [region.id, *new_region_ids]
    peer_ids = iter(new_peer_ids_per_region)
    out = []
    for rid, (start, end) in zip(ids, ranges, strict=True):
        if rid == region.id:
            peers = list(region.peers)
        else:
            peers = [
                Peer(pid, p.store_id, p.role)
                for p, pid in zip(region.peers, next(peer_ids), strict=True)
            ]
        out.append(Region(rid, start, end, epoch, peers))
    return out


def _check_ids(
    region: Region,
    new_region_ids: Sequence[int],
    new_peer_ids_per_region: Sequence[Sequence[int]],
) -> None:
    if len(set(new_region_ids)) != len(new_region_ids) or 0 in new_region_ids:
        raise SplitError(
            f"region {region.id}: new region ids {list(new_region_ids)} repeat or are 0"
        )
    if region.id in new_region_ids:
        raise SplitError(f"region {region.id}: a new region cannot reuse the parent's id")
    used = {p.id for p in region.peers}
    for rid, pids in zip(new_region_ids, new_peer_ids_per_region, strict=True):
        if len(pids) != len(region.peers):
            raise SplitError(
                f"region {region.id}: new region {rid} needs {len(region.peers)} peer ids "
                f"(one per peer, in peer order), got {len(pids)}"
            )
        for pid in pids:
            if pid == 0 or pid in used:
                raise SplitError(f"region {region.id}: peer id {pid} is 0 or already used")
            used.add(pid)


@dataclass(frozen=True, slots=True)
class SplitPolicy:
    """When a region is split and where.

    Invariant: ``0 < split_size_bytes <= max_size_bytes``, ``0 < split_keys <=
    max_keys``, ``batch_split_limit >= 1``.
    """

    #: A split check runs (:meth:`should_split`) once the region is at least this big...
    max_size_bytes: int = 3 * MIB // 2
    #: ... or holds at least this many keys.
    max_keys: int = 15_000
    #: The target size of each piece.
    split_size_bytes: int = MIB
    #: The target key count of each piece.
    split_keys: int = 10_000
    #: At most this many split keys per check (TiKV ``batch-split-limit``).
    batch_split_limit: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.split_size_bytes <= self.max_size_bytes:
            raise ValueError(
                f"need 0 < split_size_bytes ({self.split_size_bytes}) <= max_size_bytes "
                f"({self.max_size_bytes})"
            )
        if not 0 < self.split_keys <= self.max_keys:
            raise ValueError(
                f"need 0 < split_keys ({self.split_keys}) <= max_keys ({self.max_keys})"
            )
        if self.batch_split_limit < 1:
            raise ValueError(f"batch_split_limit must be at least 1, got {self.batch_split_limit}")

    @classmethod
    def from_split_size(cls, split_size_bytes: int, batch_split_limit: int = 10) -> SplitPolicy:
        """TiKV's derived settings: ``max = split*3/2``, ``keys = split_MiB*10000``, ``max_keys = keys*3/2``."""
        keys = max(1, split_size_bytes * 10_000 // MIB)
        return cls(
            max_size_bytes=max(split_size_bytes, split_size_bytes // 2 * 3),
            max_keys=max(keys, keys // 2 * 3),
            split_size_bytes=split_size_bytes,
            split_keys=keys,
            batch_split_limit=batch_split_limit,
        )

    @classmethod
    def local(cls) -> SplitPolicy:
        """The local cluster's default: split at 1 MiB pieces, checked from 1.5 MiB / 15k keys."""
        return cls.from_split_size(MIB)

    @classmethod
    def tikv_defaults(cls) -> SplitPolicy:
        """TiKV's current defaults (tikv/tikv#17311): 256 MiB / 384 MiB / 2.56M / 3.84M keys."""
        return cls.from_split_size(256 * MIB)

    @property
    def check_diff_bytes(self) -> int:
        """Skip a periodic check unless the size changed by this much (TiKV: split/16)."""
        return self.split_size_bytes // 16

    def should_split(self, approx_size: int, approx_keys: int) -> bool:
        """Whether a region of this approximate size and key count is due for a split."""
        return approx_size >= self.max_size_bytes or approx_keys >= self.max_keys

    def choose_split_key(
        self, key_sizes: Iterable[tuple[bytes, int]], start_key: bytes = b""
    ) -> bytes | None:
        """The half-split key: the first key where the keys before it weigh half the total.

        ``key_sizes`` are ``(key, size)`` pairs in strictly increasing key order
        (the size of a key is that of its entry). The chosen key is never
        ``start_key`` nor the first key (that would leave an empty left half);
        if no key reaches half (one big entry at the end), the last key is
        chosen. When every size is 0 the keys are halved by count. None when
        there are fewer than two keys.

        Raises:
            ValueError: keys out of order, below ``start_key``, or a negative size.
        """
        pairs = _checked(key_sizes, start_key)
        if len(pairs) < 2:
            return None
        weights = [size for _, size in pairs]
        if not any(weights):
            weights = [1] * len(pairs)  # nothing weighs anything: halve by count
        total = sum(weights)
        before = weights[0]
        # Keys after the first are > pairs[0][0] >= start_key: never the start key.
        for (key, _), weight in zip(pairs[1:], weights[1:]):
            if 2 * before >= total:
                return key
            before += weight
        return pairs[-1][0]

    def scan_split_keys(
        self, key_sizes: Iterable[tuple[bytes, int]], start_key: bytes = b""
    ) -> list[bytes]:
        """TiKV's scan policy: split keys cutting the region into pieces of the target size.

        Walking the keys in order, the current key becomes a split key when the
        piece before it has reached ``split_size_bytes`` or ``split_keys`` keys;
        the piece then restarts at that key. At most ``batch_split_limit`` keys.
        The last split key is dropped when the tail after it, merged back into
        the piece before it, stays under ``max_size_bytes`` and ``max_keys``:
        no tiny last piece is made, and the merged piece is not due for a split
        itself (TiKV: drop the last key if ``tail + split < max``).

        Raises:
            ValueError: keys out of order, below ``start_key``, or a negative size.
        """
        out: list[bytes] = []
        piece_size = piece_keys = 0
        prev_size = prev_keys = 0  # the piece before the last split key
        for key, size in _checked(key_sizes, start_key):
            cut = piece_size >= self.split_size_bytes or piece_keys >= self.split_keys
            if cut and key > start_key and len(out) < self.batch_split_limit:
                out.append(key)
                prev_size, prev_keys = piece_size, piece_keys
                piece_size = piece_keys = 0
            piece_size += size
            piece_keys += 1
        if (
            out
            and prev_size + piece_size < self.max_size_bytes
            and prev_keys + piece_keys < self.max_keys
        ):
            out.pop()
        return out


def _checked(key_sizes: Iterable[tuple[bytes, int]], start_key: bytes) -> list[tuple[bytes, int]]:
    pairs = list(key_sizes)
    previous: bytes | None = None
    for key, size in pairs:
        if key < start_key:
            raise ValueError(
                f"key {format_key(key)} is before the start key {format_key(start_key)}"
            )
        if previous is not None and key <= previous:
            raise ValueError(f"keys are not strictly increasing at {format_key(key)}")
        if size < 0:
            raise ValueError(f"negative size {size} for key {format_key(key)}")
        previous = key
    return pairs
