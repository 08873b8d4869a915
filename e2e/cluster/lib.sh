# Shared settings and helpers for the local control-plane scripts in this
# directory; sourced by them, not run. Everything can be overridden from the
# environment (cluster.mk exports STATE_DIR, TOOLS_BIN, KUBECONFIG, ...).
# shellcheck shell=bash disable=SC2034 # (variables are used by the sourcing scripts)

CLUSTER_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_SCRIPTS/../.." && pwd)"
# shellcheck source=versions.env
source "$CLUSTER_SCRIPTS/versions.env"

: "${CACHE_DIR:=$HOME/.cache/modelhub}"
: "${STATE_DIR:=$REPO_ROOT/e2e/.state}"
: "${TOOLS_BIN:=$CACHE_DIR/k8s-$K8S_VERSION/bin}"
: "${KUBECONFIG:=$STATE_DIR/kubeconfig}"
export KUBECONFIG

# Loopback only, and only 127.0.0.1: pods of the local node agent get 127.0.0.2..254.
HOST=127.0.0.1
: "${ETCD_CLIENT_PORT:=2379}"
: "${ETCD_PEER_PORT:=2380}"
: "${APISERVER_PORT:=6443}"
: "${KCM_PORT:=10257}"
SERVICE_CIDR=10.96.0.0/16
SERVICE_FIRST_IP=10.96.0.1
SA_ISSUER=https://kubernetes.default.svc.cluster.local

RUN_DIR="$STATE_DIR/cluster"   # pids, logs, etcd data
PKI="$RUN_DIR/pki"
COMPONENTS=(etcd kube-apiserver kube-controller-manager)
KUBECTL="$TOOLS_BIN/kubectl"

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$RUN_DIR/$1.log"; }

# pid_of NAME: prints the pid of our running NAME process, fails if not running.
# The command line is checked too, so a recycled pid is never taken for ours.
pid_of() {
	local pid
	pid="$(cat "$(pid_file "$1")" 2>/dev/null)" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -- "$TOOLS_BIN/$1 " >/dev/null || return 1
	echo "$pid"
}

# port_open PORT: true when something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# show_log NAME [LINES]: the tail of a component's log, for failure messages.
show_log() {
	local f
	f="$(log_file "$1")"
	echo "----- last ${2:-40} lines of $f -----" >&2
	tail -n "${2:-40}" "$f" >&2 2>/dev/null || echo "(no log)" >&2
	echo "-----" >&2
}

# Health probes (quiet; true when healthy).
etcd_healthy() {
	curl -fsS --max-time 3 "http://$HOST:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'
}
apiserver_get() { # PATH
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://$HOST:$APISERVER_PORT$1" 2>/dev/null
}
apiserver_ready() { [[ "$(apiserver_get /readyz)" == ok ]]; }
kcm_healthy() {
	[[ "$(curl -fsS --max-time 3 -k "https://$HOST:$KCM_PORT/healthz" 2>/dev/null)" == ok ]]
}

# lock_cluster: serialise up/down of this state dir (engineers share a checkout).
# Holds fd 8 until the script exits; started components must not inherit it.
lock_cluster() {
	mkdir -p "$RUN_DIR"
	exec 8>"$RUN_DIR/.lock"
	flock -w 600 8 || die "another up/down of $RUN_DIR holds $RUN_DIR/.lock"
}
