#!/usr/bin/env bash
# The local control plane as plain processes on 127.0.0.1: etcd,
# kube-apiserver (RBAC on, certificates made here), kube-controller-manager,
# kube-scheduler, and kwok standing in for kubelets on fake nodes.
#
#   cluster.sh up       build if needed, start, wait for /readyz and Ready nodes
#   cluster.sh down     stop exactly the processes `up` started (--purge: and
#                       delete the state folder)
#   cluster.sh env      print `export KUBECONFIG=... PATH=...` lines for eval
#   cluster.sh status   say what runs and whether the API server is ready
#
# Settings (environment):
#   MANDRILL_CLUSTER_DIR   state, logs, certificates, kubeconfig
#                          (default <repo>/.cache/cluster/dev)
#   MANDRILL_CLUSTER_PORT  first of six consecutive ports (default 16443):
#                          apiserver, etcd client, etcd peer,
#                          controller-manager, scheduler, kwok
#   MANDRILL_FAKE_NODES    fake nodes to register (default 2)
# The ports of a running cluster are remembered in its folder, so `down`,
# `env` and `status` need only MANDRILL_CLUSTER_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
bin_dir=${MANDRILL_BIN_DIR:-$repo/.cache/bin}
dir=${MANDRILL_CLUSTER_DIR:-$repo/.cache/cluster/dev}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pki=$dir/pki
logs=$dir/logs
pids=$dir/pids
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

