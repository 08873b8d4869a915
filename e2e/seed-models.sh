#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (model.onnx + tokenizer.json) onto the sample `models` claim, so
# the sample InferenceService finds it at pvc://models/all-minilm-l6-v2/. The local
# node agent keeps each claim in <data-root>/volumes/<ns>/<claim>-<uid>/ and binds it
# when a pod first uses it; the files are put there beforehand.
# Usage: seed-models.sh <namespace> <minilm-dir> <node-agent-state-dir>
set -euo pipefail
ns=$1 src=$2 state=$3
: "${KUBECTL:=kubectl}"
root=$(cd "$(dirname "$0")/.." && pwd)
"$KUBECTL" apply -n "$ns" -f "$root/config/samples/models-pvc.yaml" >/dev/null
uid=$("$KUBECTL" get pvc models -n "$ns" -o jsonpath='{.metadata.uid}')
dir=$state/data/volumes/$ns/models-$uid/all-minilm-l6-v2
mkdir -p "$dir"
cp -f "$src/model.onnx" "$src/tokenizer.json" "$dir/"
chmod -R a+rX "$state/data/volumes/$ns/models-$uid"
echo "seeded $ns/models with all-MiniLM-L6-v2 ($dir)"
