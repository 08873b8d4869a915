#!/usr/bin/env bash
# `make bench-operator`: runs operator/examples/bench_operator.rs against the local
# control plane with the release operator binary and prints its table.
# Usage: bench-operator.sh <release-operator-binary> [count] [rate-per-second]
# (rate 0, the default: 32 creates in flight, as fast as the API server takes them)
set -euo pipefail
: "${KUBECONFIG:?KUBECONFIG must point at the local cluster}"
"${CARGO:-cargo}" run --release -q -p modelhub-operator --example bench_operator -- "$1" "${2:-1000}" "${3:-0}"
