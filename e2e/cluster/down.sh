#!/usr/bin/env bash
# Stops the local control plane started by up.sh (SIGTERM, then SIGKILL after
# 15s), controller-manager first and etcd last. State (etcd data, certs) stays;
# `down.sh --clean` also removes $STATE_DIR/cluster and the kubeconfig.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop() {
	local name="$1" pid i
	if ! pid="$(pid_of "$name")"; then
		rm -f "$(pid_file "$name")"
		return
	fi
	log "$name: stopping pid $pid"
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name: still running after 15s, killing"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$(pid_file "$name")"
}

lock_cluster
for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
	stop "${COMPONENTS[i]}"
done

if [[ "${1:-}" == --clean ]]; then
	log "removing $RUN_DIR and $KUBECONFIG"
	rm -rf "$RUN_DIR" "$KUBECONFIG"
fi
log "down"
