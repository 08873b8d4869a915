# Source this file to use the local control plane from a shell:
#   source e2e/cluster/env.sh && kubectl get ns
# Puts the tools first on PATH and points KUBECONFIG at the local cluster.
# (Sourced into an interactive shell, so no `set -euo pipefail` here.)
# shellcheck shell=bash
_modelhub_cluster_dir="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
# shellcheck source=versions.env
. "$_modelhub_cluster_dir/versions.env"
export CACHE_DIR="${CACHE_DIR:-$HOME/.cache/modelhub}"
export STATE_DIR="${STATE_DIR:-$(cd "$_modelhub_cluster_dir/../.." && pwd)/e2e/.state}"
export TOOLS_BIN="${TOOLS_BIN:-$CACHE_DIR/k8s-$K8S_VERSION/bin}"
export KUBECONFIG="$STATE_DIR/kubeconfig"
export KUBECTL="$TOOLS_BIN/kubectl" HELM="$TOOLS_BIN/helm"
case "$PATH:" in
"$TOOLS_BIN:"*) ;;
*) export PATH="$TOOLS_BIN:$PATH" ;;
esac
unset _modelhub_cluster_dir
