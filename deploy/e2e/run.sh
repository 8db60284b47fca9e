#!/usr/bin/env bash
# Deploy mandrill's image with an overlay and run the e2e suite against the
# operator in the cluster: the one script the local real node
# (deploy/local/in-cluster.sh, run by `make test`) and kind (deploy/kind/e2e.sh)
# share. They differ only in making the cluster and getting the image onto
# its nodes; from `kubectl apply -k` on, everything is here.
#
#   KUBECONFIG=... deploy/e2e/run.sh OVERLAY [pytest arguments]
#
# OVERLAY installs the operator with deploy/e2e's settings (deploy/local/e2e,
# deploy/kind). The suite is tests/incluster and tests/restart with
# MANDRILL_TEST_OPERATOR_IN_CLUSTER=1; pytest arguments add to it (paths,
# -x, -k ...). Settings (environment):
#   KUBECONFIG                  the cluster (required)
#   MANDRILL_IMAGE_DIGEST       the image's digest or ID (deploy/rollout.sh)
#   MANDRILL_TEST_WORKLOAD_IMAGE  the image the tests' Deployments run
#                               (tests/restart/rr.py has a default)
#   PYTHON                      default <repo>/.venv/bin/python
# Prints how long the rollout took (apply to a Ready pod), and the
# operator's log when the suite fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
say() { printf '\n[e2e] %s\n' "$*"; }
overlay=${1:?usage: run.sh OVERLAY [pytest arguments]}
shift
: "${KUBECONFIG:?KUBECONFIG names the cluster under test}"
export KUBECONFIG
python=${PYTHON:-$repo/.venv/bin/python}
kubectl=${KUBECTL:-kubectl}

say "deploying $overlay"
KUBECTL=$kubectl "$repo/deploy/rollout.sh" "$overlay"

say "e2e suite, operator in the cluster"
status=0
MANDRILL_TEST_KUBECONFIG=$KUBECONFIG \
MANDRILL_TEST_OPERATOR_IN_CLUSTER=1 \
  "$python" -m pytest tests/incluster tests/restart "$@" || status=$?
if ((status != 0)); then
  say "operator log (last 200 lines)"
  "$kubectl" -n mandrill-system logs deployment/mandrill --tail=200 || true
fi
exit "$status"
