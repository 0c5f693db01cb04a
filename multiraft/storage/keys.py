"""The whole LMDB key layout of a store, in one place (the table is in ``docs/storage.md``).

Theory of operation
-------------------
One LMDB environment per store, cut into **named sub-databases**, one per
kind of record, instead of TiKV's single keyspace with ``01 02``/``01 03``
prefixes. Why sub-databases:

* Each kind is its own B-tree, so a scan of one kind never walks pages of
  another: startup reads the ``region_state`` tree and nothing else, however
  long the logs are.
* The prefix collision TiKV notes (``01 02`` prepare-bootstrap being a prefix
  of every raft key) cannot happen, and no byte is spent on prefixes.
* User data keys are stored **raw** (no ``'z'`` prefix): a region's half-open
  range ``[start_key, end_key)`` is exactly one contiguous key range of the
  ``data`` tree, and an empty ``end_key`` (unbounded) is "to the end of the
  tree".

Every integer in a key is an unsigned 64-bit **big-endian** number, so byte
order is numeric order: a region's log ``(region_id, index)`` is one
contiguous range ordered by index, and the region trees iterate by region id.

=================  ======================================  ==========================
sub-database       key                                     value (``multiraft.wire.records``)
=================  ======================================  ==========================
``meta``           ``b"format"``                           format version (u64 list)
``meta``           ``b"store_ident"``                      ``StoreIdent``
``raft_log``       ``region_id:8 | index:8``               ``Entry`` (binary header)
``raft_state``     ``region_id:8``                         ``RaftLocalState``
``apply_state``    ``region_id:8``                         ``ApplyState``
``conf_state``     ``region_id:8``                         ``ConfState``
``region_state``   ``region_id:8``                         ``RegionLocalState``
``data``           user key (1-511 bytes)                  user value
``snap_staging``   ``region_id:8 | snap_id:8 | seq:8``     received snapshot chunks
=================  ======================================  ==========================

In ``snap_staging``, each received stream has its own ``snap_id`` (unique
in the store, :mod:`multiraft.storage.staging`), so two attempts at one
region never mix; the 16 bytes ``region_id | snap_id`` are its *staging
prefix*. ``seq`` 0 is the header chunk, 1..n the data chunks, n+1 the
footer, and :data:`STAGING_PLAN_SEQ` (the largest u64) the apply plan
written with the ``Applying`` mark (which old ranges to clear). Builds
before snapshot ids wrote ``region_id:8 | seq:8`` (prefix ``region_id``);
startup recovery still reads that form, which is why the format version did
not change: staging is empty whenever a store stopped cleanly.
"""

from __future__ import annotations

import struct

__all__ = [
    "ALL_DBS",
    "DB_APPLY_STATE",
    "DB_CONF_STATE",
    "DB_DATA",
    "DB_META",
    "DB_RAFT_LOG",
    "DB_RAFT_STATE",
    "DB_REGION_STATE",
    "DB_SNAP_STAGING",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "MAX_DATA_KEY_SIZE",
    "MAX_U64",
    "STAGING_PLAN_SEQ",
    "STORE_IDENT_KEY",
    "check_data_key",
    "decode_log_key",
    "decode_region_key",
    "decode_staging_key",
    "log_key",
    "region_key",
    "region_log_range",
    "region_staging_range",
    "staging_key",
    "staging_part_key",
    "staging_prefix",
    "staging_prefix_range",
]

MAX_U64 = 2**64 - 1

DB_META = b"meta"
DB_RAFT_LOG = b"raft_log"
DB_RAFT_STATE = b"raft_state"
DB_APPLY_STATE = b"apply_state"
DB_CONF_STATE = b"conf_state"
DB_REGION_STATE = b"region_state"
DB_DATA = b"data"
DB_SNAP_STAGING = b"snap_staging"
#: Every sub-database, in the order the engine opens them.
ALL_DBS = (
    DB_META,
    DB_RAFT_LOG,
    DB_RAFT_STATE,
    DB_APPLY_STATE,
    DB_CONF_STATE,
    DB_REGION_STATE,
    DB_DATA,
    DB_SNAP_STAGING,
)

#: ``meta`` keys.
FORMAT_KEY = b"format"
STORE_IDENT_KEY = b"store_ident"
#: Bumped whenever a key or record layout changes; checked at open.
FORMAT_VERSION = 1

#: LMDB's compiled-in key limit (``mdb_env_get_maxkeysize``); LMDB also refuses empty keys.
MAX_DATA_KEY_SIZE = 511

#: The staging ``seq`` of a region's snapshot apply plan (after every chunk).
STAGING_PLAN_SEQ = MAX_U64

_QQQ = struct.Struct(">QQQ")
_QQ = struct.Struct(">QQ")
_Q = struct.Struct(">Q")

#: ``log_key(region_id, index)``: bound once, because it runs for every entry written.
log_key = _QQ.pack
#: ``region_key(region_id)``: the key of every per-region state record.
region_key = _Q.pack
#: ``staging_key(region_id, snap_id, seq)``.
staging_key = _QQQ.pack
#: ``staging_prefix(region_id, snap_id)``: the first 16 bytes of every key of one staged stream.
staging_prefix = _QQ.pack


def decode_log_key(key: bytes) -> tuple[int, int]:
    """``(region_id, index)`` of a ``raft_log`` key."""
    rid, index = _QQ.unpack(key)
    return rid, index


def decode_region_key(key: bytes) -> int:
    """The region id of a per-region state key."""
    rid: int = _Q.unpack(key)[0]
    return rid


def decode_staging_key(key: bytes) -> tuple[int, int, int]:
    """``(region_id, snap_id, seq)`` of a ``snap_staging`` key."""
    rid, sid, seq = _QQQ.unpack(key)
    return rid, sid, seq


def staging_part_key(prefix: bytes, seq: int) -> bytes:
    """The key of part ``seq`` of the staged stream whose prefix is ``prefix``."""
    return prefix + _Q.pack(seq)


def staging_prefix_range(prefix: bytes) -> tuple[bytes, bytes | None]:
    """The half-open ``snap_staging`` key range of every key that starts with ``prefix``."""
    # The successor of the prefix as a big-endian number of the same width bounds the
    # range; an all-ones prefix runs to the end of the tree.
    n = int.from_bytes(prefix, "big") + 1
    if n >> (8 * len(prefix)):
        return prefix, None
    return prefix, n.to_bytes(len(prefix), "big")


def _region_range(region_id: int) -> tuple[bytes, bytes | None]:
    # [region|0, (region+1)|0): the next region's first key bounds this one's
    # range; the largest region id runs to the end of the tree.
    start = _QQ.pack(region_id, 0)
    if region_id == MAX_U64:
        return start, None
    return start, _QQ.pack(region_id + 1, 0)


def region_log_range(region_id: int) -> tuple[bytes, bytes | None]:
    """The half-open ``raft_log`` key range holding all of a region's entries."""
    return _region_range(region_id)


def region_staging_range(region_id: int) -> tuple[bytes, bytes | None]:
    """The half-open ``snap_staging`` key range of every stream staged for a region."""
    return _region_range(region_id)


def check_data_key(key: bytes) -> None:
    """Refuse a user key LMDB cannot store, before it can fail a whole write batch.

    Raises:
        ValueError: the key is empty or longer than :data:`MAX_DATA_KEY_SIZE`.
    """
    if not key or len(key) > MAX_DATA_KEY_SIZE:
        raise ValueError(f"data keys must be 1..{MAX_DATA_KEY_SIZE} bytes, got {len(key)}")
