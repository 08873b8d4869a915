#!/usr/bin/env bash
# Smoke test of the running local control plane: proves that the apiserver
# accepts workloads and that kube-controller-manager's controllers act on them
# (deployment, replicaset, statefulset, job, endpointslice, garbage collector,
# serviceaccount(-token), root CA publisher, namespace). No node exists, so pods
# stay Pending; only the objects are checked. Exits non-zero on the first failure.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${SMOKE_TIMEOUT:=90}" # seconds per check
NS="smoke-$(date +%s)-$RANDOM"
IMAGE=registry.k8s.io/pause:3.10
k() { "$KUBECTL" -n "$NS" "$@"; }

fail() {
	echo "[smoke] FAIL: $*" >&2
	echo "[smoke] objects in $NS:" >&2
	k get all,endpointslices,secrets,serviceaccounts -o wide >&2 || true
	"$CLUSTER_SCRIPTS/status.sh" >&2 || true
	show_log kube-controller-manager 30
	exit 1
}
pass() { echo "[smoke] ok: $*"; }

# eventually DESCRIPTION COMMAND...: retry COMMAND (1/s) until it succeeds.
eventually() {
	local what="$1" deadline=$((SECONDS + SMOKE_TIMEOUT))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "$what (not true after ${SMOKE_TIMEOUT}s)"
		sleep 1
	done
	pass "$what"
}

cleanup() {
	"$KUBECTL" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

# count RESOURCE SELECTOR: number of RESOURCE objects matching the label SELECTOR.
# (Fails when kubectl fails, so an API error never reads as "0 left".)
count() {
	local out
	out="$(k get "$1" -l "$2" -o name)" || return 1
	grep -c . <<<"$out" || true
}
count_is() {
	local n
	n="$(count "$1" "$2")" || return 1
	[[ "$n" == "$3" ]]
}
# owner_kinds RESOURCE SELECTOR: the distinct kinds of the objects' controller owners.
owner_kinds() {
	k get "$1" -l "$2" -o jsonpath='{range .items[*]}{.metadata.ownerReferences[0].kind}{"\n"}{end}' | sort -u
}
owned_by() { [[ "$(owner_kinds "$1" "$2")" == "$3" ]]; }

if ! "$CLUSTER_SCRIPTS/status.sh" >/dev/null; then
	"$CLUSTER_SCRIPTS/status.sh" >&2 || true
	echo "[smoke] FAIL: the local control plane is not (fully) up: make cluster-up" >&2
	exit 1
fi
"$KUBECTL" create namespace "$NS" >/dev/null
pass "namespace $NS created"

# --- serviceaccount controller + root CA publisher
eventually "default ServiceAccount created in $NS" k get serviceaccount default
eventually "kube-root-ca.crt ConfigMap published in $NS" k get configmap kube-root-ca.crt

# --- Deployment -> ReplicaSet -> Pods
k create deployment web --image="$IMAGE" --replicas=2 >/dev/null
eventually "Deployment created a ReplicaSet" owned_by replicasets app=web Deployment
eventually "ReplicaSet created 2 Pods" count_is pods app=web 2
owned_by pods app=web ReplicaSet || fail "pods app=web are not owned by a ReplicaSet"
pass "Pods are owned by the ReplicaSet"

# --- StatefulSet (headless Service) -> web-0 ; Service -> EndpointSlice
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: db, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: $IMAGE}]
EOF
eventually "StatefulSet created pod db-0" k get pod db-0
[[ "$(k get pod db-0 -o jsonpath='{.metadata.ownerReferences[0].kind}')" == StatefulSet ]] ||
	fail "pod db-0 is not owned by the StatefulSet"
eventually "EndpointSlice created for Service db" count_is endpointslices kubernetes.io/service-name=db 1

# --- Job -> Pod
k create job once --image="$IMAGE" >/dev/null
eventually "Job created a Pod" count_is pods job-name=once 1

# --- garbage collection: deleting the Deployment removes its ReplicaSet and Pods
k delete deployment web --wait=false >/dev/null
eventually "garbage collector removed the ReplicaSet" count_is replicasets app=web 0
eventually "garbage collector removed the Pods" count_is pods app=web 0

# --- service account tokens: TokenRequest and the legacy token Secret
token="$(k create token default --duration=10m)"
[[ "$(tr -cd . <<<"$token" | wc -c)" == 2 ]] || fail "kubectl create token did not return a JWT"
whoami="$(curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' -X POST \
	-d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
	"https://$HOST:$APISERVER_PORT/apis/authentication.k8s.io/v1/selfsubjectreviews")" ||
	fail "the apiserver rejected the TokenRequest token"
grep -q "\"system:serviceaccount:$NS:default\"" <<<"$whoami" ||
	fail "token authenticated as something else: $whoami"
pass "TokenRequest token authenticates as system:serviceaccount:$NS:default"

k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: default-token
  annotations: {kubernetes.io/service-account.name: default}
type: kubernetes.io/service-account-token
EOF
has_token() { [[ -n "$(k get secret default-token -o jsonpath='{.data.token}')" ]]; }
eventually "serviceaccount-token controller filled the token Secret" has_token

# --- namespace controller: deleting the namespace removes everything in it
trap - EXIT
"$KUBECTL" delete namespace "$NS" --wait=false >/dev/null
ns_gone() { ! "$KUBECTL" get namespace "$NS" >/dev/null 2>&1; }
eventually "namespace $NS and its contents deleted" ns_gone
echo "[smoke] PASSED"
