"""Length-prefixed frames on a byte stream, and a sans-IO frame decoder.

Frame format (all integers big-endian)::

    offset size field
    0      2    magic       b"MR" (0x4d 0x52)
    2      1    version     WIRE_VERSION (1)
    3      1    kind        a FrameKind
    4      8    cluster_id  u64; 0 only on HELLO frames (see below)
    12     4    length      u32, bytes of payload that follow the header
    16     4    crc32       zlib crc32 of header bytes 0..15, then of the payload
    20     length payload   one CBOR item; its schema depends on ``kind`` (codec.py)

The crc32 covers the header's first 16 bytes as well as the payload, so a flipped
bit in ``kind`` or ``length`` cannot deliver a valid-looking payload under the
wrong decoder; TCP's own checksum is too weak to trust (Dragonboat does the same).

Cluster id 0 means "not known yet". It is legal only on HELLO frames: a client
that has not learnt the cluster id introduces itself with cluster id 0, and the
server answers with a HELLO that carries the real one. A decoder built with
cluster id 0 accepts only HELLO frames (of any cluster id) until
:meth:`FrameDecoder.adopt_cluster_id` is called.

Decoder rules (h11's ReceiveBuffer in spirit):

* ``feed(data)`` validates eagerly: every header is checked as soon as its bytes
  are present (magic and version already from the first 2 and 3 bytes), so a
  ``FrameTooLarge`` is raised before any of that frame's body is kept. The
  decoder never allocates from a length prefix; after ``feed`` returns, its
  buffer holds only the incomplete tail of one frame, at most
  ``HEADER_SIZE + max_frame_size`` bytes. Complete frames wait in a queue for
  ``next_frame()``; they are the caller's bytes, so drain after every feed.
* Waiting for the rest of a body costs O(1) per feed (no rescans), so a peer
  trickling one byte at a time cannot make the decoder quadratic.
* Any error poisons the decoder: it drops its buffer and queue, and every later
  ``feed``/``next_frame`` raises the same error. The stream cannot be
  resynchronised; close the connection. A new connection gets a new decoder.
* Only :class:`~multiraft.wire.errors.WireError` subclasses are raised on input.

Sizing ``max_frame_size``: it bounds the buffer, and it also bounds what decoding a
payload can cost. cbor2 builds the whole item before the schema is checked, so a
hostile payload of many tiny arrays can transiently take about 64 bytes of Python
objects per payload byte (maps are refused on sight, strings and integers cost far
less). The 16 MiB default fits Raft entries of up to 8 MiB between stores; client
connections are better served by a limit of about 1 MiB.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterator
from enum import IntEnum
from typing import NamedTuple, NoReturn

from multiraft.wire.errors import (
    BadMagic,
    ChecksumMismatch,
    FrameTooLarge,
    TruncatedFrame,
    UnknownFrameKind,
    UnknownVersion,
    WireError,
    WrongClusterId,
)

MAGIC = b"MR"
WIRE_VERSION = 1
#: magic, version, kind, cluster_id, length (the part the crc covers), then crc32.
_PREFIX = struct.Struct(">2sBBQI")
_HEADER = struct.Struct(">2sBBQII")
HEADER_SIZE = _HEADER.size  # 20
_PREFIX_SIZE = _PREFIX.size  # 16
MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1
#: Default receive limit. Raft entries are capped well below this (TiKV: 8 MiB
#: entries, 10 MiB messages); snapshots travel as much smaller chunks.
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024


class FrameKind(IntEnum):
    """What a frame's payload is; each kind has one payload codec (codec.py)."""

    RAFT_BATCH = 1
    KV_REQUEST = 2
    KV_RESPONSE = 3
    ADMIN_REQUEST = 4
    ADMIN_RESPONSE = 5
    SNAPSHOT_CHUNK = 6
    SNAPSHOT_ACK = 7
    ERROR = 8
    HELLO = 9
    PLACEMENT_REQUEST = 10
    PLACEMENT_RESPONSE = 11


_KINDS: dict[int, FrameKind] = {k.value: k for k in FrameKind}
_KNOWN_KINDS = sorted(_KINDS)


class Frame(NamedTuple):
    """One decoded frame: its checksum was verified, its payload is not yet decoded."""

    kind: FrameKind
    cluster_id: int
    payload: bytes


def encode_frame(kind: FrameKind, cluster_id: int, payload: bytes) -> bytes:
    """The bytes of one frame carrying ``payload``.

    Raises:
        ValueError: ``cluster_id`` is 0 on a non-HELLO frame or out of u64 range,
            or ``payload`` is longer than a u32 length can say.
    """
    if not 0 <= cluster_id <= MAX_U64:
        raise ValueError(f"cluster id {cluster_id} is not a u64")
    if cluster_id == 0 and kind != FrameKind.HELLO:
        raise ValueError(f"cluster id 0 is only allowed on HELLO frames, not {kind.name}")
    n = len(payload)
    if n > MAX_U32:
        raise ValueError(f"payload of {n} bytes does not fit a u32 length")
    prefix = _PREFIX.pack(MAGIC, WIRE_VERSION, kind, cluster_id, n)
    crc = zlib.crc32(payload, zlib.crc32(prefix))
    return b"".join((prefix, crc.to_bytes(4, "big"), payload))


