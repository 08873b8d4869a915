#!/usr/bin/env bash
# Runs the end-to-end scenarios (cargo test -p modelhub-e2e) against the local cluster:
# installs the CRDs and RBAC, starts the operator as its ServiceAccount and a node agent
# serving only `mh-e2e-*` namespaces, runs the tests, then stops both and deletes the
# scenario namespaces. Expects `make cluster-up` and the binaries the pods run (operator,
# node agent, tinyinfer, gateway) to be built, and libonnxruntime.so beside tinyinfer
# (the Makefile's test-e2e does all of it).
# Usage: run.sh <bin-dir> <node-agent-state-dir> <tinyinfer-models-dir>
#   (E2E_TEST=<file stem under tests/> runs that file's scenarios only)
set -euo pipefail
bin_dir=$1 agent_state=$2 models=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${KUBECONFIG:?KUBECONFIG must point at the local cluster (make cluster-up)}"
: "${KUBECTL:=kubectl}"
cargo=${CARGO:-cargo}
state=${STATE_DIR:-$root/e2e/.state}/scenarios
mkdir -p "$state"
# shellcheck source=../lib/operator.sh
. "$root/e2e/lib/operator.sh"

echo "==> building the scenarios"
"$cargo" test -p modelhub-e2e --no-run --quiet

echo "==> installing CRDs and the operator's RBAC"
install_operator_prereqs "$root"
"$KUBECTL" delete namespace -l modelhub.io/e2e=true --wait=true --timeout=120s >/dev/null 2>&1 || true

agent_down() { "$root/e2e/node-agent/down.sh" "$agent_state" >/dev/null 2>&1 || true; }
cleanup() {
  if [ -n "${operator_pid:-}" ] && kill -0 "$operator_pid" 2>/dev/null; then kill -KILL "$operator_pid" 2>/dev/null || true; fi
  "$KUBECTL" delete namespace -l modelhub.io/e2e=true --wait=false >/dev/null 2>&1 || true
  agent_down
}
trap cleanup EXIT

sa_kubeconfig=$state/operator.kubeconfig
operator_sa_kubeconfig "$sa_kubeconfig"
log=$state/operator.log
echo "==> starting the operator as its ServiceAccount (log: $log)"
start_operator "$bin_dir/modelhub-operator" "$sa_kubeconfig" 127.0.0.1:18082 e2e-scenarios "$log"

echo "==> starting a node agent for mh-e2e-* namespaces"
agent_down
"$root/e2e/node-agent/up.sh" "$bin_dir" "$agent_state" --namespace-prefix mh-e2e- --backoff-seconds 1

echo "==> running the scenarios"
status=0
NODE_AGENT_STATE=$agent_state TINYINFER_MODELS_DIR=$models \
  "$cargo" test -p modelhub-e2e ${E2E_TEST:+--test "$E2E_TEST"} -- --ignored --test-threads=2 || status=$?

operator_rbac_denials "$log" || status=1
stop_operator_cleanly "$log" || status=1
if [ "$status" -ne 0 ]; then
  echo "--- operator log (tail) ---" >&2; tail -40 "$log" >&2
  echo "--- node agent log (tail) ---" >&2; tail -40 "$agent_state/agent.log" >&2
fi
exit "$status"
