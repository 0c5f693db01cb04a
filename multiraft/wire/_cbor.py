"""The one place cbor2 is configured, plus the field validators every codec shares.

Hardened decoding (reliability-anchors.md section 7):

* one item per payload: we decode through ``CBORDecoder`` on a ``BytesIO`` and
  require every byte consumed, because ``cbor2.loads`` silently ignores
  trailing bytes;
* ``max_depth=MAX_DEPTH`` (our schemas nest at most 3 deep), no indefinite
  lengths, no duplicate map keys, only text/bytes map keys (hash flooding);
* every map is refused as soon as it is decoded (``object_hook``): our schemas
  are positional arrays only;
* every CBOR tag is refused. Our schemas use none, and cbor2's built-in
  semantic tags (bignums, datetimes, sets, shared references...) would
  otherwise build objects bypassing ``tag_hook``, so each built-in tag is
  mapped to a decoder that raises :class:`SchemaError`. Without bignums every
  CBOR integer lies in ``-2**64 .. 2**64-1``, so a u64 check is ``>= 0``.
* any exception out of cbor2 becomes :class:`MalformedPayload`; cbor2 reads
  strings and containers incrementally, so a huge declared length fails with
  "premature end of stream" rather than allocating.

Peers and epochs are frozen dataclasses, so the decoders intern them in small
bounded caches: a batch of heartbeats repeats the same few peers and epochs,
and a dict hit is cheaper than building the object again. Python's int and
tuple hashes are not randomised, so a peer could craft ids whose keys all
collide and make every insert linear in the cache size; each key therefore
starts with a random per-process salt (which scrambles the tuple hash), and
the caches are cleared when they reach ``_CACHE_MAX`` entries. No other
decoder step hashes attacker-chosen values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from io import BytesIO
from typing import Any, NoReturn, TypeVar

import cbor2

from multiraft.wire.errors import MalformedPayload, SchemaError, WireError
from regions.region import Peer, PeerRole, Region, RegionEpoch

#: Deepest container nesting any of our payloads uses is 3 (batch > snapshot > voters).
MAX_DEPTH = 6
I64_MIN = -(2**63)
I64_LIMIT = 2**63
#: cbor2 6.x's built-in semantic tags: they never reach ``tag_hook``.
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260,
                 261, 1004, 55799)  # fmt: skip


def _tag_refuser(tag: int) -> Any:
    def refuse(*_args: Any) -> NoReturn:
        raise SchemaError("payload", f"CBOR tag {tag} is not part of the schema")

    return refuse


def _refuse_unknown_tag(tag: cbor2.CBORTag, *_args: Any) -> NoReturn:
    raise SchemaError("payload", f"CBOR tag {tag.tag} is not part of the schema")


def _refuse_map(*_args: Any) -> NoReturn:
    # Called as soon as a map is decoded: abort there, before a payload of many small
    # maps (72 bytes of dict per byte of CBOR) can build up.
    raise SchemaError("payload", "CBOR maps are not part of the schema")


_SEMANTIC_REFUSERS = {t: _tag_refuser(t) for t in _BUILTIN_TAGS}


def dumps(obj: object) -> bytes:
    """Encode one payload item (lists, tuples, ints, bytes, str, bool, None only)."""
    return cbor2.dumps(obj)


#: What an idle decoder points at (never read).
_NOTHING = BytesIO(b"")


def baseline_round_trip(item: object) -> object:
    """Plain ``cbor2.dumps`` + ``cbor2.loads`` with no checks: the floor a cbor2 codec
    pays, measured by :mod:`multiraft.bench.codec` (which may not import cbor2 itself)."""
    return cbor2.loads(cbor2.dumps(item))


def _new_decoder() -> cbor2.CBORDecoder:
    return cbor2.CBORDecoder(
        _NOTHING,
        tag_hook=_refuse_unknown_tag,
        object_hook=_refuse_map,
        semantic_decoders=_SEMANTIC_REFUSERS,
        max_depth=MAX_DEPTH,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )


# Building a CBORDecoder with these options costs about a microsecond, so each thread
# keeps one and points it at each payload in turn. Per thread, because the decoder
# is stateful while it runs; it is thrown away after any error, to start clean.
_local = threading.local()


def loads(payload: bytes, what: str) -> Any:
    """Decode exactly one CBOR item; ``what`` names the payload in error messages.

    Raises:
        MalformedPayload: not one well-formed CBOR item, or a decoder limit hit.
        SchemaError: a CBOR tag.
    """
    fp = BytesIO(payload)
    try:
        dec = _local.decoder
    except AttributeError:
        dec = _local.decoder = _new_decoder()
    try:
        dec.fp = fp
        obj = dec.decode()
    except cbor2.CBORError as e:
        del _local.decoder
        cause = e.__cause__
        if isinstance(cause, SchemaError):
            raise SchemaError(what, cause.detail) from None
        raise MalformedPayload(what, str(e)) from None
    except Exception as e:  # RecursionError, MemoryError, ...: still only bad input
        del _local.decoder
        raise MalformedPayload(what, f"{type(e).__name__}: {e}") from None
    except BaseException as e:
        # A Rust panic inside cbor2 surfaces as pyo3's PanicException, a BaseException.
        if type(e).__name__ != "PanicException":
            raise
        del _local.decoder
        raise MalformedPayload(what, f"cbor2 panicked: {e}") from None
    dec.fp = _NOTHING  # do not keep the payload alive until the next call
    if fp.tell() != len(payload):
        raise MalformedPayload(what, f"{len(payload) - fp.tell()} bytes after the CBOR item")
    return obj


T = TypeVar("T")


def guard(what: str, decode: Callable[[Any], T], obj: Any) -> T:
    """Run a structural decoder; any non-WireError out of it is a validation gap, and is
    reported as a SchemaError so that the package keeps its one-exception contract."""
    try:
        return decode(obj)
    except WireError:
        raise
    except Exception as e:  # the contract: bad input raises WireError, never anything else
        raise SchemaError(what, f"invalid structure ({type(e).__name__}: {e})") from e


# -- validators: each returns the value when it has the right type, else raises --------------


def describe(v: object) -> str:
    """A short, safe description of a decoded value for an error message."""
    t = type(v)
    if t is bool or t is int or v is None:
        return repr(v)
    if t is bytes or t is str:
        s: Any = v
        return f"{t.__name__} {s[:24]!r}{'...' if len(s) > 24 else ''}"
    if t is list or t is dict:
        return f"{t.__name__} of {len(v)}"  # type: ignore[arg-type]
    return t.__name__


def fail(what: str, field: str, expected: str, got: object) -> NoReturn:
    raise SchemaError(what, f"{field} must be {expected}, got {describe(got)}")


def u64(v: object, what: str, field: str) -> int:
    if type(v) is not int or v < 0:
        fail(what, field, "a u64", v)
    return v


def byt(v: object, what: str, field: str) -> bytes:
    if type(v) is not bytes:
        fail(what, field, "bytes", v)
    return v


def opt_bytes(v: object, what: str, field: str) -> bytes | None:
    if v is not None and type(v) is not bytes:
        fail(what, field, "bytes or null", v)
    return v


def text(v: object, what: str, field: str) -> str:
    if type(v) is not str:
        fail(what, field, "a text string", v)
    return v


def boolean(v: object, what: str, field: str) -> bool:
    if type(v) is not bool:
        fail(what, field, "a bool", v)
    return v


def array(v: object, what: str, field: str) -> list[Any]:
    if type(v) is not list:
        fail(what, field, "an array", v)
    return v


def exact_len(v: list[Any], n: int, what: str) -> list[Any]:
    if len(v) != n:
        raise SchemaError(what, f"expected an array of {n} fields, got {len(v)}")
    return v


def u64_list(v: object, what: str, field: str) -> list[int]:
    if type(v) is not list or tuple(map(type, v)) != (int,) * len(v) or (v and min(v) < 0):
        fail(what, field, "an array of u64", v)
    return v


def enum_member(table: dict[int, Any], v: object, what: str, field: str) -> Any:
    m = table.get(v) if type(v) is int else None  # type(v) check: True must not pass as 1
    if m is None:
        fail(what, field, f"one of {sorted(table)}", v)
    return m


# -- peers, epochs, regions -------------------------------------------------------------------

PEER_ROLES: dict[int, PeerRole] = {r.value: r for r in PeerRole}
_CACHE_MAX = 1024
#: First element of every cache key (see the module docstring).
CACHE_SALT = int.from_bytes(os.urandom(8), "big")
peer_cache: dict[tuple[int, int, int, int], Peer] = {}
epoch_cache: dict[tuple[int, int, int], RegionEpoch] = {}


def peer(pid: int, store_id: int, role: int, what: str) -> Peer:
    """The interned Peer for already type-checked, non-negative ints; checks ``role``."""
    key = (CACHE_SALT, pid, store_id, role)
    p = peer_cache.get(key)
    if p is None:
        r = PEER_ROLES.get(role)
        if r is None:
            fail(what, "peer role", f"one of {sorted(PEER_ROLES)}", role)
        if len(peer_cache) >= _CACHE_MAX:
            peer_cache.clear()  # bounded: a hostile stream of distinct peers cannot grow it
        p = peer_cache[key] = Peer(pid, store_id, r)
    return p


def epoch(conf_ver: int, version: int) -> RegionEpoch:
    """The interned RegionEpoch for already validated ints."""
    key = (CACHE_SALT, conf_ver, version)
    e = epoch_cache.get(key)
    if e is None:
        if len(epoch_cache) >= _CACHE_MAX:
            epoch_cache.clear()
        e = epoch_cache[key] = RegionEpoch(conf_ver, version)
    return e


def take_peer(v: list[Any], at: int, what: str, field: str) -> Peer:
    """The peer stored flat as ``id, store_id, role`` at ``v[at:at+3]``."""
    if at + 3 > len(v):
        raise SchemaError(what, f"{field}: array ends inside a peer")
    pid, sid, role = v[at], v[at + 1], v[at + 2]
    if type(pid) is not int or type(sid) is not int or type(role) is not int:
        fail(what, field, "a peer (3 ints)", [pid, sid, role])
    if pid < 0 or sid < 0:
        fail(what, field, "a peer of u64 ids", [pid, sid])
    return peer(pid, sid, role, what)


def take_epoch(v: list[Any], at: int, what: str) -> RegionEpoch:
    """The epoch stored flat as ``conf_ver, version`` at ``v[at:at+2]``."""
    if at + 2 > len(v):
        raise SchemaError(what, "array ends inside the region epoch")
    return epoch(u64(v[at], what, "epoch.conf_ver"), u64(v[at + 1], what, "epoch.version"))


def region_array(r: Region) -> list[Any]:
    """``[id, start_key, end_key, conf_ver, version, (peer_id, store_id, role)*]``."""
    out: list[Any] = [r.id, r.start_key, r.end_key, r.epoch.conf_ver, r.epoch.version]
    for p in r.peers:
        out += (p.id, p.store_id, p.role)
    return out


def region_from(v: object, what: str) -> Region:
    a = array(v, what, "region")
    if len(a) < 5 or (len(a) - 5) % 3:
        raise SchemaError(what, f"a region is 5 fields plus 3 per peer, got {len(a)} fields")
    peers = [take_peer(a, i, what, "region peer") for i in range(5, len(a), 3)]
    return Region(
        u64(a[0], what, "region.id"),
        byt(a[1], what, "region.start_key"),
        byt(a[2], what, "region.end_key"),
        take_epoch(a, 3, what),
        peers,
    )
