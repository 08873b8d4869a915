#!/usr/bin/env bash
# Shows whether the node agent runs and the state of its Node.
# Usage: status.sh <state-dir>
set -uo pipefail
state=$1
kubectl=${KUBECTL:-kubectl}
if [[ -f $state/agent.pid ]] && kill -0 "$(cat "$state/agent.pid")" 2>/dev/null; then
  echo "node agent: running (pid $(cat "$state/agent.pid")), log $state/agent.log"
else
  echo "node agent: not running"
fi
"$kubectl" get nodes -o wide 2>/dev/null || true
