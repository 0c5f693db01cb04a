"""The randomness the core is given: a protocol, and a deterministic default.

The core never imports :mod:`random`: the store injects ``random.Random(seed)``
(which satisfies :class:`Rng`), and tests inject seeded generators so that every
election timeout is reproducible. Without one, a node uses
:class:`SplitMix64` seeded by its id, which is deterministic and still spreads
the timeouts of different nodes apart.
"""

from __future__ import annotations

from typing import Protocol

_MASK = (1 << 64) - 1


class Rng(Protocol):
    def randrange(self, start: int, stop: int, /) -> int: ...


class SplitMix64:
    """A tiny, fast, deterministic 64-bit generator (Steele, Lea & Flood, 2014)."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def randrange(self, start: int, stop: int, /) -> int:
        """Uniform in ``[start, stop)``; the modulo bias is negligible for tick ranges."""
        if stop <= start:
            raise ValueError(f"empty range [{start}, {stop})")
        return start + self._next() % (stop - start)
