#!/usr/bin/env bash
# Starts the operator binary in the background against the local cluster (for `make up`)
# unless one already runs; waits until it is ready and leads.
# Usage: up-operator.sh <operator-binary> <state-dir> <metrics-addr>
set -euo pipefail
bin=$1 state=$2 addr=$3
: "${KUBECONFIG:?KUBECONFIG must point at the local cluster}"
mkdir -p "$state"
pidfile=$state/operator.pid log=$state/operator.log
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "operator already running (pid $(cat "$pidfile"), log $log)"
  exit 0
fi
echo "starting the operator (log: $log, metrics: http://$addr/metrics)"
POD_NAMESPACE=default setsid nohup "$bin" --metrics-addr="$addr" --identity=local-operator >"$log" 2>&1 < /dev/null &
echo $! > "$pidfile"
for _ in $(seq 1 120); do
  if curl -sf "http://$addr/metrics" 2>/dev/null | grep '^modelhub_operator_leader 1' >/dev/null; then
    echo "operator is up and leading"
    exit 0
  fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "operator exited:" >&2; tail -30 "$log" >&2; exit 1; }
  sleep 0.5
done
echo "operator did not become ready:" >&2; tail -30 "$log" >&2; exit 1
