"""Small helpers shared by the log, the storage and the step logic (raft-rs ``util.rs``).

Everything here is a pure function over entries and messages. Sizes are the
protobuf-encoded sizes of :func:`~multiraft.raft.types.entry_size`, so that the
number of entries that fit a byte budget matches raft-rs exactly.

Invariant: every size-limiting helper keeps at least one entry of a non-empty
range, so a single oversized entry can never stall replication or apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from multiraft.raft.errors import RaftFatal
from multiraft.raft.logger import Logger
from multiraft.raft.types import NO_LIMIT, Entry, Message, entry_size

__all__ = [
    "NO_LIMIT",
    "entry_approximate_size",
    "fatal",
    "is_continuous_ents",
    "limit_size",
    "majority",
    "take_limited",
]


def fatal(logger: Logger, msg: str) -> NoReturn:
    """Log ``msg`` at error level and raise :class:`RaftFatal` (raft-rs ``fatal!``).

    Raises:
        RaftFatal: always.
    """
    logger.error(msg)
    raise RaftFatal(msg)


def limit_size(entries: list[Entry], max_size: int | None) -> None:
    """Truncate ``entries`` in place so their total encoded size stays within ``max_size``.

    The first entry is always kept, however large. ``None`` and ``NO_LIMIT`` mean
    no limit.

    Args:
        entries: the list to truncate; mutated in place.
        max_size: the byte budget.

    Example:
        >>> from multiraft.raft.types import Entry
        >>> ents = [Entry(data=b"*" * 100) for _ in range(5)]
        >>> limit_size(ents, 220)
        >>> len(ents)
        2
        >>> limit_size(ents, 0)
        >>> len(ents)
        1
    """
    if len(entries) <= 1 or max_size is None or max_size == NO_LIMIT:
        return
    end = _limited_end(entries, 0, len(entries), max_size)
    if end < len(entries):
        del entries[end:]


def take_limited(src: Sequence[Entry], start: int, stop: int, max_size: int | None) -> list[Entry]:
    """Return ``src[start:stop]`` as :func:`limit_size` would cut it.

    Unlike slicing then calling :func:`limit_size`, this never copies the part of
    the range that the budget drops, so fetching one small page out of a long
    log costs the size of the page, not of the range.

    Args:
        src: the backing sequence (positions, not log indexes).
        start: first position, inclusive.
        stop: last position, exclusive.
        max_size: the byte budget; ``None`` or ``NO_LIMIT`` for none.

    Returns:
        A new list the caller owns.
    """
    if max_size is None or max_size == NO_LIMIT or stop - start <= 1:
        return list(src[start:stop])
    return list(src[start : _limited_end(src, start, stop, max_size)])


def _limited_end(src: Sequence[Entry], start: int, stop: int, max_size: int) -> int:
    # Mirrors raft-rs's take_while exactly, quirk included: while the running
    # size is still 0 (zero-sized entries, which only tests build), the next
    # entry is taken unconditionally, just as the first one is.
    # Fast path: an entry's encoding exceeds its payload by at most 47 bytes
    # (tags and varints), so when even that bound fits nothing is cut.
    bound = 0
    for pos in range(start, stop):
        e = src[pos]
        bound += len(e.data) + len(e.context) + 47
    if bound <= max_size:
        return stop
    size = 0
    for pos in range(start, stop):
        if size == 0:
            size = entry_size(src[pos])
            continue
        size += entry_size(src[pos])
        if size > max_size:
            return pos
    return stop


def is_continuous_ents(msg: Message, ents: Sequence[Entry]) -> bool:
    """Whether ``ents`` continue right after the last entry already in ``msg``.

    True when either side is empty.
    """
    if msg.entries and ents:
        return msg.entries[-1].index + 1 == ents[0].index
    return True


def majority(total: int) -> int:
    """The number of votes that is a majority of ``total`` voters."""
    return total // 2 + 1


def entry_approximate_size(e: Entry) -> int:
    """A cheap upper-bound estimate of an entry's encoded size.

    Used for memory accounting (``Unstable.entries_size``), where exactness does
    not matter but speed does: 12 bytes cover the tags and varints of a typical
    entry.
    """
    return len(e.data) + len(e.context) + 12
