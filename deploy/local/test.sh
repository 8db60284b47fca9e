#!/usr/bin/env bash
# `make test`: the whole suite, in two halves that run at the same time on
# clusters of their own (most of each half's time is spent waiting on the API
# server, so on 2 cores the two together take little longer than the first):
#
#   1. pytest on everything but tests/node, operators run as child processes
#      (tests/conftest.py starts its cluster, .cache/cluster/test, port 26443);
#   2. deploy/local/in-cluster.sh: the operator installed as a pod on the real
#      node, the e2e suite against it, and tests/node (.cache/cluster/in-cluster,
#      port 25443); then tests/crawlworkers (worker processes on a PostgreSQL
#      of their own, no cluster), which run here only to even out the halves:
#      the first is the longer one. Its output is kept in .cache/in-cluster.log
#      and shown when the first half is done.
#
#   deploy/local/test.sh                 both halves
#   deploy/local/test.sh PYTEST_ARGS...  only pytest with those arguments, as
#                                        `make test PYTEST_ARGS='-k rbac -x'`
# Exits non-zero if either half fails.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo" || exit
python=${PYTHON:-$repo/.venv/bin/python}
if (($#)); then
  exec "$python" -m pytest "$@"
fi
say() { printf '\n[test] %s\n' "$*"; }
log=$repo/.cache/in-cluster.log
mkdir -p "$(dirname "$log")"

say "second half (operator as a pod on the real node) starts beside the first; its log: $log"
start=$SECONDS
# Lanes move whole folders, never single tests: a folder runs in one lane only.
second_lane=(tests/crawlworkers)
second_half() {
  local t0=$SECONDS in_cluster rest child=
  # A TERM (Ctrl-C of make test) goes on to what runs now, so in-cluster.sh's
  # own clean-up (uninstall, node and cluster down) still runs.
  # shellcheck disable=SC2317  # reached through the trap
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"; exit 143' TERM
  deploy/local/in-cluster.sh &
  child=$!
  wait "$child"
  in_cluster=$?
  say "then ${second_lane[*]} (processes, no cluster; in this half to even out the two)"
  "$python" -m pytest "${second_lane[@]}" &
  child=$!
  wait "$child"
  rest=$?
  say "second half took $((SECONDS - t0))s"
  ((in_cluster == 0 && rest == 0))
}
second_half >"$log" 2>&1 &
second=$!
# shellcheck disable=SC2317  # reached through the traps
stop_second() { kill -TERM "$second" 2>/dev/null && wait "$second"; }
trap 'stop_second; exit 130' INT TERM

say "first half: pytest, operators as processes"
ignore=(--ignore=tests/node)
for folder in "${second_lane[@]}"; do ignore+=("--ignore=$folder"); done
"$python" -m pytest "${ignore[@]}"
first_status=$?
first_took=$((SECONDS - start))

if kill -0 "$second" 2>/dev/null; then
  say "first half done in ${first_took}s; waiting for the second"
fi
wait "$second"
second_status=$?
say "second half: deploy/local/in-cluster.sh and ${second_lane[*]} (done $((SECONDS - start))s after the start)"
cat "$log"
trap - INT TERM

say "first half (processes): $([ $first_status = 0 ] && echo passed || echo "FAILED ($first_status)") in ${first_took}s;" \
  "second half (in the cluster): $([ $second_status = 0 ] && echo passed || echo "FAILED ($second_status)")"
((first_status == 0 && second_status == 0))
