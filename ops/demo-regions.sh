#!/usr/bin/env bash
# A tour of regions on a local cluster: load data until the first region splits, move a
# region by hand, transfer a leader, then drain a store -- printing the region table after
# each step.
#
#   ops/demo-regions.sh [DATA_DIR]        (default: ./multiraft-demo; removed at the end
#                                         unless KEEP=1)
#
# Needs `multiraft` on PATH (pip install -e .). Takes about a minute; scheduling is off so
# the table shows only the manual operations (`cluster up --schedule` turns it on).
set -euo pipefail

DATA="${1:-./multiraft-demo}"
export MULTIRAFT_DATA_DIR="$DATA"
MR=(multiraft)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
regions() { "${MR[@]}" region list --data-dir "$DATA"; }
count_regions() {
    "${MR[@]}" region list --json --data-dir "$DATA" |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
}
cleanup() {
    "${MR[@]}" cluster down --data-dir "$DATA" >/dev/null 2>&1 || true
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$DATA"; fi
}
trap cleanup EXIT

# Scheduling is off so that the table shows what *we* did (with it on, the balancer would
# soon move the region back); drains run either way.
step "Start a local cluster of 4 stores (regions split at 1 MiB; automatic scheduling off)"
"${MR[@]}" cluster up --stores 4 --data-dir "$DATA" --no-schedule
regions

step "Load data (1 KiB values) until the split checker has cut the first region in 3+"
for _ in $(seq 1 20); do
    "${MR[@]}" bench kv --workload write --clients 16 --duration 2 --value-size 1024 \
        --keys 20000 --data-dir "$DATA" >/dev/null
    [[ "$(count_regions)" -ge 3 ]] && break
done
echo "regions: $(count_regions)"
regions

# Store ids come from placement's id allocator: ask for them.
STORES="$("${MR[@]}" store list --json --data-dir "$DATA" |
    python3 -c 'import json, sys; print(",".join(str(s["id"]) for s in json.load(sys.stdin)))')"
# The first region in key order, a store that holds it and one that does not.
read -r REGION FROM TO < <("${MR[@]}" region list --json --data-dir "$DATA" |
    STORES="$STORES" python3 -c '
import json, os, sys
stores = [int(s) for s in os.environ["STORES"].split(",")]
r = json.load(sys.stdin)[0]
on = sorted(p["store_id"] for p in r["peers"])
off = [s for s in stores if s not in on]
print(r["id"], on[0], off[0])')
DRAIN="${TO}"

step "Split region $REGION in the middle by hand"
"${MR[@]}" region split "$REGION" --data-dir "$DATA"

step "Move region $REGION's replica from store $FROM to store $TO"
"${MR[@]}" region move "$REGION" --from "$FROM" --to "$TO" --data-dir "$DATA"
regions

# A voter of the region that does not lead it now.
LEADER_TO="$("${MR[@]}" region list --json --data-dir "$DATA" | REGION="$REGION" python3 -c '
import json, os, sys
r = next(r for r in json.load(sys.stdin) if r["id"] == int(os.environ["REGION"]))
leader = (r.get("leader") or {}).get("store_id")
print(next(p["store_id"] for p in r["peers"] if p["store_id"] != leader))')"
step "Transfer region $REGION's leadership to store $LEADER_TO"
"${MR[@]}" region transfer-leader "$REGION" --to "$LEADER_TO" --data-dir "$DATA"

step "Drain store $DRAIN: every replica moves off it, then it is retired"
"${MR[@]}" store drain "$DRAIN" --data-dir "$DATA"
regions
"${MR[@]}" store list --data-dir "$DATA"

step "The data is still there (first keys, in order, across regions)"
"${MR[@]}" kv scan --keys-only --limit 5 --data-dir "$DATA"
