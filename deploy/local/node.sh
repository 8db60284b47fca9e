#!/usr/bin/env bash
# A real node for the local cluster (issue 11): a kubelet that runs pods for
# real with containerd + runc, and kube-proxy for ClusterIP Services, joined
# to a cluster that deploy/local/cluster.sh runs. Needs root.
#
#   node.sh up       install what is missing (apt), build kubelet/kube-proxy/
#                    crictl (cached), start containerd, the kubelet, kube-proxy
#                    and a relay to the API server; wait for the Node Ready
#   node.sh down     stop exactly what `up` started and undo what it set up:
#                    pods, mounts, bridge, firewall chains, cgroups, sysctls
#   node.sh status   say what runs and what is set up
#   node.sh check    exit 0, or print in one line why no real node can run here
#   node.sh prepare  only the slow part of `up`, in the open: install what is
#                    missing, build the binaries (make build-cluster runs it)
#   node.sh expose PORT    let pods reach 127.0.0.1:PORT of this machine at
#                    <bridge IP>:PORT (a relay and one firewall exception;
#                    `unexpose PORT` or `down` removes them)
#   node.sh kill NAMESPACE POD   SIGKILL the processes of a pod's containers
#                    (a crash as the pod sees it: no SIGTERM, no grace period)
#
# What `up` starts (pid files in <cluster dir>/pids/node-*.pid, logs in
# <cluster dir>/logs/node-*.log, everything else in <cluster dir>/node/):
#   containerd        its own config, root, state and socket in node/containerd
#   kubelet           root dir node/kubelet, Node "$MANDRILL_NODE_NAME",
#                     labelled and tainted mandrill.dev/real-node=true, so only
#                     pods that tolerate the taint run there (kwok's fake nodes
#                     keep everything else)
#   kube-proxy        iptables mode, NodePorts on the bridge address only
#   apiserver relay   socat: <bridge IP>:<API server port> -> 127.0.0.1, because
#                     the API server listens on loopback, which pods cannot reach;
#                     the `kubernetes` Service's endpoints point at the relay
# What `up` sets up: bridge mandrill0 with the pod network's first address,
# IPv4 forwarding on that bridge only, two iptables chains in the mangle table
# (MANDRILL-NODE-PRE, MANDRILL-NODE-FWD) that drop any packet from a pod to
# anything outside the pod and Service ranges, a cgroup /mandrill-node in every
# cgroup v1 hierarchy, and the kernel settings the kubelet insists on
# (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, ...), saved first
# and restored by `down`; and /run/mandrill-node/volumes, a link to node/volumes where
# local PersistentVolumes keep their data (kept by `down`).
#
# Settings (environment):
#   MANDRILL_CLUSTER_DIR     the cluster.sh folder (default <repo>/.cache/cluster/dev)
#   MANDRILL_NODE_NAME       the Node's name (default real-node)
#   MANDRILL_NODE_POD_CIDR   the pods' network (default 10.245.0.0/24; must
#                            overlap no route this machine has)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
bin_dir=${MANDRILL_BIN_DIR:-$repo/.cache/bin}
dir=${MANDRILL_CLUSTER_DIR:-$repo/.cache/cluster/dev}
node_name=${MANDRILL_NODE_NAME:-real-node}
pod_cidr=${MANDRILL_NODE_POD_CIDR:-10.245.0.0/24}
bridge=mandrill0
cgroup_root=/mandrill-node
image=localhost/mandrill/nodeutil:1
kubelet_port=10250
# Local PersistentVolumes (deploy/local/install/pv.yaml) name this fixed path;
# it links to folders kept with the cluster's state (node/volumes).
volumes_link=/run/mandrill-node/volumes

