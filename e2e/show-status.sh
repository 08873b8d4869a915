#!/usr/bin/env bash
# What `make up` prints last: waits (bounded) for the samples to settle, shows the custom
# resources, their children and conditions, asks the sample InferenceService and one
# VectorCollection pod to answer, and prints the README's next commands with the real pod
# addresses filled in.
# Usage: show-status.sh <namespace> [settle-seconds (default 120, SHOW_STATUS_SETTLE_S)]
set -euo pipefail
ns=$1
settle=${2:-${SHOW_STATUS_SETTLE_S:-120}}
: "${KUBECTL:=kubectl}"
k() { "$KUBECTL" -n "$ns" "$@"; }

ready() { # ready KIND NAME: the resource's Ready condition is True
  [ "$(k get "$1" "$2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
pod_ip() { k get pod "$1" -o jsonpath='{.status.podIP}' 2>/dev/null || true; }

# The samples settle when the InferenceService, the VectorCollection and the
# TrafficPolicy (its gateway pods) are Ready.
echo "==> waiting up to ${settle}s for the samples to become Ready"
start=$SECONDS
while :; do
  if ready isvc minilm && ready vc docs && ready tp embeddings; then
    echo "    settled after $((SECONDS - start))s"
    break
  fi
  if [ $((SECONDS - start)) -ge "$settle" ]; then
    echo "    not all Ready after ${settle}s; what is there now:" >&2
    break
  fi
  sleep 2
done

echo
echo "=== ModelHub resources in namespace $ns ==="
k get modelhub -o wide
echo
echo "=== their children ==="
k get statefulsets,deployments,services,poddisruptionbudgets -l app.kubernetes.io/managed-by=modelhub-operator
echo
echo "=== pods ==="
k get pods -o wide
echo
echo "=== conditions ==="
k get modelhub -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}:{"\n"}{range .status.conditions[*]}  {.type}={.status} ({.reason}) {.message}{"\n"}{end}{end}'

isvc_ip=$(pod_ip minilm-0)
vc_ip=$(pod_ip docs-shard-0-0)
vc1_ip=$(pod_ip docs-shard-1-0)
gw_pod=$(k get pods -l app.kubernetes.io/name=gateway,app.kubernetes.io/instance=embeddings \
  -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
gw_ip=$([ -n "$gw_pod" ] && pod_ip "$gw_pod" || true)
infer_body='{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["hello"]}]}'
echo
if [ -n "$isvc_ip" ]; then
  echo "=== minilm-0 ($isvc_ip) embeds \"hello\" (first numbers of the 384-d answer) ==="
  curl -s --max-time 10 -X POST "http://$isvc_ip:8080/v2/models/minilm/infer" \
    -H 'content-type: application/json' -d "$infer_body" | cut -c1-300 || echo "(no answer yet)"
  echo
fi
if [ -n "$gw_ip" ]; then
  echo "=== the same request through the embeddings TrafficPolicy's gateway ($gw_pod, $gw_ip) ==="
  curl -s --max-time 10 -X POST "http://$gw_ip:8080/v2/models/minilm/infer" \
    -H 'content-type: application/json' -d "$infer_body" | cut -c1-300 || echo "(no answer yet)"
  echo
fi
if [ -n "$vc_ip" ]; then
  echo "=== docs-shard-0-0 ($vc_ip) describes its collection ==="
  curl -s --max-time 10 "http://$vc_ip:6333/collections/docs" | cut -c1-300 || echo "(no answer yet)"
  echo
fi
if [ -n "$vc_ip" ] && [ -n "$vc1_ip" ] && [ -n "${gw_ip:-$isvc_ip}" ] && command -v python3 >/dev/null; then
  echo "=== semantic search across the stack: MiniLM embeddings into the 2-shard collection ==="
  python3 "$(dirname "$0")/lib/demo_search.py" "http://${gw_ip:-$isvc_ip}:8080" \
    "http://$vc_ip:6333" "http://$vc1_ip:6333" || true
  echo
fi

cat <<EOF

The node agent runs the pods as local processes: tinyinfer serves MiniLM, the gateway
routes the embeddings TrafficPolicy to it, vectorforge serves the docs collection over
2 shards of 3 pods: any pod takes a request and asks the other shard for its part, and
the 3 pods of a shard form a Raft group (curl http://<pod IP>:6333/cluster shows it).
ClusterIP Services do not route on the local cluster (no kube-proxy): use the pod
addresses.

Next:
  source e2e/cluster/env.sh                 # kubectl/helm on PATH, KUBECONFIG
  kubectl get modelhub -A
  curl -s -X POST http://${isvc_ip:-<minilm-0 pod IP>}:8080/v2/models/minilm/infer -H 'content-type: application/json' \\
    -d '$infer_body'
  curl -s -X POST http://${gw_ip:-<gateway pod IP>}:8080/v2/models/minilm/infer -H 'content-type: application/json' \\
    -d '$infer_body'   # through the gateway
  curl -s "http://${gw_ip:-<gateway pod IP>}:8080/stats?window=60s"
  curl -s http://${vc_ip:-<docs-shard-0-0 pod IP>}:6333/collections/docs
  kubectl scale isvc/minilm -n $ns --replicas=2
  make logs POD=$ns/minilm-0
  make down
EOF
