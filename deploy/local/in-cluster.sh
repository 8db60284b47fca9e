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
# (deploy/e2e/run.sh, the same as kind's) plus tests/node, tests/ha and
# tests/workers_node (CrawlJob workers as pods on the node). Then it removes
# the installation's Deployment and volume claim, so no cluster-wide
# operator is left for a later `up`, installs the Helm chart instead and
# runs tests/helminstall against it (helm install, a RestartRequest, helm
# uninstall), and stops what it started (MANDRILL_KEEP_CLUSTER=1 leaves the
# cluster and node up). Fails if either suite fails.
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
helm=${MANDRILL_BIN_DIR:-$repo/.cache/bin}/helm-$HELM_VERSION/helm
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
# What tests/helminstall installs, if a failure left it: an operator must not
# outlive this run either.
helm_uninstall() {
  "$helm" --kubeconfig "$kubeconfig" -n mandrill-helm uninstall helm-mandrill \
    --ignore-not-found --wait --timeout 60s >/dev/null 2>&1 || true
  k delete namespace mandrill-helm --ignore-not-found --wait=false >/dev/null || true
  k delete pv/helm-mandrill-store --ignore-not-found --wait=false >/dev/null || true
}
# shellcheck disable=SC2317  # reached through the EXIT trap
finish() {
  local status=$?
  uninstall
  helm_uninstall
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

e2e=0
KUBECONFIG=$kubeconfig KUBECTL=$kubectl MANDRILL_IMAGE_DIGEST=$digest \
  "$repo/deploy/e2e/run.sh" "$repo/deploy/local/e2e" tests/node tests/ha tests/workers_node "$@" || e2e=$?

# The Helm chart, installed as a user installs it: only once the kustomize
# installation is gone (two operators must never run on one cluster). Its
# own pytest session; the pytest arguments above are not passed on.
uninstall
say "helm install of deploy/helm/mandrill on the real node (tests/helminstall)"
chart=0
MANDRILL_TEST_KUBECONFIG=$kubeconfig MANDRILL_TEST_HELM_INSTALL=1 \
  "${PYTHON:-$repo/.venv/bin/python}" -m pytest tests/helminstall || chart=$?
say "e2e suite: $([ $e2e = 0 ] && echo passed || echo "FAILED ($e2e)");" \
  "helm install: $([ $chart = 0 ] && echo passed || echo "FAILED ($chart)")"
((e2e == 0 && chart == 0))