say() { printf '[node] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# `check` and the preflight say why in one line, and exit 3 so callers (the
# tests) can tell "cannot run here" from a failure.
cannot() { echo "no real node on this machine: $*"; exit 3; }

[ -d "$dir" ] && dir=$(cd "$dir" && pwd)
node=$dir/node
logs=$dir/logs
pids=$dir/pids
pki=$dir/pki
k8s_bin=$bin_dir/kubernetes-$K8S_VERSION
node_bin=$bin_dir/node-$K8S_VERSION
crictl_bin=$bin_dir/crictl-$CRICTL_VERSION/crictl
sock=$node/containerd/containerd.sock
kubectl() { "$k8s_bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
crictl() { "$crictl_bin" --config "$node/crictl.yaml" "$@"; }
ctr() { command ctr --address "$sock" --namespace k8s.io "$@"; }

# The pod network's first address is the bridge's: the pods' gateway, the
# node's InternalIP, where the kubelet listens and where the relay listens.
py_net() { python3 -c "import ipaddress,sys; n=ipaddress.ip_network(sys.argv[1]); $1" "$pod_cidr"; }
bridge_ip=$(py_net 'print(next(n.hosts()))')
prefix_len=$(py_net 'print(n.prefixlen)')

load_cluster() {
  [ -f "$dir/ports.env" ] && [ -f "$dir/kubeconfig" ] ||
    die "no cluster in $dir: run 'MANDRILL_CLUSTER_DIR=$dir deploy/local/cluster.sh up' first"
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  local pid
  pid=$(cat "$pids/kube-apiserver.pid" 2>/dev/null) || die "the cluster in $dir is not running"
  # The Service range is the API server's own flag, read from the process so
  # it can never disagree with cluster.sh.
  service_cidr=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^--service-cluster-ip-range=//p')
  [ -n "$service_cidr" ] || die "cannot read --service-cluster-ip-range of kube-apiserver (pid $pid)"
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q -- '^--kubelet-client-certificate=' ||
    die "the API server in $dir predates real-node support (no kubelet client certificate): restart it with cluster.sh down && cluster.sh up"
}

# Same rule as cluster.sh: a pid counts only while alive and started for this folder.
live_pid() {
  local f=$pids/node-$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir" || return 1
  echo "$pid"
}

start() { # name command...
  local name=$1
  shift
  live_pid "$name" >/dev/null && return
  setsid "$@" >>"$logs/node-$name.log" 2>&1 </dev/null &
  echo $! >"$pids/node-$name.pid"
}

stop() { # name
  local pid
  if pid=$(live_pid "$1"); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    say "stopped $1 (pid $pid)"
  fi
  rm -f "$pids/node-$1.pid"
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= timeout)); then
      say "timed out after ${timeout}s waiting for $what; last log lines:"
      tail -n 20 "$logs"/node-*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
  say "$what: ok after $((SECONDS - start))s"
}

# ---------------------------------------------------------------- preflight

cgroup_v1_mounts() { awk '$3 == "cgroup" {print $2}' /proc/mounts; }

preflight() { # prints one line and exits 3 when the node cannot run here
  [ "$(uname -s)" = Linux ] || cannot "not Linux"
  [ "$(id -u)" = 0 ] || cannot "needs root (containerd, the kubelet and iptables do)"
  command -v apt-get >/dev/null || command -v containerd >/dev/null ||
    cannot "containerd is not installed and there is no apt-get to install it"
  [ -n "$(cgroup_v1_mounts)" ] || [ -f /sys/fs/cgroup/cgroup.controllers ] ||
    cannot "no cgroup hierarchy is mounted"
  [ -d /proc/sys/net/bridge ] || cannot "the kernel has no bridge netfilter (/proc/sys/net/bridge missing)"
  # The pod network must overlap no route the machine has (other than the
  # bridge's own, if it is up already), so no pod address shadows anything.
  local clash
  clash=$(ip -4 route show | awk -v br="$bridge" '$1 != "default" && $0 !~ ("dev " br " ") {print $1}' |
    py_net 'print(" ".join(l.strip() for l in sys.stdin if l.strip() and n.overlaps(ipaddress.ip_network(l.strip(), strict=False))))') || true
  [ -z "$clash" ] || cannot "pod network $pod_cidr overlaps route(s) $clash; set MANDRILL_NODE_POD_CIDR"
  if ip link show "$bridge" >/dev/null 2>&1 && [ ! -f "$node/bridge.created" ]; then
    cannot "bridge $bridge exists but was not made for $dir (another real node on this machine?)"
  fi
}

