#!/usr/bin/env bash
# Builds the local control plane from pinned Go modules: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and kwok; and the tools the
# tests need, helm and promtool.
#
#   build.sh          the control plane (what cluster.sh needs)
#   build.sh tools    helm and promtool, for tests/helm and tests/monitoring
#                     (`make test` builds them; `make demo` needs neither)
#   build.sh helm     helm alone
#   build.sh node     kubelet and kube-proxy (component node-<k8s version>, from
#                     the same module as kube-apiserver) and crictl, for a real
#                     node (deploy/local/node.sh); never built unless asked for
#   build.sh promtool promtool alone, which
#                     checks and unit-tests deploy/monitoring's alerting rules
#
# Binaries are cached by component and version in $MANDRILL_BIN_DIR (default
# <repo>/.cache/bin, git-ignored) and mirrored to a per-machine cache
# ($HOME/.cache/mandrill/bin) so that a fresh clone on the same machine -- CI
# runs in one -- links them instead of compiling for twenty minutes.
# Prints the directory of each component on stdout-friendly lines; progress
# goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
bin_dir=${MANDRILL_BIN_DIR:-$repo/.cache/bin}
machine_cache=${MANDRILL_MACHINE_CACHE:-$HOME/.cache/mandrill/bin}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# build_component NAME VERSION MODULE_DIR LDFLAGS PKG...
build_component() {
  local name=$1 version=$2 moddir=$3 ldflags=$4
  shift 4
  local dest="$bin_dir/$name-$version" cached="$machine_cache/$name-$version"
  if [ -f "$dest/.complete" ]; then
    log "$name $version: cached in $dest"
    return
  fi
  if [ -f "$cached/.complete" ]; then
    mkdir -p "$dest"
    cp -p "$cached"/* "$dest"/ && touch "$dest/.complete"
    log "$name $version: copied from machine cache $cached"
    return
  fi
  local total start
  start=$(date +%s)
  log "$name $version: resolving modules (first run downloads them)"
  (cd "$moddir" && go mod download)
  total=$(cd "$moddir" && go list -deps "$@" | wc -l)
  local hint=""
  [ "$name" = kubernetes ] && hint=" (a cold build of Kubernetes takes ~6 min on 2 cores)"
  log "$name $version: compiling up to $total packages$hint"
  local tmp="$dest.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  # -v names each package as it is compiled: turn that into a progress count.
  (cd "$moddir" && go build -v -trimpath -ldflags "$ldflags" -o "$tmp/" "$@") 2>&1 |
    awk -v name="$name" -v total="$total" '
      /^[a-zA-Z0-9._\/-]+$/ { n++; if (n % 100 == 0) { printf "[build] %s: compiled %d / <=%d packages\n", name, n, total; fflush() } ; next }
      { print; fflush() }' >&2
  [ "${PIPESTATUS[0]}" -eq 0 ] || { log "$name: build failed"; exit 1; }
  # etcd's main package is the module root go.etcd.io/etcd/server/v3, which
  # go build names "server".
  if [ "$name" = etcd ]; then mv "$tmp/server" "$tmp/etcd"; fi
  rm -rf "$dest" && mv "$tmp" "$dest" && touch "$dest/.complete"
  mkdir -p "$cached" && cp -p "$dest"/* "$cached"/ && touch "$cached/.complete"
  log "$name $version: built in $(($(date +%s) - start)) s -> $dest"
}

k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$k8s_minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$k8s_minor"

build_control_plane() {
  build_component etcd "$ETCD_VERSION" "$here/gomod/etcd" \
    "-s -w" go.etcd.io/etcd/server/v3
  build_component kwok "$KWOK_VERSION" "$here/gomod/kwok" \
    "-s -w" sigs.k8s.io/kwok/cmd/kwok
  build_component kubernetes "$K8S_VERSION" "$here/gomod/kubernetes" "$k8s_ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl

  # kwok needs Stage documents (what a fake kubelet does to nodes and pods). Take
  # the ones kwok ships for this version from the module cache rather than
  # keeping copies of our own.
  stages="$bin_dir/kwok-$KWOK_VERSION/stages.yaml"
  if [ ! -f "$stages" ]; then
    kwok_dir=$(cd "$here/gomod/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
    {
      for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
        echo "---"
        cat "$kwok_dir/kustomize/stage/$f"
      done
    } >"$stages.tmp" && mv "$stages.tmp" "$stages"
    cp -p "$stages" "$machine_cache/kwok-$KWOK_VERSION/"
  fi
  log "ready: $bin_dir/{etcd-$ETCD_VERSION,kwok-$KWOK_VERSION,kubernetes-$K8S_VERSION}"
}

build_node() {
  # A component of its own, so adding it leaves the kubernetes-<version>
  # caches that exist valid.
  build_component node "$K8S_VERSION" "$here/gomod/kubernetes" "$k8s_ldflags" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  build_component crictl "$CRICTL_VERSION" "$here/gomod/cri-tools" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
  log "ready: $bin_dir/{node-$K8S_VERSION,crictl-$CRICTL_VERSION}"
}

build_promtool() {
  # -tags remove_all_sd leaves out the service-discovery plugins (cloud SDKs,
  # Kubernetes client): promtool checks and tests rules without them.
  local prom_version="3.${PROMETHEUS_VERSION#v0.3}"
  GOFLAGS="$GOFLAGS -tags=remove_all_sd" build_component promtool "$PROMETHEUS_VERSION" "$here/gomod/prometheus" \
    "-s -w -X github.com/prometheus/common/version.Version=$prom_version -X github.com/prometheus/common/version.Branch=HEAD" \
    github.com/prometheus/prometheus/cmd/promtool
  # The prometheus-operator CRDs the monitoring tests apply: their module into
  # the Go module cache now, so no test waits for a download.
  "$here/monitoring-crds.sh" >/dev/null
  log "ready: $bin_dir/promtool-$PROMETHEUS_VERSION"
}

build_helm() {
  # helm for deploy/helm/mandrill and tests/helm (`build.sh tools`, which
  # `make test` runs before pytest starts).
  build_component helm "$HELM_VERSION" "$here/gomod/helm" \
    "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    helm.sh/helm/v4/cmd/helm
  log "ready: $bin_dir/helm-$HELM_VERSION"
}

case ${1:-} in
"") build_control_plane ;;
tools)
  build_helm
  build_promtool
  ;;
node) build_node ;;
promtool) build_promtool ;;
helm) build_helm ;;
*)
  echo "usage: $0 [tools|node|helm|promtool]" >&2
  exit 2
  ;;
esac