k8s_bin=$bin_dir/kubernetes-$K8S_VERSION
etcd_bin=$bin_dir/etcd-$ETCD_VERSION
kwok_bin=$bin_dir/kwok-$KWOK_VERSION
kubectl() { "$k8s_bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }
say() { printf '[cluster] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

load_ports() {
  if [ -f "$dir/ports.env" ]; then
    # shellcheck disable=SC1091
    . "$dir/ports.env"
    return
  fi
  local base=${MANDRILL_CLUSTER_PORT:-16443}
  [[ $base =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65529 ] ||
    die "MANDRILL_CLUSTER_PORT must be a number in 1024..65529, got '$base'"
  case ${MANDRILL_CLUSTER_PROFILING:-false} in
    true | false) ;;
    *) die "MANDRILL_CLUSTER_PROFILING must be true or false, got '$MANDRILL_CLUSTER_PROFILING'" ;;
  esac
  APISERVER_PORT=$base ETCD_PORT=$((base + 1)) ETCD_PEER_PORT=$((base + 2))
  KCM_PORT=$((base + 3)) SCHEDULER_PORT=$((base + 4)) KWOK_PORT=$((base + 5))
}

save_ports() {
  printf 'APISERVER_PORT=%s\nETCD_PORT=%s\nETCD_PEER_PORT=%s\nKCM_PORT=%s\nSCHEDULER_PORT=%s\nKWOK_PORT=%s\n' \
    "$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHEDULER_PORT" "$KWOK_PORT" >"$dir/ports.env"
}

# A pid file only counts while its process is alive AND was started for this
# folder: every command line we launch names $dir, so a recycled pid is never
# mistaken for ours.
live_pid() {
  local f=$pids/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir" || return 1
  echo "$pid"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apiserver_ready() {
  curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1
}

wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2 start=$SECONDS
  shift 2
  until "$@"; do
    if ((SECONDS - start >= timeout)); then
      say "timed out after ${timeout}s waiting for $what; last log lines:"
      tail -n 15 "$logs"/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
  say "$what: ok after $((SECONDS - start))s"
}

make_cert() { # name subject [extensions] [ca]
  local name=$1 subject=$2 ext=${3:-} ca=${4:-ca}
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  local extfile="$pki/$name.ext"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$ext" >"$extfile"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial \
    -days 825 -extfile "$extfile" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$extfile"
}

make_ca() { # name common-name
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/$1.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/$1.key" -subj "/CN=$2" -days 825 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$pki/$1.crt" 2>/dev/null
}

# Bumped whenever make_pki changes, so existing folders get the new PKI.
PKI_LAYOUT=3

# What the API server shows a kubelet when it asks for logs, exec or
# port-forward (a real node's kubelet, deploy/local/node.sh, lets only
# authenticated callers in). Made when missing rather than by bumping
# PKI_LAYOUT, so folders that exist keep their CA and every other key.
make_kubelet_client_cert() {
  [ -f "$pki/apiserver-kubelet-client.crt" ] && return
  make_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  chmod 600 "$pki/apiserver-kubelet-client.key"
}

make_pki() {
  if [ "$(cat "$pki/.complete" 2>/dev/null)" = "$PKI_LAYOUT" ]; then
    make_kubelet_client_cert
    return
  fi
  say "making a throwaway CA and certificates in $pki"
  rm -rf "$pki" && mkdir -p "$pki"
  # An RSA CA, though the leaf keys are EC: the API server verifies the client
  # certificate's signature on every request, and an RSA-2048 signature is
  # several times cheaper to verify than an ECDSA P-256 one (EC leaves keep
  # TLS handshakes cheap). Verifying took 15% of the API server's CPU under
  # load with an EC CA, 5% now (with the separate front-proxy CA below).
  make_ca ca mandrill-local-ca
  make_cert apiserver "/CN=kube-apiserver" \
    "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  make_cert admin "/O=system:masters/CN=mandrill-admin" "extendedKeyUsage=clientAuth"
  make_cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  make_cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  make_cert kwok "/O=system:masters/CN=kwok" "extendedKeyUsage=clientAuth"
  # The aggregation layer's front proxy: without it every component logs a
  # missing requestheader CA, and aggregated APIs could not be served. Its CA
  # is a separate one, as kubeadm has it: with one CA for both, the API server
  # verified every client certificate twice, once as a would-be front proxy.
  make_ca front-proxy-ca mandrill-local-front-proxy-ca
  make_cert front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth" front-proxy-ca
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/service-account.key" 2>/dev/null
  openssl ec -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub" 2>/dev/null
  make_kubelet_client_cert
  chmod 600 "$pki"/*.key
  echo "$PKI_LAYOUT" >"$pki/.complete"
}

write_kubeconfig() { # file user
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mandrill-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: mandrill-local
  context: {cluster: mandrill-local, user: $2}
current-context: mandrill-local
EOF
}

start() { # component command...
  local name=$1
  shift
  if live_pid "$name" >/dev/null; then
    return
  fi
  # setsid: a terminal's Ctrl-C does not reach the cluster; logs append so a
  # restart keeps the history.
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name.pid"
}

nodes_ready() {
  local ready
  ready=$(kubectl get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null |
    grep -c True) || true
  [ "${ready:-0}" -ge "${MANDRILL_FAKE_NODES:-2}" ]
}

default_sa_exists() { kubectl -n default get serviceaccount default >/dev/null 2>&1; }

register_nodes() {
  local i
  for i in $(seq 1 "${MANDRILL_FAKE_NODES:-2}"); do
    kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$i
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "1500"}
  capacity: {cpu: "64", memory: 512Gi, pods: "1500"}
EOF
  done
}

cmd_up() {
  local t0=$SECONDS
  load_ports
  if all_running && apiserver_ready && nodes_ready; then
    say "already up (API server https://127.0.0.1:$APISERVER_PORT)"
    print_where
    return
  fi
  "$here/build.sh"
  mkdir -p "$logs" "$pids"
  # Half a cluster (some processes died) is restarted whole, not patched up.
  local c
  for c in "${components[@]}"; do
    if ! live_pid "$c" >/dev/null; then
      stop_all quiet
      break
    fi
  done
  for port in $APISERVER_PORT $ETCD_PORT $ETCD_PEER_PORT $KCM_PORT $SCHEDULER_PORT $KWOK_PORT; do
    if ! live_pid kube-apiserver >/dev/null && ! port_free "$port"; then
      die "port $port on 127.0.0.1 is taken; pick another base with MANDRILL_CLUSTER_PORT"
    fi
  done
  save_ports
  make_pki
  write_kubeconfig "$dir/kubeconfig" admin
  write_kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$dir/scheduler.kubeconfig" scheduler
  write_kubeconfig "$dir/kwok.kubeconfig" kwok

  start etcd "$etcd_bin/etcd" --name=mandrill-local --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="mandrill-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true --log-level=warn
  wait_for "etcd /health" 30 curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$k8s_bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$dir/pki/apiserver-generated" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/service-account.pub" \
    --service-account-signing-key-file="$pki/service-account.key" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --endpoint-reconciler-type=none \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --profiling="${MANDRILL_CLUSTER_PROFILING:-false}"
  wait_for "kube-apiserver /readyz" 90 apiserver_ready

  start kube-controller-manager "$k8s_bin/kube-controller-manager" \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --cert-dir="$dir/pki/controller-manager-generated" \
    --service-account-private-key-file="$pki/service-account.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range=10.96.0.0/16 \
    --node-monitor-period=5s --node-monitor-grace-period=40s \
    --profiling=false
  start kube-scheduler "$k8s_bin/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$dir/pki/scheduler-generated" \
    --profiling=false
  start kwok "$kwok_bin/kwok" \
    --kubeconfig="$dir/kwok.kubeconfig" \
    --config="$kwok_bin/stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 \
    --cidr=10.244.0.1/16 --node-ip=127.0.0.1 \
    --server-address="127.0.0.1:$KWOK_PORT"

  register_nodes
  wait_for "fake nodes Ready" 90 nodes_ready
  wait_for "default ServiceAccount" 60 default_sa_exists
  say "up in $((SECONDS - t0))s"
  print_where
}

all_running() {
  local c
  for c in "${components[@]}"; do live_pid "$c" >/dev/null || return 1; done
}

print_where() {
  say "API server: https://127.0.0.1:$APISERVER_PORT"
  say "kubeconfig: $dir/kubeconfig"
  say "logs:       $logs/"
  say "use it:     eval \"\$(make cluster-env)\"   (or: $0 env)"
}

stop_all() { # [quiet]
  local c pid stopped=()
  # Reverse order: clients first, etcd last.
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do
    c=${components[$i]}
    if pid=$(live_pid "$c"); then
      kill -TERM "$pid" 2>/dev/null || true
      stopped+=("$c:$pid")
    fi
    rm -f "$pids/$c.pid"
  done
  local entry deadline=$((SECONDS + 15))
  for entry in "${stopped[@]}"; do
    pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  [ "${1:-}" = quiet ] || say "stopped: ${stopped[*]:-nothing was running}"
}

cmd_down() {
  # A real node (node.sh) mounts and firewalls things only its own `down`
  # (as root) undoes; stopping the API server under it, or purging the folder
  # over its mounts, would leave them behind. node.sh down removes these pid files.
  if compgen -G "$pids/node-*.pid" >/dev/null; then
    die "a real node runs on this cluster: run 'MANDRILL_CLUSTER_DIR=$dir deploy/local/node.sh down' (as root) first"
  fi
  stop_all
  if [ "${1:-}" = --purge ]; then
    rm -rf "$dir"
    say "removed $dir"
  fi
}

cmd_env() {
  [ -f "$dir/kubeconfig" ] || die "no cluster in $dir yet: run 'make cluster-up' first"
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  printf 'export PATH=%q:"$PATH"\n' "$k8s_bin"
}

cmd_status() {
  load_ports
  local c pid rc=0
  for c in "${components[@]}"; do
    if pid=$(live_pid "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      rc=1
    fi
  done
  if apiserver_ready; then
    echo "API server https://127.0.0.1:$APISERVER_PORT is ready"
  else
    echo "API server https://127.0.0.1:$APISERVER_PORT is not ready"
    rc=1
  fi
  return $rc
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down "${2:-}" ;;
env) cmd_env ;;
status) cmd_status ;;
*)
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
