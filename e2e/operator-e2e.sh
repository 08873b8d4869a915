#!/usr/bin/env bash
# Runs the operator's end-to-end tests against the real local control plane:
# installs the CRDs and the operator's RBAC, starts the operator binary as its own
# ServiceAccount (kubeconfig impersonation, so least-privilege RBAC is exercised),
# runs `cargo test --test e2e`, then stops the operator with SIGTERM and checks it
# shut down cleanly. Expects `make cluster-up` to have run (the Makefile does it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
: "${KUBECONFIG:?KUBECONFIG must point at the local cluster (make cluster-up)}"
: "${KUBECTL:=kubectl}"
state=${STATE_DIR:-$root/e2e/.state}/operator-e2e
mkdir -p "$state"
cargo=${CARGO:-cargo}
# shellcheck source=lib/operator.sh
. "$root/e2e/lib/operator.sh"

echo "==> building the operator and its tests"
"$cargo" build -p modelhub-operator --bins --tests --quiet

echo "==> installing CRDs and the operator's RBAC"
install_operator_prereqs "$root"
# Every deploy artefact is accepted by the API server.
"$KUBECTL" apply --dry-run=server -k "$root/config/default" >/dev/null
"$KUBECTL" apply --dry-run=server -n default -k "$root/config/samples" >/dev/null
"${HELM:-helm}" template modelhub "$root/charts/modelhub" -n modelhub-system --skip-crds | \
  "$KUBECTL" apply --dry-run=server -f - >/dev/null
# Leftovers of an earlier run would make the tests wait on old objects.
"$KUBECTL" delete namespace -l modelhub.io/e2e=true --wait=true --timeout=120s >/dev/null 2>&1 || true

if [ -n "${E2E_EXTERNAL_OPERATOR:-}" ]; then
  # kind path: the operator runs in the cluster (make deploy); only run the tests.
  echo "==> running the e2e tests against the in-cluster operator"
  exec "$cargo" test -p modelhub-operator --test e2e -- --ignored --test-threads=4 --skip leader_election
fi

sa_kubeconfig=$state/operator.kubeconfig
operator_sa_kubeconfig "$sa_kubeconfig"
target_dir=$("$cargo" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
log=$state/operator.log
echo "==> starting the operator as system:serviceaccount:modelhub-system:modelhub-operator (log: $log)"
stop_operator() {
  if [ -n "${operator_pid:-}" ] && kill -0 "$operator_pid" 2>/dev/null; then kill -KILL "$operator_pid" 2>/dev/null || true; fi
}
trap stop_operator EXIT
start_operator "$target_dir/debug/modelhub-operator" "$sa_kubeconfig" 127.0.0.1:18080 e2e-operator "$log"

echo "==> running the e2e tests"
status=0
"$cargo" test -p modelhub-operator --test e2e -- --ignored --test-threads=4 || status=$?

# No reconcile may fail for lack of permissions.
operator_rbac_denials "$log" || status=1
curl -sf http://127.0.0.1:18080/metrics | grep '^modelhub_operator_reconciles_total' || status=1

echo "==> stopping the operator with SIGTERM"
stop_operator_cleanly "$log" || status=1
trap - EXIT
# The test namespaces go (in the background): a node agent started later must not run
# their pods.
"$KUBECTL" delete namespace -l modelhub.io/e2e=true --wait=false >/dev/null 2>&1 || true
if [ "$status" -ne 0 ]; then
  echo "--- operator log (tail) ---" >&2; tail -40 "$log" >&2
fi
exit "$status"