ensure_packages() {
  local missing=() p
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v socat >/dev/null || missing+=(socat)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing Debian packages: ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
  for p in containerd runc iptables socat; do command -v "$p" >/dev/null || cannot "$p did not install"; done
}

# ------------------------------------------------------------------- images

# The one image the node has: a static Go program (deploy/local/node/nodeutil)
# in a one-layer OCI image, imported into containerd. It is the pod sandbox
# ("pause") image and what the node tests run. There is no registry.
build_image() {
  local src=$here/node/nodeutil out=$node/image stamp
  stamp=$(cat "$src/go.mod" "$src"/*.go | sha256sum | cut -c1-16)
  if [ -f "$out/$stamp.tar" ]; then
    image_archive=$out/$stamp.tar
    return
  fi
  say "building image $image from $src"
  rm -rf "$out" && mkdir -p "$out/rootfs" "$out/oci/blobs/sha256"
  (cd "$src" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out/rootfs/nodeutil" .)
  blob() { # file -> prints sha256, moves file into blobs
    local sum
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$out/oci/blobs/sha256/$sum"
    echo "$sum"
  }
  size() { stat -c %s "$out/oci/blobs/sha256/$1"; }
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$out/rootfs" -cf "$out/layer.tar" nodeutil
  local layer config manifest
  layer=$(blob "$out/layer.tar")
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/nodeutil"],"Cmd":["pause"],"Env":["PATH=/"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$layer" >"$out/config.json"
  config=$(blob "$out/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$(size "$config")" "$layer" "$(size "$layer")" >"$out/manifest.json"
  manifest=$(blob "$out/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$(size "$manifest")" "$image" "${image##*:}" >"$out/oci/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$out/oci" -cf "$out/$stamp.tar" .
  rm -rf "$out/rootfs" "$out/oci"
  image_archive=$out/$stamp.tar
}

# ---------------------------------------------------------------- set-up

# Config files are rewritten only when their content changes: kube-proxy
# exits when its configuration file is written to, even with the same bytes.
put() { # file < content
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}

save_sysctls() {
  # What the kubelet sets (pkg/kubelet/cm setupKernelTunables) and cannot be
  # told not to: saved once, restored by `down`.
  [ -f "$node/sysctls.saved" ] && return
  local k
  for k in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    echo "$k=$(sysctl -n "$k")"
  done >"$node/sysctls.saved"
}

setup_cgroups() {
  local m
  for m in $(cgroup_v1_mounts) /sys/fs/cgroup/unified; do
    [ -d "$m" ] || continue
    mkdir -p "$m$cgroup_root"
    if [ -f "$m/cpuset.cpus" ]; then
      cat "$m/cpuset.cpus" >"$m$cgroup_root/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m$cgroup_root/cpuset.mems"
    fi
  done
}

setup_bridge() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    touch "$node/bridge.created"
  fi
  # No IPv6 on the bridge: IPv6 forwarding stays off machine-wide and pods
  # get IPv4 only.
  sysctl -qw "net.ipv6.conf.$bridge.disable_ipv6=1"
  ip addr replace "$bridge_ip/$prefix_len" dev "$bridge"
  ip link set "$bridge" up
}

# Folders for local PersistentVolumes, kept with the cluster's state (the
# journal outlives pods, `down` and `up`; cluster-purge deletes it). The
# store's belongs to the operator's UID: a local volume is mounted as it is.
setup_volumes() {
  install -d -m 0755 "$node/volumes"
  install -d -o 10001 -g 10001 -m 0750 "$node/volumes/mandrill-store"
  mkdir -p "${volumes_link%/*}"
  ln -sfn "$node/volumes" "$volumes_link"
}

# The firewall, in the mangle table because kube-proxy never touches it (its
# chains in filter and nat are prepended and re-ensured on every sync, which
# would reorder ours). Both chains see only packets that come in on the bridge.
#   PRE (before DNAT): a pod may send to pods, to Service IPs, and to the relay
#       on the bridge address (no other port of the host); replies to
#       connections the host opened (probes) pass;
#       everything else (the host's other addresses, the rest of the world)
#       is dropped.
#   FWD (after DNAT and routing): what came in on the bridge may leave only
#       on the bridge, so even a Service whose endpoints point elsewhere
#       cannot carry a pod's packet off the machine.
ipt_ensure() { iptables -w -t mangle -C "$@" 2>/dev/null || iptables -w -t mangle -A "$@"; }
setup_firewall() {
  local c
  for c in MANDRILL-NODE-PRE MANDRILL-NODE-FWD; do
    iptables -w -t mangle -N "$c" 2>/dev/null || iptables -w -t mangle -F "$c"
  done
  iptables -w -t mangle -A MANDRILL-NODE-PRE -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  # The bridge address is the host: of its ports only the relay's (not the
  # kubelet's, not anything else listening on all addresses).
  iptables -w -t mangle -A MANDRILL-NODE-PRE -d "$bridge_ip/32" -p tcp --dport "$APISERVER_PORT" -j RETURN
  iptables -w -t mangle -A MANDRILL-NODE-PRE -d "$bridge_ip/32" -m comment --comment "mandrill real node: pods reach only the relay on the host" -j DROP
  iptables -w -t mangle -A MANDRILL-NODE-PRE -d "$pod_cidr" -j RETURN
  iptables -w -t mangle -A MANDRILL-NODE-PRE -d "$service_cidr" -j RETURN
  iptables -w -t mangle -A MANDRILL-NODE-PRE -m comment --comment "mandrill real node: pods reach nothing else" -j DROP
  iptables -w -t mangle -A MANDRILL-NODE-FWD -o "$bridge" -j RETURN
  iptables -w -t mangle -A MANDRILL-NODE-FWD -m comment --comment "mandrill real node: no pod packet leaves the bridge" -j DROP
  ipt_ensure PREROUTING -i "$bridge" -j MANDRILL-NODE-PRE
  ipt_ensure FORWARD -i "$bridge" -j MANDRILL-NODE-FWD
  # Forwarding on for packets that come in on the bridge only (IPv4 checks the
  # incoming device), so Service traffic between pods is routed; the machine's
  # other interfaces, and net.ipv4.ip_forward, stay as they were.
  sysctl -qw "net.ipv4.conf.$bridge.forwarding=1"
}

write_cni() {
  mkdir -p "$node/cni/net.d" "$node/cni/ipam"
  # isGateway false: the bridge and its address are ours (setup_bridge), so the
  # plugin never turns on forwarding machine-wide; no ipMasq.
  put "$node/cni/net.d/10-mandrill.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "mandrill-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node/cni/ipam",
        "ranges": [[{"subnet": "$pod_cidr", "gateway": "$bridge_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF
}

write_containerd_config() {
  mkdir -p "$node/containerd"
  put "$node/containerd/config.toml" <<EOF
# Written by deploy/local/node.sh. containerd for the real node only.
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$image"
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot lower
  # oom_score_adj below the parent's, so never ask it to.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$node/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni/net.d"
    max_conf_num = 1
EOF
}

make_node_certs() {
  mkdir -p "$node/pki"
  [ -f "$node/pki/.complete" ] && cmp -s "$node/pki/.ca" "$pki/ca.crt" && return
  say "making the node's certificates from the cluster CA in $pki"
  cert() { # name subject extensions
    openssl ecparam -name prime256v1 -genkey -noout -out "$node/pki/$1.key" 2>/dev/null
    openssl req -new -key "$node/pki/$1.key" -subj "$2" -out "$node/pki/$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$3" >"$node/pki/$1.ext"
    openssl x509 -req -in "$node/pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -CAserial "$node/pki/ca.srl" -days 825 -extfile "$node/pki/$1.ext" -out "$node/pki/$1.crt" 2>/dev/null
    rm -f "$node/pki/$1.csr" "$node/pki/$1.ext"
  }
  # The Node authorizer and NodeRestriction admission know a kubelet by this
  # name and group; kube-proxy's user is bound to system:node-proxier by default.
  cert kubelet-client "/O=system:nodes/CN=system:node:$node_name" "extendedKeyUsage=clientAuth"
  cert kubelet-serving "/O=system:nodes/CN=system:node:$node_name" \
    "extendedKeyUsage=serverAuth
subjectAltName=IP:$bridge_ip,DNS:$node_name"
  cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
  chmod 600 "$node/pki"/*.key
  cp "$pki/ca.crt" "$node/pki/.ca"
  touch "$node/pki/.complete"
}

kubeconfig() { # file cert-name
  put "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mandrill-local
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$node/pki/$2.crt", client-key: "$node/pki/$2.key"}
contexts:
- name: mandrill-local
  context: {cluster: mandrill-local, user: $2}
current-context: mandrill-local
EOF
}

write_kubelet_config() {
  put "$node/kubelet-config.yaml" <<EOF
# Written by deploy/local/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$bridge_ip"
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: "$node/pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$node/pki/kubelet-serving.key"
# The API server's kubelet client (logs, exec) authenticates with a
# certificate from the cluster CA; everyone else is asked about with the API
# server's TokenReview / SubjectAccessReview.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: "unix://$sock"
imageServiceEndpoint: "unix://$sock"
cgroupDriver: cgroupfs
cgroupRoot: "$cgroup_root"
# This machine has cgroup v1 hierarchies; kubelet 1.37 refuses them unless told.
failCgroupV1: false
failSwapOn: false
# Leave iptables to kube-proxy and to node.sh's own chains.
makeIPTablesUtilChains: false
# The images were imported by hand and cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# The node shares this machine's disk and memory with everything else on it:
# evict only when they are really short. The defaults are made for a disk of
# the node's own (imagefs.available<15%), and evicted the operator's pod on a
# large shared disk with 29 GB free. Every signal is named: once one is set,
# the kubelet sets the others to zero instead of their defaults.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1Gi
  imagefs.available: 1Gi
  nodefs.inodesFree: 1%
  imagefs.inodesFree: 1%
# No cluster DNS; an empty resolv.conf so pods get no nameserver at all
# (the host's would be outside the pod network, and dropped anyway).
resolvConf: ""
registerNode: true
registerWithTaints:
- {key: mandrill.dev/real-node, value: "true", effect: NoSchedule}
maxPods: 30
serializeImagePulls: false
EOF
  kubeconfig "$node/kubelet.kubeconfig" kubelet-client
}

write_kube_proxy_config() {
  put "$node/kube-proxy-config.yaml" <<EOF
# Written by deploy/local/node.sh.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$node/kube-proxy.kubeconfig"}
hostnameOverride: "$node_name"
bindAddress: "$bridge_ip"
mode: iptables
clusterCIDR: "$pod_cidr"
detectLocalMode: BridgeInterface
detectLocal: {bridgeInterface: "$bridge"}
# NodePorts on the bridge address only, never on the machine's own interfaces;
# no route_localnet (localhost NodePorts).
nodePortAddresses: ["$bridge_ip/32"]
iptables: {localhostNodePorts: false, masqueradeAll: false}
# Zero: leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
healthzBindAddress: "127.0.0.1:10256"
metricsBindAddress: "127.0.0.1:10249"
EOF
  kubeconfig "$node/kube-proxy.kubeconfig" kube-proxy
}

# The API server's Service `kubernetes` (10.96.0.1) gets no endpoints from the
# API server here (--endpoint-reconciler-type=none, and its address is
# 127.0.0.1, which no endpoint may be). Point it at the relay on the bridge.
write_kubernetes_endpoints() {
  # (kubectl warns that v1 Endpoints is deprecated; kept for older clients.)
  kubectl apply -f - 2>&1 >/dev/null <<EOF | { grep -v 'v1 Endpoints is deprecated' >&2 || true; }
apiVersion: v1
kind: Endpoints
metadata:
  name: kubernetes
  namespace: default
  labels: {endpointslice.kubernetes.io/skip-mirror: "true", mandrill.dev/real-node: "relay"}
subsets:
- addresses: [{ip: "$bridge_ip"}]
  ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: mandrill.dev-node-sh, mandrill.dev/real-node: "relay"}
addressType: IPv4
endpoints:
- addresses: ["$bridge_ip"]
  conditions: {ready: true}
ports:
- {name: https, port: $APISERVER_PORT, protocol: TCP}
EOF
}

node_ready() {
  [ "$(kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

cmd_up() {
  local t0=$SECONDS
  preflight
  load_cluster
  ensure_packages
  "$here/build.sh" node
  mkdir -p "$node" "$logs" "$pids"
  build_image
  save_sysctls
  # containerd makes these machine-wide folders whatever its config says
  # (shim sockets in /run/containerd/s, pod network namespaces in
  # /run/netns): note which ones did not exist, so `down` removes only those.
  local d
  for d in /run/containerd /run/netns; do
    [ -e "$d" ] || touch "$node/created$(echo "$d" | tr / -)"
  done
  setup_cgroups
  setup_bridge
  setup_firewall
  setup_volumes
  write_cni
  write_containerd_config
  # For looking inside: crictl --config <this file> ps | pods | logs ...
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$sock" "$sock" | put "$node/crictl.yaml"
  make_node_certs
  write_kubelet_config
  write_kube_proxy_config
  printf 'NODE_NAME=%s\nIMAGE=%s\nPOD_CIDR=%s\nSERVICE_CIDR=%s\nBRIDGE_IP=%s\nBRIDGE=%s\n' \
    "$node_name" "$image" "$pod_cidr" "$service_cidr" "$bridge_ip" "$bridge" | put "$node/node.env"

  # No registry is reachable and nothing may leave this machine: a proxy
  # address nothing listens on makes every pull fail at once, locally,
  # before any name is looked up.
  start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    containerd --config "$node/containerd/config.toml"
  wait_for "containerd" 30 ctr version
  if ! ctr images ls -q | grep -qxF "$image" ||
    [ "$(cat "$node/image.imported" 2>/dev/null)" != "$image_archive" ]; then
    ctr images import "$image_archive" >/dev/null
    echo "$image_archive" >"$node/image.imported"
    say "imported $image into containerd"
  fi

  # -lp names our folder in socat's command line, so live_pid knows it as ours.
  start apiserver-relay socat -lp "mandrill-relay:$dir" "TCP-LISTEN:$APISERVER_PORT,bind=$bridge_ip,reuseaddr,fork" \
    "TCP:127.0.0.1:$APISERVER_PORT"
  write_kubernetes_endpoints

  start kubelet "$node_bin/kubelet" --config="$node/kubelet-config.yaml" \
    --kubeconfig="$node/kubelet.kubeconfig" --root-dir="$node/kubelet" --cert-dir="$node/pki" \
    --hostname-override="$node_name" --node-ip="$bridge_ip" \
    --node-labels=mandrill.dev/real-node=true
  start kube-proxy "$node_bin/kube-proxy" --config="$node/kube-proxy-config.yaml"
  wait_for "Node $node_name Ready" 120 node_ready
  say "up in $((SECONDS - t0))s: Node $node_name, pods in $pod_cidr, Services in $service_cidr"
  say "logs: $logs/node-*.log   state: $node"
  say "run a pod there: tolerate mandrill.dev/real-node=true:NoSchedule, nodeSelector mandrill.dev/real-node=true, image $image (imagePullPolicy: Never)"
}

# ---------------------------------------------------------------- tear-down

our_mounts() { # mount points under the node folder, deepest first
  awk -v p="$node/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r
}

cmd_down() {
  [ -d "$node" ] || { say "no node state in $dir: nothing to do"; return; }
  [ "$(id -u)" = 0 ] || die "needs root"
  local apiserver_up=false
  if [ -f "$dir/ports.env" ] && kubectl get --raw /readyz >/dev/null 2>&1; then apiserver_up=true; fi
  stop kube-proxy
  stop kubelet
  # Pods outlive the kubelet (their shims are not its children): stop and
  # remove them through containerd so CNI releases their addresses and veths.
  if live_pid containerd >/dev/null; then
    crictl stopp $(crictl pods -q) >/dev/null 2>&1 || true
    crictl rmp -a -f >/dev/null 2>&1 || true
  fi
  stop containerd
  # Shims of ours that are left (their command line names our socket).
  local p
  for p in $(pgrep -f containerd-shim-runc-v2 || true); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$sock" && kill -KILL "$p" 2>/dev/null || true
  done
  stop apiserver-relay
  local relay
  for relay in "$pids"/node-relay-*.pid; do
    [ -e "$relay" ] || continue
    relay=${relay##*/node-}
    stop "${relay%.pid}"
  done
  if $apiserver_up; then
    kubectl delete node "$node_name" --ignore-not-found --wait=false >/dev/null
    kubectl -n default delete endpoints,endpointslices.discovery.k8s.io -l mandrill.dev/real-node=relay \
      --ignore-not-found 2>&1 >/dev/null | { grep -v 'v1 Endpoints is deprecated' >&2 || true; }
  else
    say "API server not reachable: Node $node_name and the kubernetes endpoints stay in the (stopped) cluster"
  fi
  if [ -x "$node_bin/kube-proxy" ]; then
    # kube-proxy's own chains (KUBE-*), IPv4 and IPv6, in every mode.
    "$node_bin/kube-proxy" --cleanup >>"$logs/node-kube-proxy.log" 2>&1 || true
  fi
  # --cleanup flushes KUBE-FIREWALL but leaves it (it used to be the
  # kubelet's): remove it and its jumps once empty.
  local t
  for t in iptables ip6tables; do
    if [ "$("$t" -w -S KUBE-FIREWALL 2>/dev/null | grep -c '^-A')" = 0 ]; then
      "$t" -w -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
      "$t" -w -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
      "$t" -w -X KUBE-FIREWALL 2>/dev/null || true
    fi
  done
  local m
  for m in $(our_mounts); do umount -l "$m" 2>/dev/null || true; done
  # containerd 1.6 keeps shim sockets in /run/containerd/s whatever its state
  # dir, and pod network namespaces in /run/netns: remove the folders if up
  # made them and they are empty now.
  for m in /run/containerd /run/netns; do
    if [ -f "$node/created$(echo "$m" | tr / -)" ] && [ -d "$m" ]; then
      find "$m" -depth -type d -empty -delete 2>/dev/null || true
      [ -e "$m" ] || rm -f "$node/created$(echo "$m" | tr / -)"
    fi
  done
  iptables -w -t mangle -D PREROUTING -i "$bridge" -j MANDRILL-NODE-PRE 2>/dev/null || true
  iptables -w -t mangle -D FORWARD -i "$bridge" -j MANDRILL-NODE-FWD 2>/dev/null || true
  for m in MANDRILL-NODE-PRE MANDRILL-NODE-FWD; do
    iptables -w -t mangle -F "$m" 2>/dev/null && iptables -w -t mangle -X "$m" 2>/dev/null || true
  done
  if [ "$(readlink "$volumes_link" 2>/dev/null)" = "$node/volumes" ]; then
    rm -f "$volumes_link"
    rmdir "${volumes_link%/*}" 2>/dev/null || true
  fi
  if [ -f "$node/bridge.created" ]; then
    ip link del "$bridge" 2>/dev/null || true
    rm -f "$node/bridge.created"
  fi
  for m in $(cgroup_v1_mounts) /sys/fs/cgroup/unified; do
    [ -d "$m$cgroup_root" ] && find "$m$cgroup_root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if [ -f "$node/sysctls.saved" ]; then
    while IFS= read -r kv; do sysctl -qw "$kv" || true; done <"$node/sysctls.saved"
    rm -f "$node/sysctls.saved"
  fi
  local left
  left=$(our_mounts | wc -l)
  [ "$left" -eq 0 ] || say "warning: $left mount(s) under $node remain: $(our_mounts | head -3 | tr '\n' ' ')"
  say "down: node $node_name stopped and its set-up undone (state kept in $node)"
}

