"""Reads: the leader lease, ReadIndex batches, and executing a read on an LMDB read txn.

Theory of operation
-------------------
A read is served from this store's LMDB data, which after every round holds
exactly the state machine at the region's applied index (apply and applied
index commit together). What differs between the modes is *when* that state is
recent enough (multiraft-design §7):

* ``Linearizable``: the leader records its commit index with a ReadIndex that a
  quorum confirms (raft ``ReadOnlySafe``); the read is served once the region's
  applied index has reached it. All linearizable reads that reach a region in
  one round share ONE ``read_index`` call with a unique context
  (:class:`ReadBatch`).
* ``Lease``: a leader whose lease is valid and whose applied term equals its
  term (the new term's no-op is applied, so everything committed before it is
  applied too) serves at once; otherwise the read falls back to ReadIndex.
* ``Stale``: any initialized replica serves its applied state (possibly old).

The lease (:class:`Lease`) starts when something proves a quorum accepted this
leader: the *issue* time of a ReadIndex that was confirmed, or the *proposal*
time of an entry of the current term that committed. Followers that acked reset
their election timers after that instant and, with check-quorum, refuse votes
until ``election_tick`` of their ticks have passed, which is at least
``(election_tick - 1) * tick`` seconds of their clock (the first tick can come
right after the reset). The lease is that span times 0.9 for clock-rate drift.
It is dropped on every role or term change and made *suspect* (no renewal) when
leadership is being transferred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from multiraft.storage.engine import Db, Txn
from multiraft.store.proposals import Answer, Waiter
from multiraft.wire.messages import (
    Get,
    GetResult,
    KeyNotInRegion,
    KvRequest,
    Scan,
    ScanResult,
)
from regions.region import Region

__all__ = [
    "MAX_SCAN_LIMIT",
    "Lease",
    "ReadBatch",
    "ReadRequest",
    "execute_read",
    "lease_duration",
]

#: The most pairs one Scan returns (``limit`` 0 or above this is capped here).
MAX_SCAN_LIMIT: Final = 10_000


def lease_duration(election_tick: int, tick_interval: float) -> float:
    """The longest a lease may last: see the module docstring."""
    return max(election_tick - 1, 0) * tick_interval * 0.9


class Lease:
    """A leader's lease: reads may be served locally until :attr:`expires`."""

    __slots__ = ("_expires", "_suspect", "max_lease")

    def __init__(self, max_lease: float) -> None:
        self.max_lease = max_lease
        self._expires = -math.inf
        self._suspect = False

    def renew(self, start: float) -> None:
        """A quorum accepted this leader after ``start``: extend the lease from there."""
        if not self._suspect:
            self._expires = max(self._expires, start + self.max_lease)

    def expire(self) -> None:
        """Role or term changed: no lease until the next renewal."""
        self._expires = -math.inf
        self._suspect = False

    def suspect(self) -> None:
        """A leader transfer began: another peer may win at any moment."""
        self._expires = -math.inf
        self._suspect = True

    def valid(self, now: float) -> bool:
        return now < self._expires

    @property
    def expires(self) -> float:
        return self._expires


@dataclass(slots=True)
class ReadRequest:
    """A read waiting in the ready loop."""

    req: KvRequest
    waiter: Waiter[Answer]
    received: float
    #: The ``reads`` metric kind it will be counted under when served.
    kind: str = "read_index"


@dataclass(slots=True)
class ReadBatch:
    """The reads behind one ``read_index(ctx)`` call.

    ``index`` is None until the ReadState for ``ctx`` arrives; the batch is
    served once the region's applied index reaches it.
    """

    ctx: bytes
    term: int
    issued: float
    reads: list[ReadRequest] = field(default_factory=list)
    index: int | None = None


def _scan_end(region: Region, end_key: bytes) -> bytes | None:
    """The exclusive end of a scan clamped to the region (None: unbounded)."""
    if not region.end_key:
        return end_key or None
    if not end_key:
        return region.end_key
    return min(end_key, region.end_key)


def execute_read(txn: Txn, data_db: Db, region: Region, req: KvRequest) -> Answer:
    """Run a Get or Scan against ``txn`` within ``region``.

    The caller has checked the epoch and that the replica may serve; the key
    range is checked here (KeyNotInRegion).
    """
    op = req.op
    if isinstance(op, Get):
        if not region.contains(op.key):
            return KeyNotInRegion(op.key, region.id, region.start_key, region.end_key)
        if not op.key:
            return GetResult(None)  # LMDB cannot hold an empty key (and refuses to look one up)
        return GetResult(txn.get(op.key, db=data_db))
    assert isinstance(op, Scan)
    if not region.contains(op.start_key) and op.start_key != b"":
        return KeyNotInRegion(op.start_key, region.id, region.start_key, region.end_key)
    start = max(op.start_key, region.start_key)
    end = _scan_end(region, op.end_key)
    limit = MAX_SCAN_LIMIT if op.limit == 0 else min(op.limit, MAX_SCAN_LIMIT)
    pairs: list[tuple[bytes, bytes]] = []
    if end is not None and start >= end:
        return ScanResult(pairs)
    cur = txn.cursor(data_db)
    found = cur.set_range(start) if start else cur.first()
    while found and len(pairs) < limit:
        k = cur.key()
        if end is not None and k >= end:
            break
        pairs.append((k, cur.value()))
        found = cur.next()
    return ScanResult(pairs)
