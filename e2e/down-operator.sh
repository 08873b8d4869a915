#!/usr/bin/env bash
# Stops the background operator started by up-operator.sh (SIGTERM, then SIGKILL).
# Usage: down-operator.sh <state-dir>
set -euo pipefail
pidfile=$1/operator.pid
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  echo "operator stopped"
fi
rm -f "$pidfile"
