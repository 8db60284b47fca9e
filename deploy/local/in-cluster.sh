#!/usr/bin/env bash
# The in-cluster half of `make test`: the e2e suite against mandrill
# installed in a local cluster as a user installs it, running as a pod on the
# real node from the image built here; and the real node's own tests.
#
#   deploy/local/in-cluster.sh [pytest arguments]
#
# Starts a cluster of its own (MANDRILL_IN_CLUSTER_DIR, default
# .cache/cluster/in-cluster, ports from MANDRILL_IN_CLUSTER_PORT, default
# 25443), so it can run beside the first half's (deploy/local/test.sh), its
# real node and the image; deploys deploy/local/e2e and runs the suite
# (deploy/e2e/run.sh, the same as kind's) plus tests/node. Afterwards it
# removes the installation's Deployment and volume claim, so no cluster-wide
# operator is left for a later `up`, and stops what it started
# (MANDRILL_KEEP_CLUSTER=1 leaves the cluster and node up).
#
# Where no real node or no image build can run (not root, not Linux, ...)
# it says why in one line and exits 0: the first half has run everything
# that does not need a pod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { printf '\n[in-cluster] %s\n' "$*"; }
export MANDRILL_CLUSTER_DIR=${MANDRILL_IN_CLUSTER_DIR:-$repo/.cache/cluster/in-cluster}
export MANDRILL_CLUSTER_PORT=${MANDRILL_IN_CLUSTER_PORT:-25443}
kubeconfig=$MANDRILL_CLUSTER_DIR/kubeconfig
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"
kubectl=${MANDRILL_BIN_DIR:-$repo/.cache/bin}/kubernetes-$K8S_VERSION/kubectl
k() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }

cluster_was_up=false node_was_up=false
"$here/cluster.sh" status >/dev/null 2>&1 && cluster_was_up=true
"$here/cluster.sh" up
rc=0 && why=$("$here/node.sh" check) || rc=$?
if ((rc != 0)); then
  ((rc == 3)) || exit "$rc"
  say "skipped: $why"
  $cluster_was_up || "$here/cluster.sh" down
  exit 0
fi
"$here/node.sh" status >/dev/null 2>&1 && node_was_up=true

uninstall() {
  # The Deployment first, waiting for its pod to be gone, so the operator
  # never outlives this run (a stopped node would run it again on `up`).
  k -n mandrill-system delete deployment/mandrill --ignore-not-found --wait=true --timeout=60s >/dev/null || true
  k -n mandrill-system wait --for=delete pod -l app.kubernetes.io/name=mandrill --timeout=60s >/dev/null 2>&1 || true
  # Retain: the data stays in the node's folder; a Released volume would
  # never bind the next run's claim, so both go.
  k -n mandrill-system delete pvc/mandrill-store --ignore-not-found --wait=false >/dev/null || true
  k delete pv/mandrill-store --ignore-not-found --wait=false >/dev/null || true
}
# shellcheck disable=SC2317  # reached through the EXIT trap
finish() {
  local status=$?
  uninstall
  if [ -z "${MANDRILL_KEEP_CLUSTER:-}" ]; then
    $node_was_up || "$here/node.sh" down || true
    $cluster_was_up || "$here/cluster.sh" down || true
  fi
  exit "$status"
}
trap finish EXIT
"$here/node.sh" up
rc=0 && why=$("$here/image.sh" check) || rc=$?
if ((rc != 0)); then
  ((rc == 3)) || exit "$rc"
  say "skipped: $why"
  exit 0
fi
"$here/image.sh" up
digest=$(sed -n 's/^DIGEST=//p' "${MANDRILL_IMAGE_DIR:-$repo/.cache/image}/image.env")

KUBECONFIG=$kubeconfig KUBECTL=$kubectl MANDRILL_IMAGE_DIGEST=$digest \
  "$repo/deploy/e2e/run.sh" "$repo/deploy/local/e2e" tests/node tests/ha "$@"
