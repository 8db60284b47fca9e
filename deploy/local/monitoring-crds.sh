#!/usr/bin/env bash
# The prometheus-operator's ServiceMonitor and PrometheusRule CRDs, for a
# cluster that has no prometheus-operator (the local one, a test cluster), so
# `kubectl apply -k deploy/monitoring` has its kinds to apply.
#
#   monitoring-crds.sh         print the paths of the two CRD files
#   monitoring-crds.sh apply   apply them (server-side: they are too big for the
#                              last-applied annotation) and wait until Established;
#                              with $KUBECTL (default kubectl) and its KUBECONFIG
#
# Where they come from: the zip of the Go module
# github.com/prometheus-operator/prometheus-operator at PROMETHEUS_OPERATOR_VERSION
# (versions.env), example/prometheus-operator-crd/, downloaded once into the Go
# module cache by `go mod download`. Nothing is copied into this repository.
# Uninstall: kubectl delete crd servicemonitors.monitoring.coreos.com
# prometheusrules.monitoring.coreos.com (deletes every object of those kinds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

module=github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION
dir=$(cd "$here" && go mod download -json "$module" | jq -r '.Dir // empty')
[ -n "$dir" ] || { echo "go mod download $module gave no directory" >&2; exit 1; }
crds=("$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml")

case ${1:-} in
"") printf '%s\n' "${crds[@]}" ;;
apply)
  kubectl=${KUBECTL:-kubectl}
  for f in "${crds[@]}"; do
    "$kubectl" apply --server-side --field-manager=mandrill-monitoring-crds -f "$f"
  done
  "$kubectl" wait --for=condition=Established --timeout=60s \
    crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
  ;;
*)
  echo "usage: $0 [apply]" >&2
  exit 2
  ;;
esac
