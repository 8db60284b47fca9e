#!/usr/bin/env bash
# Apply an overlay that installs mandrill and wait until its pod is Ready:
# what `make deploy-local` and the in-cluster e2e runs (deploy/e2e/run.sh) do.
#
#   KUBECONFIG=... deploy/rollout.sh OVERLAY
#
# Settings (environment):
#   KUBECONFIG             the cluster (required)
#   MANDRILL_IMAGE_DIGEST  the image's digest or ID, stamped on the pod
#                          template: a new image under the same tag rolls
#                          the pod, an unchanged one does not; unset: the
#                          pod is restarted anyway
#   KUBECTL                default kubectl
# Prints how long it took from apply to a Ready pod.
set -euo pipefail
overlay=${1:?usage: rollout.sh OVERLAY}
: "${KUBECONFIG:?KUBECONFIG names the cluster}"
export KUBECONFIG
kubectl=${KUBECTL:-kubectl}
ns=mandrill-system

start=$(date +%s%N)
if [ -n "${MANDRILL_IMAGE_DIGEST:-}" ]; then
  # The stamp goes in with the first apply (a kustomization on top of the
  # overlay), so a new Deployment starts one pod, not one then another.
  stamped=$(mktemp -d)
  trap 'rm -rf "$stamped"' EXIT
  cat >"$stamped/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$stamped" "$overlay")
patches:
- patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: mandrill
      namespace: $ns
    spec:
      template:
        metadata:
          annotations:
            mandrill.dev/image-digest: "$MANDRILL_IMAGE_DIGEST"
YAML
  "$kubectl" apply -k "$stamped"
else
  "$kubectl" apply -k "$overlay"
  "$kubectl" -n "$ns" rollout restart deployment/mandrill
fi
"$kubectl" wait --for=condition=Established --timeout=60s \
  crd/restartrequests.mandrill.dev crd/crawljobs.mandrill.dev crd/restartschedules.mandrill.dev >/dev/null
if ! "$kubectl" -n "$ns" rollout status deployment/mandrill --timeout=180s; then
  echo "[rollout] not Ready; the pods and the namespace's recent Events:" >&2
  "$kubectl" -n "$ns" get pods -o wide >&2 || true
  "$kubectl" -n "$ns" get events --sort-by=.lastTimestamp 2>&1 | tail -25 >&2 || true
  exit 1
fi
ms=$((($(date +%s%N) - start) / 1000000))
printf '[rollout] %s applied and rolled out to a Ready pod in %d.%03ds\n' "$overlay" $((ms / 1000)) $((ms % 1000))
"$kubectl" -n "$ns" get pods -o wide -l app.kubernetes.io/name=mandrill
