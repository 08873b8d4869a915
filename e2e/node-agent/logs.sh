#!/usr/bin/env bash
# Prints the container logs of a pod the node agent runs (latest pod with that name).
# Usage: logs.sh <state-dir> <namespace/name> [container]
set -euo pipefail
state=$1 pod=${2:-} container=${3:-}
if [[ $pod != */* ]]; then
  echo "usage: make logs POD=namespace/name [CONTAINER=name]" >&2
  exit 2
fi
ns=${pod%%/*} name=${pod#*/}
shopt -s nullglob
dirs=("$state/data/logs/${ns}_${name}_"*)
if [[ ${#dirs[@]} -eq 0 ]]; then
  echo "no logs for pod $pod under $state/data/logs" >&2
  exit 1
fi
dir=$(ls -td "${dirs[@]}" | head -n 1)
for f in "$dir"/*.log; do
  c=$(basename "$f" .log)
  [[ -z $container || $c == "$container" ]] || continue
  echo "==> $pod [$c] ($f)"
  cat "$f"
done
