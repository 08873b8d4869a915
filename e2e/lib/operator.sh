# Shell functions for running the operator binary against a cluster as its own
# ServiceAccount (kubeconfig impersonation, so least-privilege RBAC is exercised).
# Sourced by operator-e2e.sh and scenarios/run.sh. Needs KUBECONFIG and KUBECTL.

# install_operator_prereqs ROOT: CRDs (established) and the operator's RBAC.
install_operator_prereqs() {
  local root=$1
  "$KUBECTL" apply --server-side --force-conflicts -f "$root/crds/" >/dev/null
  "$KUBECTL" wait --for condition=established --timeout=60s \
    crd/vectorcollections.modelhub.io crd/inferenceservices.modelhub.io crd/trafficpolicies.modelhub.io >/dev/null
  "$KUBECTL" create namespace modelhub-system --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  "$KUBECTL" apply -n modelhub-system -k "$root/config/rbac" >/dev/null
}

# operator_sa_kubeconfig OUT: writes a kubeconfig that acts as the operator's ServiceAccount.
operator_sa_kubeconfig() {
  "$KUBECTL" config view --raw -o json | python3 -c '
import json, sys
cfg = json.load(sys.stdin)
for user in cfg["users"]:
    user["user"]["as"] = "system:serviceaccount:modelhub-system:modelhub-operator"
json.dump(cfg, sys.stdout)' > "$1"
}

# start_operator BIN SA_KUBECONFIG METRICS_ADDR IDENTITY LOG: starts it in the background,
# sets operator_pid, and waits (60 s at most) until it is ready and leads.
start_operator() {
  local bin=$1 kubeconfig=$2 addr=$3 identity=$4 log=$5
  KUBECONFIG=$kubeconfig POD_NAMESPACE=modelhub-system RUST_LOG=${OPERATOR_RUST_LOG:-info,modelhub_operator=debug} \
    "$bin" --metrics-addr="$addr" --identity="$identity" >"$log" 2>&1 &
  operator_pid=$!
  for _ in $(seq 1 120); do
    if curl -sf "http://$addr/readyz" >/dev/null && \
       curl -sf "http://$addr/metrics" | grep '^modelhub_operator_leader 1' >/dev/null; then
      return 0
    fi
    if ! kill -0 "$operator_pid" 2>/dev/null; then
      echo "operator exited early:" >&2; tail -50 "$log" >&2; return 1
    fi
    sleep 0.5
  done
  echo "operator did not become leader:" >&2; tail -50 "$log" >&2; return 1
}

# stop_operator_cleanly LOG: SIGTERM, and fails when it does not exit cleanly.
stop_operator_cleanly() {
  kill -TERM "$operator_pid"
  if ! wait "$operator_pid"; then
    echo "operator did not shut down cleanly:" >&2; tail -30 "$1" >&2; return 1
  fi
}

# operator_rbac_denials LOG: fails (listing them) when the operator hit RBAC denials.
# Writes refused because a test namespace is being deleted are 403s too, not denials.
operator_rbac_denials() {
  local denials
  denials=$(grep 'forbidden' "$1" | grep -v 'because it is being terminated' || true)
  if [ -n "$denials" ]; then
    echo "the operator hit RBAC denials:" >&2; head -5 <<<"$denials" >&2; return 1
  fi
}
