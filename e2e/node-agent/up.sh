#!/usr/bin/env bash
# Starts the node agent in the background (idempotent) and waits until its Node is Ready.
# Usage: up.sh <bin-dir> <state-dir> [extra `modelhub-node-agent run` flags...]
set -euo pipefail
# Whether pid $1 runs (a zombie left for a non-reaping init counts as gone).
running() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1) != Z ]]; }
bin_dir=$1 state=$2
shift 2
: "${KUBECONFIG:?KUBECONFIG must point at the cluster}"
kubectl=${KUBECTL:-kubectl}
node=${NODE_AGENT_NODE_NAME:-modelhub-local}
mkdir -p "$state"
if [[ -f $state/agent.pid ]] && running "$(cat "$state/agent.pid")"; then
  echo "node agent already running (pid $(cat "$state/agent.pid"))"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "the node agent needs root (network and mount namespaces)" >&2
  exit 1
fi
nohup "$bin_dir/modelhub-node-agent" run --node-name "$node" --data-root "$state/data" \
  --bin-dir "$bin_dir" "$@" >>"$state/agent.log" 2>&1 &
echo $! >"$state/agent.pid"
for _ in $(seq 1 120); do
  if ! running "$(cat "$state/agent.pid")"; then
    echo "node agent exited; last log lines:" >&2
    tail -n 20 "$state/agent.log" >&2
    exit 1
  fi
  if [[ $("$kubectl" get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; then
    echo "node agent running (pid $(cat "$state/agent.pid")), node $node Ready; log: $state/agent.log"
    exit 0
  fi
  sleep 0.5
done
echo "node $node did not become Ready; see $state/agent.log" >&2
exit 1
