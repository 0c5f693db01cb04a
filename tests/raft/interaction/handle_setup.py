"""Set-up commands: ``add-nodes``, ``log-level``, ``compact``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiraft.raft import (
    NO_LIMIT,
    Config,
    ConfState,
    ListLogger,
    RaftError,
    RaftFatal,
    RawNode,
    ReadOnlyOption,
    Snapshot,
    SnapshotMetadata,
)
from tests.datadriven import TestData
from tests.raft.interaction.env import LEVELS, EnvStorage, Node, decode_state

if TYPE_CHECKING:
    from tests.raft.interaction.env import InteractionEnv

_BOOLS = {"true": True, "false": False}


def _bool(d: TestData, key: str) -> bool:
    v = d.scan_str(key, "false")
    if v not in _BOOLS:
        d.fail(f"{key} must be true or false, not {v!r}")
    return _BOOLS[v]


def handle_add_nodes(env: InteractionEnv, d: TestData) -> None:
    """Add ``n`` nodes with the next ids, sharing one bootstrap snapshot (or none).

    With ``voters``/``learners`` every new node starts from a snapshot at
    ``index`` (default 2) and term 1 holding that membership, as etcd's harness
    does; otherwise it starts empty, not even knowing the membership, and must
    be caught up by a snapshot from the leader.
    """
    counts = d.positional_ints()
    if len(counts) != 1:
        d.fail("add-nodes needs the number of nodes")
    n = counts[0]
    voters = d.scan_ints("voters", [])
    learners = d.scan_ints("learners", [])
    index = d.scan_int("index", 2)
    content = d.scan_str("content", "").encode()
    read_only = d.scan_str("read-only", "safe")
    if read_only not in ("safe", "lease-based"):
        d.fail(f"read-only must be safe or lease-based, not {read_only!r}")
    bootstrap = bool(voters or learners)
    if bootstrap and index < 1:
        d.fail("index must be at least 1")
    for _ in range(n):
        id = len(env.nodes) + 1
        cfg = Config(
            id=id,
            election_tick=3,
            heartbeat_tick=1,
            # A fixed election timeout: tick-election on a follower always campaigns.
            min_election_tick=3,
            max_election_tick=4,
            max_size_per_msg=NO_LIMIT,
            max_inflight_msgs=d.scan_int("max-inflight", 256),
            pre_vote=_bool(d, "prevote"),
            check_quorum=_bool(d, "checkquorum"),
            read_only_option=(
                ReadOnlyOption.LeaseBased if read_only == "lease-based" else ReadOnlyOption.Safe
            ),
        )
        storage = EnvStorage()
        if bootstrap:
            cs = ConfState(voters=list(voters), learners=list(learners))
            snap = Snapshot(data=content, metadata=SnapshotMetadata(cs, index, 1))
            storage.apply_snapshot(snap)
            storage.applied_index, storage.applied_term = index, 1
            storage.applied_conf_state = ConfState(voters=list(voters), learners=list(learners))
            storage.applied_log = decode_state(content)
        logger = ListLogger()
        try:
            raw = RawNode(cfg, storage, logger)
        except (RaftError, RaftFatal) as exc:
            env.error(repr(exc))
            return
        env.nodes[id] = Node(
            id, raw, storage, logger, cfg, async_writes=_bool(d, "async-storage-writes")
        )
        env.flush_logs()


def handle_log_level(env: InteractionEnv, d: TestData) -> None:
    """Set which log lines are shown; ``quiet`` hides all output but errors."""
    names = [a.key for a in d.args]
    if len(names) != 1 or names[0].lower() not in LEVELS:
        d.fail(f"log-level needs one of {', '.join(LEVELS)}")
    env.flush_logs()
    env.level = LEVELS.index(names[0].lower())


def handle_compact(env: InteractionEnv, d: TestData) -> None:
    """Discard a node's stored entries below ``index`` (raft-rs's ``MemStorage.compact``).

    The new first index is ``index``; it may not pass the applied index + 1.
    Prints the remaining log.
    """
    ids = d.positional_ints()
    if len(ids) != 2:
        d.fail("compact needs a node id and an index")
    node, index = env.node(d, ids[0]), ids[1]
    if index > node.storage.applied_index + 1:
        env.error(f"cannot compact to {index}: applied index is {node.storage.applied_index}")
        return
    node.storage.compact(index)
    from tests.raft.interaction.handle_inspect import write_log

    write_log(env, node)