cmd_status() {
  local c pid rc=0
  for c in containerd apiserver-relay kubelet kube-proxy; do
    if pid=$(live_pid "$c"); then
      printf '%-24s running (pid %s)\n' "node $c" "$pid"
    else
      printf '%-24s stopped\n' "node $c"
      rc=1
    fi
  done
  if ip link show "$bridge" >/dev/null 2>&1; then
    echo "bridge $bridge: $(ip -4 -br addr show "$bridge" | awk '{print $3}')"
  else
    echo "bridge $bridge: absent"
  fi
  iptables -w -t mangle -S MANDRILL-NODE-PRE >/dev/null 2>&1 && echo "firewall: MANDRILL-NODE-PRE/FWD in mangle" ||
    echo "firewall: absent"
  if [ -f "$dir/kubeconfig" ]; then
    kubectl get node "$node_name" -o wide 2>/dev/null || { echo "Node $node_name: not registered"; rc=1; }
  fi
  return $rc
}

# A port of the host's loopback (a server a test runs there, e.g. PostgreSQL)
# made reachable from pods on the bridge address: a relay like the API
# server's, and the one firewall exception it needs. `down` undoes both.
cmd_expose() { # port
  local port=${1:?usage: node.sh expose PORT}
  [[ $port =~ ^[0-9]+$ ]] || die "not a port: $port"
  load_cluster
  [ "$port" != "$APISERVER_PORT" ] || die "port $port is the API server's relay already"
  live_pid kubelet >/dev/null || die "the node is not up (node.sh up)"
  start "relay-$port" socat -lp "mandrill-relay:$dir" "TCP-LISTEN:$port,bind=$bridge_ip,reuseaddr,fork" \
    "TCP:127.0.0.1:$port"
  iptables -w -t mangle -C MANDRILL-NODE-PRE -d "$bridge_ip/32" -p tcp --dport "$port" -j RETURN 2>/dev/null ||
    iptables -w -t mangle -I MANDRILL-NODE-PRE 2 -d "$bridge_ip/32" -p tcp --dport "$port" -j RETURN
  say "pods reach 127.0.0.1:$port of this machine at $bridge_ip:$port"
}