class FrameDecoder:
    """Bytes in, verified frames out, for one connection. See the module docstring.

    Typical use::

        dec = FrameDecoder(cluster_id, max_frame_size)
        while data := await stream.receive_some():
            dec.feed(data)                       # may raise WireError: close
            while (frame := dec.next_frame()) is not None:
                handle(frame)
        dec.feed_eof()                           # TruncatedFrame if cut mid-frame
    """

    __slots__ = ("_buf", "_cluster_id", "_error", "_frames", "_max", "_need")

    def __init__(self, cluster_id: int, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 0 <= cluster_id <= MAX_U64:
            raise ValueError(f"cluster id {cluster_id} is not a u64")
        if not 0 <= max_frame_size <= MAX_U32:
            raise ValueError(f"max_frame_size {max_frame_size} is not in 0..2**32-1")
        self._cluster_id = cluster_id
        self._max = max_frame_size
        self._buf = bytearray()
        self._frames: deque[Frame] = deque()
        self._error: WireError | None = None
        # Bytes the buffer must reach before parsing can make progress: the end
        # of the current frame once its header is known, else 0 (parse on every
        # feed, so that the magic and version of a partial header are checked).
        self._need = 0

    @property
    def cluster_id(self) -> int:
        """The cluster id frames must carry; 0 while it is not known (HELLO only)."""
        return self._cluster_id

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes of the incomplete frame held (at most ``HEADER_SIZE + max_frame_size``)."""
        return len(self._buf)

    @property
    def error(self) -> WireError | None:
        """The error that poisoned this decoder, if any."""
        return self._error

    def adopt_cluster_id(self, cluster_id: int) -> None:
        """Learn the cluster id (from the server's HELLO) after starting with 0."""
        if self._cluster_id != 0:
            raise ValueError(f"the cluster id is already {self._cluster_id}")
        if not 0 < cluster_id <= MAX_U64:
            raise ValueError(f"cluster id {cluster_id} is not a non-zero u64")
        self._cluster_id = cluster_id

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take more bytes from the stream; validate every header they complete.

        Raises:
            WireError: the stream is bad; the decoder is now poisoned.
        """
        if self._error is not None:
            raise self._error
        if not data:
            return
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return  # still inside a body whose header was already checked
            consumed = self._parse(buf)
            del buf[:consumed]
        else:
            # Fast path: parse straight from the caller's bytes, copy only the tail.
            consumed = self._parse(data)
            if consumed < len(data):
                buf += memoryview(data)[consumed:]

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes are fed.

        Raises:
            WireError: the decoder was poisoned by an earlier error.
        """
        if self._error is not None:
            raise self._error
        frames = self._frames
        return frames.popleft() if frames else None

    def __iter__(self) -> Iterator[Frame]:
        """Drain the complete frames: ``for frame in decoder: ...``."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def feed_eof(self) -> None:
        """The peer closed the stream. A clean close is between frames.

        Raises:
            TruncatedFrame: the stream ended inside a frame.
            WireError: the decoder was poisoned by an earlier error.
        """
        if self._error is not None:
            raise self._error
        if self._buf:
            need = self._need if self._need else None
            self._fail(TruncatedFrame(len(self._buf), need))

    # -- internals ---------------------------------------------------------------------

    def _fail(self, err: WireError) -> NoReturn:
        self._error = err
        self._buf = bytearray()
        self._frames.clear()
        self._need = 0
        raise err

    def _parse(self, src: bytes | bytearray | memoryview) -> int:
        """Queue every complete frame in ``src``; check the tail's header; return bytes used."""
        with memoryview(src) as mv:
            end = len(mv)
            pos = 0
            while True:
                avail = end - pos
                if avail < HEADER_SIZE:
                    if avail:
                        self._check_partial_header(mv[pos:end])
                    self._need = 0
                    return pos
                magic, version, kind, cluster_id, length, crc = _HEADER.unpack_from(mv, pos)
                self._check_header(magic, version, kind, cluster_id, length)
                frame_end = pos + HEADER_SIZE + length
                if frame_end > end:
                    self._need = frame_end - pos
                    return pos
                body = mv[pos + HEADER_SIZE : frame_end]
                got = zlib.crc32(body, zlib.crc32(mv[pos : pos + _PREFIX_SIZE]))
                if got != crc:
                    self._fail(ChecksumMismatch(crc, got, HEADER_SIZE + length))
                self._frames.append(Frame(_KINDS[kind], cluster_id, body.tobytes()))
                pos = frame_end

    def _check_partial_header(self, head: memoryview) -> None:
        """Refuse a bad stream from its first bytes, without waiting for a whole header."""
        n = len(head)
        if head[: min(n, 2)] != MAGIC[: min(n, 2)]:
            self._fail(BadMagic(MAGIC, head[:2].tobytes()))
        if n > 2 and head[2] != WIRE_VERSION:
            self._fail(UnknownVersion(WIRE_VERSION, head[2]))
        if n > 3 and head[3] not in _KINDS:
            self._fail(UnknownFrameKind(head[3], _KNOWN_KINDS))

    def _check_header(
        self, magic: bytes, version: int, kind: int, cluster_id: int, length: int
    ) -> None:
        if magic != MAGIC:
            self._fail(BadMagic(MAGIC, magic))
        if version != WIRE_VERSION:
            self._fail(UnknownVersion(WIRE_VERSION, version))
        if kind not in _KINDS:
            self._fail(UnknownFrameKind(kind, _KNOWN_KINDS))
        mine = self._cluster_id
        if mine == 0:
            if kind != FrameKind.HELLO:
                self._fail(WrongClusterId(0, cluster_id, "cluster id not learnt yet: HELLO only"))
        elif cluster_id != mine and not (cluster_id == 0 and kind == FrameKind.HELLO):
            self._fail(WrongClusterId(mine, cluster_id))
        if length > self._max:
            self._fail(FrameTooLarge(length, self._max))
