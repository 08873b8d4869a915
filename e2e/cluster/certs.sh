#!/usr/bin/env bash
# Creates the PKI and kubeconfigs of the local control plane with openssl, once
# (existing files are kept, so restarts reuse them; `make cluster-clean` wipes them):
#   ca.{crt,key}         cluster CA (also signs CSRs through kube-controller-manager)
#   apiserver.{crt,key}  serving cert: 127.0.0.1, localhost, kubernetes.default.svc..., 10.96.0.1
#   admin.{crt,key}      client cert, O=system:masters       -> $KUBECONFIG
#   kcm.{crt,key}        client cert, CN=system:kube-controller-manager -> kcm.kubeconfig
#   sa.{key,pub}         service-account token signing key pair
#   front-proxy-ca.{crt,key}, front-proxy-client.{crt,key}
#                        request-header auth for aggregated APIs; also lets the
#                        controller-manager's delegated authentication start cleanly
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v openssl >/dev/null || die "openssl is needed (apt-get install -y openssl)"
mkdir -p "$PKI"
chmod 700 "$PKI"
umask 077
DAYS=3650

new_ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# new_ca NAME CN: self-signed CA NAME.{crt,key}.
new_ca() {
	new_ec_key "$PKI/$1.key"
	openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days "$DAYS" -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$PKI/$1.crt"
	log "pki: $1"
}

# sign NAME SUBJECT EXTENSIONS [CA]: key + cert NAME signed by CA (default: ca).
sign() {
	local name="$1" subj="$2" ext="$3" ca="${4:-ca}"
	[[ -s "$PKI/$name.crt" && -s "$PKI/$name.key" ]] && return
	new_ec_key "$PKI/$name.key"
	openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
	printf '%b\n' "$ext" >"$PKI/$name.ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
		-days "$DAYS" -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
	log "pki: $name ($subj)"
}

if [[ ! -s "$PKI/ca.crt" || ! -s "$PKI/ca.key" ]]; then
	# A new CA invalidates every cert signed by the old one.
	rm -f "$PKI"/*.crt "$PKI"/*.key "$PKI"/*.srl "$RUN_DIR"/*.kubeconfig "$KUBECONFIG"
	new_ca ca modelhub-local-ca
fi
if [[ ! -s "$PKI/front-proxy-ca.crt" || ! -s "$PKI/front-proxy-ca.key" ]]; then
	rm -f "$PKI"/front-proxy-client.*
	new_ca front-proxy-ca modelhub-local-front-proxy-ca
fi

CLIENT_EXT='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth'
sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST,IP:$SERVICE_FIRST_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=modelhub-admin" "$CLIENT_EXT"
sign kcm "/CN=system:kube-controller-manager" "$CLIENT_EXT"
sign front-proxy-client "/CN=front-proxy-client" "$CLIENT_EXT" front-proxy-ca

if [[ ! -s "$PKI/sa.key" ]]; then
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
	openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
	log "pki: service-account signing key"
fi

# write_kubeconfig FILE USER CERT_NAME: kubeconfig with embedded certs.
write_kubeconfig() {
	local file="$1" user="$2" cert="$3"
	[[ -s "$file" ]] && return
	local b64=(base64 -w0)
	mkdir -p "$(dirname "$file")"
	cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelhub-local
  cluster:
    server: https://$HOST:$APISERVER_PORT
    certificate-authority-data: $("${b64[@]}" <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $("${b64[@]}" <"$PKI/$cert.crt")
    client-key-data: $("${b64[@]}" <"$PKI/$cert.key")
contexts:
- name: modelhub-local
  context:
    cluster: modelhub-local
    user: $user
current-context: modelhub-local
EOF
	mv "$file.tmp" "$file"
	log "kubeconfig: $file"
}
write_kubeconfig "$KUBECONFIG" modelhub-admin admin
write_kubeconfig "$RUN_DIR/kcm.kubeconfig" system:kube-controller-manager kcm
