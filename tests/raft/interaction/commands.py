"""The command table of the interaction scenarios: one example line per command.

Node ids are positional (``process-ready 1 2``); options are ``key=value``.
A command that prints nothing answers ``ok``.
"""

from __future__ import annotations

from tests.raft.interaction import handle_inputs, handle_inspect, handle_network, handle_ready
from tests.raft.interaction import handle_setup as setup
from tests.raft.interaction.env import Handler

COMMANDS: dict[str, Handler] = {
    # add-nodes 3 voters=(1,2,3) learners=(4) index=2 content=foo prevote=true
    #   checkquorum=true max-inflight=2 read-only=lease-based async-storage-writes=true
    # Without voters/learners the nodes start empty (to be caught up by snapshot).
    "add-nodes": setup.handle_add_nodes,
    # log-level debug|info|warn|error|none|quiet
    "log-level": setup.handle_log_level,
    # compact 1 18   (the storage of node 1 keeps entries from index 18 on)
    "compact": setup.handle_compact,
    # campaign 1
    "campaign": handle_inputs.handle_campaign,
    # propose 1 foo
    "propose": handle_inputs.handle_propose,
    # propose-conf-change 1 [v1=true] [transition=auto|implicit|explicit]
    # v2 l3 r4        (input: v=add voter, l=add learner, r=remove; empty = leave joint)
    "propose-conf-change": handle_inputs.handle_propose_conf_change,
    # tick-heartbeat 1   (heartbeat_tick ticks)
    "tick-heartbeat": handle_inputs.handle_tick_heartbeat,
    # tick-election 1    (election_tick ticks)
    "tick-election": handle_inputs.handle_tick_election,
    # transfer-leadership from=1 to=2
    "transfer-leadership": handle_inputs.handle_transfer_leadership,
    # read-index 2 ctx1
    "read-index": handle_inputs.handle_read_index,
    # report-unreachable 1 2   (node 1 learns that node 2 is unreachable)
    "report-unreachable": handle_inputs.handle_report_unreachable,
    # process-ready 1 2
    "process-ready": handle_ready.handle_process_ready,
    # persist 2   (async-storage-writes nodes: their written Readies become durable)
    "persist": handle_ready.handle_persist,
    # deliver-msgs 1 2 drop=(3) type=MsgHeartbeat   (messages *to* the given nodes)
    "deliver-msgs": handle_network.handle_deliver_msgs,
    # stabilize [1 2]
    "stabilize": handle_network.handle_stabilize,
    # isolate 3   (drop every message to or from node 3 until heal)
    "isolate": handle_network.handle_isolate,
    # heal
    "heal": handle_network.handle_heal,
    # raft-state
    "raft-state": handle_inspect.handle_raft_state,
    # raft-log 1
    "raft-log": handle_inspect.handle_raft_log,
    # status 1
    "status": handle_inspect.handle_status,
    # applied-log 1   (the commands node 1's state machine has applied)
    "applied-log": handle_inspect.handle_applied_log,
}
