#!/usr/bin/env bash
# Shows what the samples became: the custom resources, their children and conditions.
# Usage: show-status.sh <namespace>
set -euo pipefail
ns=$1
: "${KUBECTL:=kubectl}"
# Give the operator a moment to create the children and write status.
for _ in $(seq 1 40); do
  n=$("$KUBECTL" get -n "$ns" statefulsets,deployments --no-headers 2>/dev/null | wc -l)
  [ "$n" -ge 4 ] && break
  sleep 0.5
done
echo
echo "=== ModelHub resources in namespace $ns ==="
"$KUBECTL" get -n "$ns" modelhub -o wide
echo
echo "=== their children ==="
"$KUBECTL" get -n "$ns" statefulsets,deployments,services,poddisruptionbudgets -l app.kubernetes.io/managed-by=modelhub-operator
echo
echo "=== conditions ==="
"$KUBECTL" get -n "$ns" modelhub -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}:{"\n"}{range .status.conditions[*]}  {.type}={.status} ({.reason}) {.message}{"\n"}{end}{end}'
echo
echo "The node agent runs the pods as local processes: tinyinfer serves MiniLM, vectorforge serves each shard pod's collection (single-node: no replication yet); gateway pods wait with ErrImagePull until that binary exists."
echo "Try: kubectl get modelhub -A;  kubectl explain vc.spec;  make down"
