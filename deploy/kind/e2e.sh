#!/usr/bin/env bash
# mandrill's e2e suite against the operator running in a kind cluster:
# create the cluster, build the image (deploy/Dockerfile) and load it; then
# deploy/e2e/run.sh, the same script the local real node uses (make test):
# deploy (the cluster-wide overlay with deploy/e2e's settings, via
# deploy/kind/kustomization.yaml), wait for the rollout, run the in-cluster
# suite (tests/incluster, tests/restart).
#
# Needs docker, kind and kubectl, and `make venv` done. Not run by CI here
# (no Docker); the local control plane (make test) runs the same suite.
#
#   deploy/kind/e2e.sh                  # pytest arguments may follow: -x -k evict
#   KEEP=1 deploy/kind/e2e.sh           # leave a cluster it created up afterwards
#   KIND_NODE_IMAGE=kindest/node:v1.xx  # pick the node image
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
name=mandrill
image=mandrill:dev                        # as in deploy/base/kustomization.yaml
workload_image=registry.k8s.io/pause:3.10 # what the tests' Deployments run
kubeconfig=$repo/.cache/kind/kubeconfig

say() { printf '\n[kind-e2e] %s\n' "$*"; }
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e.sh needs $tool on PATH" >&2; exit 2; }
done
test -x .venv/bin/python || { echo "run 'make venv' first" >&2; exit 2; }
mkdir -p "$(dirname "$kubeconfig")"

created=
# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
  if [[ -n "$created" && -z "${KEEP:-}" ]]; then
    say "deleting the cluster this run created (KEEP=1 keeps it)"
    kind delete cluster --name "$name" || true
  fi
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$name"; then
  say "reusing kind cluster $name (left as it is afterwards)"
  kind export kubeconfig --name "$name" --kubeconfig "$kubeconfig"
else
  say "creating kind cluster $name"
  created=1
  kind create cluster --name "$name" --config deploy/kind/cluster.yaml \
    --kubeconfig "$kubeconfig" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
export KUBECONFIG=$kubeconfig

say "building $image"
docker build -f deploy/Dockerfile -t "$image" .
docker pull "$workload_image"
kind load docker-image --name "$name" "$image" "$workload_image"

# From here on the same as the local real node's in-cluster run.
KUBECONFIG=$kubeconfig \
MANDRILL_IMAGE_DIGEST=$(docker image inspect -f '{{.Id}}' "$image") \
MANDRILL_TEST_WORKLOAD_IMAGE=$workload_image \
  deploy/e2e/run.sh deploy/kind "$@"
