#!/usr/bin/env bash
# Starts the local control plane (etcd, kube-apiserver, kube-controller-manager)
# as background processes on 127.0.0.1 and waits until it is usable: /readyz ok,
# the default namespace and its default ServiceAccount exist. Idempotent: a
# component that already runs is left alone. On failure prints the tail of the
# failing component's log and exits non-zero. Pids + logs: $STATE_DIR/cluster/.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${CLUSTER_UP_TIMEOUT:=180}" # seconds, per wait

for c in "${COMPONENTS[@]}" kubectl; do
	[[ -x "$TOOLS_BIN/$c" ]] || die "$TOOLS_BIN/$c missing: run 'make tools' first"
done

lock_cluster
if pid_of kube-controller-manager >/dev/null && apiserver_ready 2>/dev/null; then
	log "already up (KUBECONFIG=$KUBECONFIG)"
	exit 0
fi

"$CLUSTER_SCRIPTS/certs.sh"

# start NAME PORT ARGS...: run $TOOLS_BIN/NAME in its own session, detached from
# the terminal / make, unless it already runs. Fails if PORT is taken by another process.
start() {
	local name="$1" port="$2"
	shift 2
	if pid_of "$name" >/dev/null; then
		log "$name: already running (pid $(pid_of "$name"))"
		return
	fi
	port_open "$port" && die "$name: 127.0.0.1:$port is in use by another process (not started from $RUN_DIR)"
	log "$name: starting, log $(log_file "$name")"
	echo "===== $(date -u +%FT%TZ) up.sh starts $name" >>"$(log_file "$name")"
	# The inner shell records its own pid and then execs the binary, so the pid
	# file holds the component's pid whether or not setsid had to fork.
	# shellcheck disable=SC2016 # $$ and $@ are the inner shell's
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$(pid_file "$name")" "$TOOLS_BIN/$name" "$@" \
		</dev/null >>"$(log_file "$name")" 2>&1 8>&- &
	for _ in $(seq 50); do [[ -s "$(pid_file "$name")" ]] && break; sleep 0.1; done
}

# wait_for NAME CHECK: poll CHECK until it succeeds; fail early if NAME died.
wait_for() {
	local name="$1" check="$2" deadline=$((SECONDS + CLUSTER_UP_TIMEOUT))
	until "$check"; do
		if ! pid_of "$name" >/dev/null; then
			show_log "$name"
			die "$name exited during startup"
		fi
		if ((SECONDS > deadline)); then
			show_log "$name"
			die "$name: '$check' not true after ${CLUSTER_UP_TIMEOUT}s"
		fi
		sleep 1
	done
	log "$name: $check"
}

start etcd "$ETCD_CLIENT_PORT" \
	--name=modelhub \
	--data-dir="$RUN_DIR/etcd" \
	--listen-client-urls="http://$HOST:$ETCD_CLIENT_PORT" \
	--advertise-client-urls="http://$HOST:$ETCD_CLIENT_PORT" \
	--listen-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
	--initial-advertise-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
	--initial-cluster="modelhub=http://$HOST:$ETCD_PEER_PORT" \
	--unsafe-no-fsync=true
# --unsafe-no-fsync: throw-away test data; avoids fsync stalls on shared CI disks.
wait_for etcd etcd_healthy

# --endpoint-reconciler-type=none: the apiserver's only address is 127.0.0.1, and
# Endpoints/EndpointSlices reject loopback IPs, so the `kubernetes` Service gets no
# endpoints; in-cluster clients use KUBERNETES_SERVICE_HOST=127.0.0.1 (port 6443).

start kube-apiserver "$APISERVER_PORT" \
	--bind-address="$HOST" \
	--advertise-address="$HOST" \
	--endpoint-reconciler-type=none \
	--secure-port="$APISERVER_PORT" \
	--etcd-servers="http://$HOST:$ETCD_CLIENT_PORT" \
	--tls-cert-file="$PKI/apiserver.crt" \
	--tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--authorization-mode=Node,RBAC \
	--enable-admission-plugins=NodeRestriction \
	--allow-privileged=true \
	--service-cluster-ip-range="$SERVICE_CIDR" \
	--service-account-issuer="$SA_ISSUER" \
	--service-account-key-file="$PKI/sa.pub" \
	--service-account-signing-key-file="$PKI/sa.key" \
	--requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
	--requestheader-allowed-names=front-proxy-client \
	--requestheader-username-headers=X-Remote-User \
	--requestheader-group-headers=X-Remote-Group \
	--requestheader-extra-headers-prefix=X-Remote-Extra- \
	--proxy-client-cert-file="$PKI/front-proxy-client.crt" \
	--proxy-client-key-file="$PKI/front-proxy-client.key" \
	--cert-dir="$RUN_DIR/apiserver-certs" \
	--profiling=false
wait_for kube-apiserver apiserver_ready

start kube-controller-manager "$KCM_PORT" \
	--kubeconfig="$RUN_DIR/kcm.kubeconfig" \
	--authentication-kubeconfig="$RUN_DIR/kcm.kubeconfig" \
	--authorization-kubeconfig="$RUN_DIR/kcm.kubeconfig" \
	--bind-address="$HOST" \
	--secure-port="$KCM_PORT" \
	--cert-dir="$RUN_DIR/kcm-certs" \
	--flex-volume-plugin-dir="$RUN_DIR/flexvolume" \
	--controllers='*' \
	--use-service-account-credentials=true \
	--root-ca-file="$PKI/ca.crt" \
	--service-account-private-key-file="$PKI/sa.key" \
	--cluster-signing-cert-file="$PKI/ca.crt" \
	--cluster-signing-key-file="$PKI/ca.key" \
	--service-cluster-ip-range="$SERVICE_CIDR" \
	--leader-elect=false \
	--profiling=false
wait_for kube-controller-manager kcm_healthy

default_sa_exists() { apiserver_get /api/v1/namespaces/default/serviceaccounts/default >/dev/null; }
wait_for kube-controller-manager default_sa_exists
log "up: KUBECONFIG=$KUBECONFIG  (kubectl: $KUBECTL)"
