#!/usr/bin/env bash
# Stops the node agent: SIGTERM (it stops every container with its grace period), then SIGKILL.
# Usage: down.sh <state-dir>
set -euo pipefail
# Whether pid $1 runs (a zombie left for a non-reaping init counts as gone).
running() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1) != Z ]]; }
state=$1
pidfile=$state/agent.pid
[[ -f $pidfile ]] || { echo "node agent not running"; exit 0; }
pid=$(cat "$pidfile")
if running "$pid"; then
  kill -TERM "$pid"
  for _ in $(seq 1 240); do
    running "$pid" || break
    sleep 0.5
  done
  if running "$pid"; then
    echo "node agent did not stop in 120 s; killing it" >&2
    kill -KILL "$pid" || true
  fi
fi
rm -f "$pidfile"
echo "node agent stopped"
