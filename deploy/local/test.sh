#!/usr/bin/env bash
# `make test`: the whole suite, in two halves that run at the same time on
# clusters of their own (most of each half's time is spent waiting on the API
# server, so on 2 cores the two together take little longer than the first):
#
#   1. pytest on everything but tests/node, operators run as child processes
#      (tests/conftest.py starts its cluster, .cache/cluster/test, port 26443);
#   2. deploy/local/in-cluster.sh: the operator installed as a pod on the real
#      node, the e2e suite against it, and tests/node (.cache/cluster/in-cluster,
#      port 25443). Its output is kept in .cache/in-cluster.log and shown
#      when the first half is done.
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
deploy/local/in-cluster.sh >"$log" 2>&1 &
second=$!
# shellcheck disable=SC2317  # reached through the traps
stop_second() { kill -TERM "$second" 2>/dev/null && wait "$second"; }
trap 'stop_second; exit 130' INT TERM

say "first half: pytest, operators as processes"
"$python" -m pytest --ignore=tests/node
first_status=$?
first_took=$((SECONDS - start))

if kill -0 "$second" 2>/dev/null; then
  say "first half done in ${first_took}s; waiting for the second"
fi
wait "$second"
second_status=$?
say "second half: deploy/local/in-cluster.sh (done $((SECONDS - start))s after the start)"
cat "$log"
trap - INT TERM

say "first half (processes): $([ $first_status = 0 ] && echo passed || echo "FAILED ($first_status)") in ${first_took}s;" \
  "second half (in the cluster): $([ $second_status = 0 ] && echo passed || echo "FAILED ($second_status)")"
((first_status == 0 && second_status == 0))