cmd_unexpose() { # port
  local port=${1:?usage: node.sh unexpose PORT}
  stop "relay-$port"
  iptables -w -t mangle -D MANDRILL-NODE-PRE -d "$bridge_ip/32" -p tcp --dport "$port" -j RETURN 2>/dev/null || true
}

# What `kubectl delete --force` cannot do: the kubelet would still send SIGTERM
# first. Each container's first process is killed from the host, by the pid
# containerd reports; the kubelet then sees the containers exit 137.
cmd_kill() { # namespace pod
  local namespace=${1:?usage: node.sh kill NAMESPACE POD} pod=${2:?usage: node.sh kill NAMESPACE POD}
  live_pid kubelet >/dev/null || die "the node is not up (node.sh up)"
  local sandbox id pid killed=0
  sandbox=$(crictl pods -q --state ready --namespace "^$namespace\$" --name "^$pod\$")
  [ -n "$sandbox" ] || die "no running pod $namespace/$pod on this node"
  for id in $(crictl ps -q --state running -p "$sandbox"); do
    pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$id")
    kill -KILL "$pid" && killed=$((killed + 1))
  done
  ((killed > 0)) || die "pod $namespace/$pod has no running container"
  say "SIGKILL sent to $killed container(s) of $namespace/$pod"
}

cmd_prepare() {
  preflight
  ensure_packages
  "$here/build.sh" node
}

cmd_check() {
  preflight
  [ -f "$dir/ports.env" ] || cannot "no cluster in $dir"
  echo ok
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
check) cmd_check ;;
expose) cmd_expose "${2:-}" ;;
unexpose) cmd_unexpose "${2:-}" ;;
kill) cmd_kill "${2:-}" "${3:-}" ;;
prepare) cmd_prepare ;;
*)
  sed -n '2,45p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
