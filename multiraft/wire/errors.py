"""The wire layer's errors: every way bytes from the network can be wrong.

Rule: the frame decoder and every payload decoder in :mod:`multiraft.wire`
raise **only** subclasses of :class:`WireError`, whatever bytes they are given.
No ``TypeError``, ``ValueError``, ``KeyError``, ``RecursionError`` or
``MemoryError`` escapes; a fuzz test holds the package to it. A transport
therefore needs exactly one ``except WireError`` around a connection: log the
error, count it, close that connection (the frame stream cannot be
resynchronised), and keep serving the others.

Each error says what was expected and what came, so a log line is enough to
tell a misconfigured peer (``WrongClusterId``, ``UnknownVersion``) from a
corrupted link (``ChecksumMismatch``) or a hostile one.

Encoding misuse (an object of the wrong class, a cluster id of 0 on a
non-HELLO frame) is a programming error of ours and raises ``TypeError`` /
``ValueError`` as usual; these errors are for *inputs*.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error a decoder in :mod:`multiraft.wire` raises on bad input."""


class FrameError(WireError):
    """The frame layer (header, length, checksum) is broken: close the connection."""


class FrameTooLarge(FrameError):
    """A header declares a payload longer than the receiver's maximum frame size."""

    def __init__(self, length: int, max_frame_size: int) -> None:
        super().__init__(
            f"frame payload of {length} bytes exceeds the maximum frame size of "
            f"{max_frame_size} bytes (refused before reading the body)"
        )
        self.length = length
        self.max_frame_size = max_frame_size


class BadMagic(FrameError):
    """The stream does not start with our magic bytes: not a multiraft peer, or desynchronised."""

    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"bad frame magic: expected {expected.hex()}, got {got.hex()}")
        self.got = got


class UnknownVersion(FrameError):
    """The peer speaks a wire version this process does not."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"unknown wire version {got}: this process speaks version {expected}")
        self.got = got


class UnknownFrameKind(FrameError):
    """The header's kind byte names no :class:`~multiraft.wire.frames.FrameKind`."""

    def __init__(self, got: int, known: list[int]) -> None:
        super().__init__(f"unknown frame kind {got}: expected one of {known}")
        self.got = got


class WrongClusterId(FrameError):
    """The peer belongs to another cluster (or has not said which, outside HELLO)."""

    def __init__(self, expected: int, got: int, detail: str = "") -> None:
        msg = f"wrong cluster id: expected {expected}, got {got}"
        super().__init__(f"{msg} ({detail})" if detail else msg)
        self.expected = expected
        self.got = got


class ChecksumMismatch(FrameError):
    """The frame's crc32 does not match its bytes: corruption on the link."""

    def __init__(self, expected: int, got: int, length: int) -> None:
        super().__init__(
            f"frame checksum mismatch: header says crc32 {expected:#010x}, "
            f"the {length}-byte frame hashes to {got:#010x}"
        )


class TruncatedFrame(FrameError):
    """The stream ended in the middle of a frame (reported by ``FrameDecoder.feed_eof``)."""

    def __init__(self, buffered: int, needed: int | None) -> None:
        want = f"of {needed}" if needed is not None else "of an incomplete header"
        super().__init__(f"stream ended inside a frame: {buffered} bytes buffered {want}")


class PayloadError(WireError):
    """A frame arrived intact but its payload is unusable."""


class MalformedPayload(PayloadError):
    """The payload is not one well-formed CBOR item (or breaks a decoder limit)."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"malformed CBOR in {what} payload: {detail}")


class SchemaError(PayloadError):
    """The payload is valid CBOR but not the expected shape: wrong field count or type,
    a negative or out-of-range integer, an unknown enum value or variant tag."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"bad {what}: {detail}")
        self.what = what
        self.detail = detail
