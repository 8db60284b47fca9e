#!/usr/bin/env bash
# `make demo`: the local control plane, the operator at work, and what it did.
#
# Brings the cluster up (building it the first time), applies the CRDs and a
# sample workload, runs `mandrill run` in the background, applies the sample
# RestartRequests and shows them consumed, restarting pods, and acknowledged;
# then serves a small site on 127.0.0.1 and shows a CrawlJob crawling it to
# Succeeded, with its results exported.
# The cluster stays up afterwards so you can look around; the operator is
# stopped (SIGTERM) at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
state=$repo/.cache/demo
mkdir -p "$state"
"$here/cluster.sh" up
eval "$("$here/cluster.sh" env)"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
ns=mandrill-demo

step kubectl apply -f "$repo/crds/restartrequest.yaml" -f "$repo/crds/crawljob.yaml"
kubectl wait --for=condition=Established crd/restartrequests.mandrill.dev crd/crawljobs.mandrill.dev \
  --timeout=60s >/dev/null
step kubectl apply -f "$here/demo/workload.yaml"
step kubectl -n $ns rollout status deployment/web --timeout=120s
# Earlier demo runs leave requests behind; the spec is immutable, so start afresh.
kubectl -n $ns delete restartrequests,crawljobs --all --wait=true >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
# The demo site is on loopback, which the crawler refuses by default: only the
# operator's own setting (never a CrawlJob) can allow it.
printf '\n\033[1m$ mandrill run --namespace %s --store-url sqlite:///%s/journal.sqlite --crawl-allow-private true &\033[0m\n' $ns "$state"
"$repo/.venv/bin/mandrill" run --namespace $ns --store-url "sqlite:///$state/journal.sqlite" \
  --liveness-port "$port" --metrics-port 0 --crawl-allow-private true >"$state/operator.log" 2>&1 &
operator=$!
site_port=$(free_port)
python3 -m http.server "$site_port" --bind 127.0.0.1 --directory "$here/demo/site" \
  >"$state/site.log" 2>&1 &
site=$!
trap 'kill -TERM $operator $site 2>/dev/null; wait $operator $site 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do
  kill -0 $operator 2>/dev/null || { cat "$state/operator.log"; exit 1; }
  sleep 0.3
done
echo "operator is live (log: $state/operator.log)"

sleep 5 # the delete sample skips pods younger than 5 s (minAge)
step kubectl -n $ns get pods -o wide
for sample in delete evict rollout; do
  step kubectl -n $ns apply -f "$repo/crds/samples/restartrequest-$sample.yaml"
done
step kubectl -n $ns wait --for=condition=Acknowledged restartrequests --all --timeout=300s
step kubectl -n $ns get restartrequests -o wide
step kubectl -n $ns get rr chaos-one-web-pod -o jsonpath='{range .status.targets[*]}{.name}{"\t"}{.action}{"\t"}{.outcome}{"\t"}{.message}{"\n"}{end}'
step kubectl -n $ns get events --field-selector involvedObject.kind=RestartRequest \
  --sort-by=.lastTimestamp -o custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message
# ... and each restarted pod or workload has its own Event naming the request
step kubectl -n $ns get events --field-selector reason=Restarted \
  --sort-by=.lastTimestamp -o custom-columns=KIND:.involvedObject.kind,OBJECT:.involvedObject.name,MESSAGE:.message
step kubectl -n $ns get pods -o wide
step sqlite3 "$state/journal.sqlite" "SELECT name, received_at FROM restart_journal ORDER BY received_at" 2>/dev/null ||
  python3 -c "import sqlite3,sys; [print(*r, sep='|') for r in sqlite3.connect(sys.argv[1]).execute('SELECT name, received_at FROM restart_journal ORDER BY received_at')]" "$state/journal.sqlite"


printf '\n\033[1m--- CrawlJob: crawl the demo site at http://127.0.0.1:%s/ ---\033[0m\n' "$site_port"
step kubectl -n $ns apply -f - <<YAML
apiVersion: mandrill.dev/v1alpha1
kind: CrawlJob
metadata:
  name: demo-site
spec:
  urls: [http://127.0.0.1:$site_port/]
  maxDepth: 3
YAML
step kubectl -n $ns wait --for=jsonpath='{.status.phase}'=Succeeded crawljob/demo-site --timeout=120s
step kubectl -n $ns get crawljobs -o wide
step kubectl -n $ns get crawljob demo-site -o jsonpath='{.status.errorsByKind}{"\n"}'
step "$repo/.venv/bin/mandrill" results $ns/demo-site --store-url "sqlite:///$state/journal.sqlite"

cat <<TXT

The cluster keeps running; the operator has been stopped. To use the cluster
from this shell and run the operator yourself:
  eval "\$(make -s cluster-env)"
  .venv/bin/mandrill run --namespace $ns --store-url sqlite:///$state/journal.sqlite --crawl-allow-private true
Stop the cluster with: make cluster-down
TXT
