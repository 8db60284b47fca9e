#!/usr/bin/env bash
# `make demo`: bring up the local control plane, apply the sample workload and
# show what the cluster holds. The cluster stays up afterwards so you can look
# around; `make cluster-down` stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/cluster.sh" up
eval "$("$here/cluster.sh" env)"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step kubectl apply -f "$here/demo/workload.yaml"
step kubectl -n mandrill-demo rollout status deployment/web --timeout=120s
step kubectl get nodes -o wide
step kubectl -n mandrill-demo get deployments,replicasets,pods,poddisruptionbudgets -o wide
cat <<TXT

The cluster keeps running. To use it from this shell:
  eval "\$(make -s cluster-env)"
Stop it with: make cluster-down
TXT
