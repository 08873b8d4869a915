#!/usr/bin/env bash
# Prints the state of each local control-plane component (pid, health) and the
# apiserver's readiness. Exits 0 only when everything is up and healthy.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rc=0
check() { # NAME ENDPOINT HEALTH_FN
	local pid health=down
	pid="$(pid_of "$1")" || pid="-"
	"$3" && health=ok
	printf '  %-24s pid %-8s %-30s %s\n' "$1" "$pid" "$2" "$health"
	[[ "$pid" != - && "$health" == ok ]] || rc=1
}
echo "local control plane $K8S_VERSION (etcd $ETCD_VERSION), state $RUN_DIR"
check etcd "http://$HOST:$ETCD_CLIENT_PORT" etcd_healthy
check kube-apiserver "https://$HOST:$APISERVER_PORT" apiserver_ready
check kube-controller-manager "https://$HOST:$KCM_PORT" kcm_healthy
if ((rc == 0)); then
	echo "KUBECONFIG=$KUBECONFIG"
	"$KUBECTL" version 2>/dev/null | sed 's/^/  /' || true
else
	echo "not (fully) running: make cluster-up"
fi
exit "$rc"
