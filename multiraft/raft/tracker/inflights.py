"""Inflights: the flow-control window of MsgAppends sent to one follower but not yet acked.

A port of raft-rs ``src/tracker/inflights.rs`` with etcd's optional byte limit.

Theory of operation
-------------------
When a leader in Replicate state sends a MsgAppend it records the index of the
message's last entry with :meth:`Inflights.add`; when the follower acknowledges
index ``i`` the leader calls :meth:`Inflights.free_to` to release every message
whose last index is ``<= i``. While the window is :meth:`~Inflights.full`, the
leader sends nothing more to that follower.

The window is a ring buffer of ``cap`` slots: ``count`` live entries start at
``start`` and wrap around at ``cap``. As in raft-rs the buffer is only
materialised when the first entry is added, and can be dropped again while
empty (:meth:`Inflights.maybe_free_buffer`), which matters for a store with
thousands of idle groups.

``set_cap`` changes the window size at run time: growing takes effect at once;
shrinking a busy window is deferred (``incoming_cap``) until it drains, and the
window counts as full meanwhile once it holds ``incoming_cap`` entries. A
capacity of 0 disables sending to the peer.

Optional byte limit (etcd's ``MaxInflightBytes``): with ``max_bytes > 0`` each
entry also records a size, and the window is full once the recorded bytes reach
``max_bytes``. With the default ``max_bytes == 0`` sizes are ignored and the
behaviour is exactly raft-rs's message count.

Invariants:

* ``0 <= count <= cap`` unless a shrink is pending; entries are added in
  increasing index order (the caller's duty), so the live entries are sorted;
* ``buffer_capacity() == 0`` implies an empty buffer, ``count == 0`` and
  ``start == 0``.
"""

from __future__ import annotations

from multiraft.raft.errors import RaftFatal

__all__ = ["Inflights"]


