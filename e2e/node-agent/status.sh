#!/usr/bin/env bash
# Shows whether the node agent runs and the state of its Node.
# Usage: status.sh <state-dir>
set -uo pipefail
# Whether pid $1 runs (a zombie left for a non-reaping init counts as gone).
running() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1) != Z ]]; }
state=$1
kubectl=${KUBECTL:-kubectl}
if [[ -f $state/agent.pid ]] && running "$(cat "$state/agent.pid")"; then
  echo "node agent: running (pid $(cat "$state/agent.pid")), log $state/agent.log"
else
  echo "node agent: not running"
fi
"$kubectl" get nodes -o wide 2>/dev/null || true
