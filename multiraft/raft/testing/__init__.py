"""Test support for the Raft core: the Raft-level Network simulator and builders.

Documented as unstable: these exist for the test suite and the benchmarks. The
Network steps ``Raft`` objects directly (as raft-rs's harness does) and
"persists" synchronously after every step; the Ready-level harness that checks
persist-before-send lives in the tests (``tests/raft/ready_network.py``).
"""

from multiraft.raft.testing.network import BlackHole, Network, persist, read_messages
from multiraft.raft.testing.util import (
    NOP_STEPPER,
    SOME_DATA,
    add_learner,
    add_node,
    conf_change,
    conf_change_v2,
    conf_state,
    conf_state_v2,
    empty_entry,
    hard_state,
    ltoa,
    new_entry,
    new_message,
    new_message_with_entries,
    new_snapshot,
    new_storage,
    new_test_config,
    new_test_learner_raft,
    new_test_raft,
    new_test_raft_with_config,
    new_test_raft_with_logs,
    new_test_raft_with_prevote,
    remove_node,
    soft_state,
)

__all__ = [
    "NOP_STEPPER",
    "SOME_DATA",
    "BlackHole",
    "Network",
    "add_learner",
    "add_node",
    "conf_change",
    "conf_change_v2",
    "conf_state",
    "conf_state_v2",
    "empty_entry",
    "hard_state",
    "ltoa",
    "new_entry",
    "new_message",
    "new_message_with_entries",
    "new_snapshot",
    "new_storage",
    "new_test_config",
    "new_test_learner_raft",
    "new_test_raft",
    "new_test_raft_with_config",
    "new_test_raft_with_logs",
    "new_test_raft_with_prevote",
    "persist",
    "read_messages",
    "remove_node",
    "soft_state",
]
