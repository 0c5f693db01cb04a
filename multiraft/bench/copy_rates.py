"""Reference rates for moving bytes on this machine: loopback TCP and durable LMDB writes.

``multiraft bench regions`` prints them next to the time a region move takes, for scale:
a move streams the region's data over a socket (a snapshot) and writes it into the
target store's LMDB, so these two rates bound what a move could reach here.

* :func:`loopback_tcp_rate`: one trio TCP connection on 127.0.0.1, both ends in this
  process and thread (as a store's transport runs); the sender writes ``total`` bytes in
  ``chunk``-byte ``send_all`` calls, the receiver reads until it has them all. The
  elapsed time runs from the first send to the last byte received.
* :func:`lmdb_write_rate`: ``pairs`` key/value puts of the given sizes into a fresh plain
  ``lmdb`` environment (``sync=True``, as the stores open theirs), in ``transactions``
  transactions of equal size, each commit an fsync; the elapsed time covers every put
  and commit, in a worker thread.

Both report bytes of payload (keys plus values for LMDB) per second.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import lmdb
import trio

__all__ = ["Rate", "lmdb_write_rate", "loopback_tcp_rate"]

MIB: Final = 1 << 20
#: Bytes per ``send_all`` and per ``receive_some`` (the transport's frames are of this order).
DEFAULT_CHUNK: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Rate:
    bytes: int
    seconds: float

    @property
    def mib_per_second(self) -> float:
        return self.bytes / MIB / self.seconds if self.seconds > 0 else math.inf


async def loopback_tcp_rate(total: int, chunk: int = DEFAULT_CHUNK) -> Rate:
    """Stream ``total`` bytes over a loopback TCP connection (see the module docstring)."""
    if total <= 0 or chunk <= 0:
        raise ValueError("total and chunk must be positive")
    block = memoryview(os.urandom(chunk))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    received = 0
    done = trio.Event()

    async def receive() -> None:
        nonlocal received
        stream = await listeners[0].accept()
        async with stream:
            while received < total:
                data = await stream.receive_some(chunk)
                if not data:
                    break
                received += len(data)
        done.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            async with await trio.open_tcp_stream("127.0.0.1", port) as sender:
                start = trio.current_time()
                left = total
                while left > 0:
                    n = min(left, chunk)
                    await sender.send_all(block[:n])
                    left -= n
                await done.wait()
                elapsed = trio.current_time() - start
    finally:
        for listener in listeners:
            await listener.aclose()
    if received != total:
        raise RuntimeError(f"loopback stream delivered {received} of {total} bytes")
    return Rate(total, elapsed)


def _lmdb_puts(path: Path, pairs: int, key_size: int, value_size: int, transactions: int) -> float:
    map_size = max(64 * MIB, 2 * pairs * (key_size + value_size + 64))
    value = os.urandom(value_size)
    env = lmdb.open(str(path), map_size=map_size, sync=True, metasync=True, readahead=False)
    try:
        per_txn = math.ceil(pairs / transactions)
        start = time.perf_counter()
        for lo in range(0, pairs, per_txn):
            with env.begin(write=True) as txn:
                for i in range(lo, min(lo + per_txn, pairs)):
                    txn.put(i.to_bytes(8, "big").rjust(key_size, b"k"), value)
        return time.perf_counter() - start
    finally:
        env.close()


async def lmdb_write_rate(
    pairs: int,
    key_size: int,
    value_size: int,
    *,
    transactions: int = 4,
    directory: Path | None = None,
) -> Rate:
    """Put ``pairs`` pairs in ``transactions`` fsynced transactions (module docstring).

    ``directory``: where the temporary environment goes (default: the system's temporary
    directory); it is removed afterwards.
    """
    if pairs <= 0 or key_size < 8 or value_size < 0 or transactions <= 0:
        raise ValueError("need pairs > 0, key_size >= 8, value_size >= 0, transactions > 0")
    path = Path(tempfile.mkdtemp(prefix="lmdb-rate-", dir=directory))
    try:
        seconds = await trio.to_thread.run_sync(
            _lmdb_puts, path, pairs, key_size, value_size, min(transactions, pairs)
        )
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return Rate(pairs * (key_size + value_size), seconds)