class Inflights:
    """A bounded ring buffer of the last indexes of in-flight MsgAppends."""

    __slots__ = (
        "_buffer",
        "_bytes",
        "_cap",
        "_count",
        "_incoming_cap",
        "_max_bytes",
        "_reserved",
        "_sizes",
        "_start",
    )

    def __init__(self, cap: int, max_bytes: int = 0) -> None:
        """A window of ``cap`` messages; also of ``max_bytes`` bytes if it is > 0."""
        if cap < 0 or max_bytes < 0:
            raise ValueError(f"negative inflight limit: cap={cap} max_bytes={max_bytes}")
        #: Ring slot of the oldest live entry.
        self._start = 0
        #: Number of live entries.
        self._count = 0
        #: The ring; grows by append up to ``cap`` slots, like raft-rs's Vec.
        self._buffer: list[int] = []
        self._cap = cap
        #: A pending shrink, applied once the window drains.
        self._incoming_cap: int | None = None
        #: The slots raft-rs would have reserved (its Vec capacity), for memory
        #: accounting; 0 means "no buffer allocated".
        self._reserved = cap
        self._max_bytes = max_bytes
        #: Bytes of the live entries; only tracked when ``max_bytes > 0``.
        self._bytes = 0
        #: Size per ring slot, parallel to ``_buffer``; only when ``max_bytes > 0``.
        self._sizes: list[int] = []

    # -- queries ---------------------------------------------------------------

    def full(self) -> bool:
        """True if no more messages may be sent to this peer."""
        count = self._count
        if count == self._cap:
            return True
        incoming = self._incoming_cap
        if incoming is not None and count >= incoming:
            return True
        return self._max_bytes > 0 and self._bytes >= self._max_bytes

    def count(self) -> int:
        """The number of in-flight messages."""
        return self._count

    def bytes_in_flight(self) -> int:
        """The recorded bytes in flight (always 0 unless ``max_bytes > 0``)."""
        return self._bytes

    def buffer_capacity(self) -> int:
        """Slots reserved for the ring, as raft-rs reports its Vec capacity.

        NB: raft-rs's ``Vec::reserve`` may over-allocate when ``set_cap`` grows a
        live buffer; this reports exactly the new cap.
        """
        return self._reserved

    def buffer_is_allocated(self) -> bool:
        """Whether the ring buffer is currently allocated."""
        return self._reserved > 0

    @property
    def cap(self) -> int:
        """The current capacity in messages."""
        return self._cap

    @property
    def incoming_cap(self) -> int | None:
        """A deferred smaller capacity, or None."""
        return self._incoming_cap

    @property
    def start(self) -> int:
        """Ring slot of the oldest in-flight entry (introspection and tests)."""
        return self._start

    @property
    def max_bytes(self) -> int:
        """The byte limit; 0 means none."""
        return self._max_bytes

    def buffer(self) -> list[int]:
        """A copy of the raw ring, stale slots included (introspection and tests)."""
        return list(self._buffer)

    def inflights(self) -> list[int]:
        """The live entries, oldest first."""
        buf = self._buffer
        out: list[int] = []
        idx = self._start
        for _ in range(self._count):
            out.append(buf[idx])
            idx += 1
            if idx >= self._cap:
                idx -= self._cap
        return out

    # -- mutation --------------------------------------------------------------

    def add(self, inflight: int, size: int = 0) -> None:
        """Record a MsgAppend whose last entry is ``inflight`` (and of ``size`` bytes).

        Raises:
            RaftFatal: if the window is full (the caller must check ``full()``).
        """
        if self.full():
            raise RaftFatal("cannot add into a full inflights")
        if self._reserved == 0:
            # Lazily re-reserve after reset()/maybe_free_buffer().
            self._reserved = self._cap

        nxt = self._start + self._count
        if nxt >= self._cap:
            nxt -= self._cap
        buf = self._buffer
        if nxt < len(buf):
            buf[nxt] = inflight
        elif nxt == len(buf):
            buf.append(inflight)
        else:
            raise RaftFatal(f"inflights ring corrupted: slot {nxt} beyond {len(buf)}")
        if self._max_bytes > 0:
            sizes = self._sizes
            if nxt < len(sizes):
                sizes[nxt] = size
            else:
                sizes.append(size)
            self._bytes += size
        self._count += 1

    def free_to(self, to: int) -> None:
        """Free every in-flight message whose last index is ``<= to``."""
        count = self._count
        buf = self._buffer
        start = self._start
        if count == 0 or to < buf[start]:
            # Out of the left side of the window: a stale acknowledgement.
            return

        cap = self._cap
        i = 0
        idx = start
        while i < count:
            if to < buf[idx]:
                break
            idx += 1
            if idx >= cap:
                idx -= cap
            i += 1

        if self._max_bytes > 0:
            sizes = self._sizes
            freed = 0
            j = start
            for _ in range(i):
                freed += sizes[j]
                j += 1
                if j >= cap:
                    j -= cap
            self._bytes -= freed

        self._count = count - i
        self._start = idx
        if self._count == 0 and self._incoming_cap is not None:
            # The window drained: now the deferred shrink can happen.
            self._start = 0
            self._cap = self._incoming_cap
            self._incoming_cap = None
            self._buffer = []
            self._sizes = []
            self._reserved = self._cap

    def free_first_one(self) -> None:
        """Free the oldest in-flight message (a heartbeat response unblocks a full window)."""
        if self._count > 0:
            self.free_to(self._buffer[self._start])

    def reset(self) -> None:
        """Free everything and drop the buffer; a pending shrink takes effect."""
        self._count = 0
        self._start = 0
        self._buffer = []
        self._sizes = []
        self._bytes = 0
        self._reserved = 0
        if self._incoming_cap is not None:
            self._cap = self._incoming_cap
            self._incoming_cap = None

    def maybe_free_buffer(self) -> None:
        """Drop the ring's memory if nothing is in flight (idle groups stay small)."""
        if self._count == 0:
            self._start = 0
            self._buffer = []
            self._sizes = []
            self._reserved = 0

    def set_cap(self, incoming_cap: int) -> None:
        """Change the window size; 0 disables the peer.

        Growing applies at once. Shrinking applies at once if the window is empty,
        else it is deferred until the window drains (``free_to``/``reset``).
        NB: calling this between ``full()`` and ``add()`` may make ``add`` raise.
        """
        if incoming_cap < 0:
            raise ValueError(f"negative inflight cap {incoming_cap}")
        cap = self._cap
        if cap == incoming_cap:
            self._incoming_cap = None
        elif cap < incoming_cap:
            start, count = self._start, self._count
            if start + count <= cap:
                # Live entries do not wrap: the ring can simply grow in place.
                if self._reserved > 0:
                    self._reserved = incoming_cap
            else:
                # Live entries wrap around the old end: unroll them to slot 0 so
                # that the larger ring stays contiguous.
                wrapped = count - (cap - start)
                self._buffer = self._buffer[start:] + self._buffer[:wrapped]
                if self._max_bytes > 0:
                    self._sizes = self._sizes[start:] + self._sizes[:wrapped]
                self._start = 0
                self._reserved = incoming_cap
            self._cap = incoming_cap
            self._incoming_cap = None
        elif self._count == 0:
            self._cap = incoming_cap
            self._incoming_cap = None
            self._start = 0
            if self._reserved > 0:
                self._buffer = []
                self._sizes = []
                self._reserved = incoming_cap
        else:
            self._incoming_cap = incoming_cap

    # -- dunder ----------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        # As raft-rs's derived PartialEq: compares the ring contents, not the
        # reserved capacity.
        if not isinstance(other, Inflights):
            return NotImplemented
        return (
            self._start == other._start
            and self._count == other._count
            and self._buffer == other._buffer
            and self._cap == other._cap
            and self._incoming_cap == other._incoming_cap
            and self._max_bytes == other._max_bytes
            and self._bytes == other._bytes
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        extra = f", incoming_cap={self._incoming_cap}" if self._incoming_cap is not None else ""
        if self._max_bytes:
            extra += f", bytes={self._bytes}/{self._max_bytes}"
        return (
            f"Inflights(cap={self._cap}, start={self._start}, count={self._count}, "
            f"buffer={self._buffer!r}{extra})"
        )
