#!/usr/bin/env bash
# Stops the node agent: SIGTERM (it stops every container with its grace period), then SIGKILL.
# Usage: down.sh <state-dir>
set -euo pipefail
state=$1
pidfile=$state/agent.pid
[[ -f $pidfile ]] || { echo "node agent not running"; exit 0; }
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 240); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "node agent did not stop in 120 s; killing it" >&2
    kill -KILL "$pid" || true
  fi
fi
rm -f "$pidfile"
echo "node agent stopped"
