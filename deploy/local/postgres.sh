#!/usr/bin/env bash
# PostgreSQL's server binaries, for the tests' own PostgreSQL (tests/postgres.py)
# and the store benchmark. Starts nothing, and no system cluster: the test
# session runs its own server (initdb in a temporary folder, 127.0.0.1 only,
# stopped and deleted at the end).
#
#   postgres.sh prepare  install Debian's `postgresql` package if no server
#                        binaries are there (apt; root), with postgresql-common
#                        told not to create or start its `main` cluster (one
#                        made by this install anyway is dropped)
#   postgres.sh check    print the binaries' folder and version, exit 0; or
#                        say in one line what is missing, exit 3
#
# Where the binaries are looked for: $MANDRILL_TEST_PG_BIN if set, else the
# newest /usr/lib/postgresql/<version>/bin (Debian's layout). tests/postgres.py
# looks in the same places.
set -euo pipefail

say() { printf '[postgres] %s\n' "$*" >&2; }
cannot() { echo "no PostgreSQL server binaries: $*"; exit 3; }

bin_dir() {
  if [ -n "${MANDRILL_TEST_PG_BIN:-}" ]; then
    [ -x "$MANDRILL_TEST_PG_BIN/initdb" ] && echo "$MANDRILL_TEST_PG_BIN"
    return
  fi
  local found
  found=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [ -n "$found" ] && [ -x "$found/initdb" ] && [ -x "$found/postgres" ] && echo "$found"
}

cmd_check() {
  local dir
  dir=$(bin_dir) || true
  if [ -z "$dir" ]; then
    [ -n "${MANDRILL_TEST_PG_BIN:-}" ] && cannot "no initdb in MANDRILL_TEST_PG_BIN=$MANDRILL_TEST_PG_BIN"
    cannot "none in /usr/lib/postgresql/*/bin (deploy/local/postgres.sh prepare installs them)"
  fi
  echo "$dir ($("$dir/postgres" --version))"
}

cmd_prepare() {
  if dir=$(bin_dir) && [ -n "$dir" ]; then
    say "server binaries present: $dir"
    return
  fi
  [ -n "${MANDRILL_TEST_PG_BIN:-}" ] && cannot "MANDRILL_TEST_PG_BIN=$MANDRILL_TEST_PG_BIN has no initdb"
  command -v apt-get >/dev/null || cannot "not installed, and there is no apt-get to install them"
  [ "$(id -u)" -eq 0 ] || cannot "not installed; run this as root to install them with apt"
  # postgresql-common creates (and its init script starts, on 5432) a `main`
  # cluster on install unless told not to; the tests start their own server,
  # so none is wanted. Its createcluster.conf is kept by ucf (UCF_FORCE_CONFFOLD).
  mkdir -p /etc/postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  if ! grep -qs '^create_main_cluster *= *false' "$conf"; then
    echo "create_main_cluster = false" >>"$conf"
  fi
  local had_main
  had_main=$(printf '%s\n' /etc/postgresql/*/main)
  say "installing postgresql (Debian packages)"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get install -y -q \
    --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >&2
  dir=$(bin_dir) || cannot "apt installed postgresql, yet no server binaries in /usr/lib/postgresql"
  # Should a `main` cluster have been made all the same, by this install: drop it.
  local made
  for made in /etc/postgresql/*/main; do
    [ -d "$made" ] || continue
    grep -qxF "$made" <<<"$had_main" && continue
    say "dropping the cluster this install created: $made"
    pg_dropcluster --stop "$(basename "$(dirname "$made")")" main >&2 || true
  done
  say "server binaries: $dir"
}

case ${1:-} in
check) cmd_check ;;
prepare) cmd_prepare ;;
*)
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
