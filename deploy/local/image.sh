#!/usr/bin/env bash
# The operator's image (deploy/Dockerfile), built without Docker, and imported
# into the real node's containerd (deploy/local/node.sh). Needs root.
#
#   image.sh up           build (if the tree changed) and import into the node's
#                         containerd if a node runs (what `make image` does)
#   image.sh build        only build: the base, the image, its OCI archive
#   image.sh import       only import the archive `build` made (node must run)
#   image.sh constraints  regenerate deploy/constraints.txt: `pip install .` into
#                         a clean venv in the base's own Python, then pip freeze
#                         (what `make constraints` does)
#   image.sh status       what is built, cached and imported
#   image.sh check        exit 0, or print in one line why no image can be built here
#   image.sh clean        delete the build storage and archives (.cache/image);
#                         `clean --all` also the machine's cached base
#
# How it is built:
#   1. The base: Debian bookworm (Python 3.11) from Debian packages alone:
#      `debootstrap --variant=minbase --include=python3,python3-venv,...` from
#      the mirror the host's apt sources name, made into a one-layer image with
#      `buildah from scratch`. Named localhost/mandrill-base:<key>, the key a
#      hash of what goes into it (suite, packages, this recipe), not of the
#      mirror or the day; cached as an OCI archive in the machine cache, so
#      every clone on this machine shares it. Debian point releases move on:
#      `clean --all` and build again for a fresh one.
#   2. The image: `buildah bud -f deploy/Dockerfile --build-arg PYTHON_IMAGE=<base>`,
#      chroot isolation, never pulling. pip in the build reaches PyPI through
#      this machine's network, and a TLS-intercepting proxy is trusted through
#      the host's CA bundle, bind-mounted read-only over the base's own bundle
#      for RUN steps only: nothing of it stays in the image. HTTP(S)_PROXY /
#      NO_PROXY, when set, are passed as build arguments (not kept in the image).
#      The versions installed are deploy/constraints.txt's.
#   3. The archive: `buildah push ... oci-archive:`, named mandrill-<hash>.tar,
#      <hash> covering everything the build reads: the Dockerfile,
#      .dockerignore, pyproject.toml, README.md, deploy/constraints.txt, the
#      files under operator/, the base's key (and the image's name, which the
#      archive carries). An unchanged tree does not rebuild.
#   4. The import: `ctr -n k8s.io images import` into the containerd that
#      node.sh runs for $MANDRILL_CLUSTER_DIR, skipped when it has that digest
#      already. The node's pause image (localhost/mandrill/nodeutil:1) is
#      node.sh's own, imported by `node.sh up`.
#
# The image name is $MANDRILL_IMAGE (default localhost/mandrill:dev). Pods use
# it as is with imagePullPolicy Never or IfNotPresent; the localhost/ prefix
# keeps it from ever meaning a registry's image: containerd files a bare name
# under docker.io/library/ (`mandrill:dev` is docker.io/library/mandrill:dev),
# so an overlay for the local cluster sets newName localhost/mandrill.
#
# State (all git-ignored or outside the repo):
#   $MANDRILL_IMAGE_DIR (default <repo>/.cache/image)
#     storage/, run/   buildah's image store (--root, --runroot); tmp/ its temp files;
#                      containers.conf, networks/ its configuration (CONTAINERS_CONF)
#     mandrill-<hash>.tar   the OCI archives (the newest 3 are kept)
#     mandrill-<hash>.tar.env   its manifest digest and its CA bundle's sha256
#     image.env        IMAGE, ARCHIVE, DIGEST, BASE, CA_SHA256 of the last build (tests read it)
#   $MANDRILL_MACHINE_CACHE (default ~/.cache/mandrill)/image/base-<key>.tar
#                    the base image as an OCI archive, with its package list
#   /var/lib/containers/cache   buildah's blob-info cache (128 KB; root always
#                    gets it there); removed by `clean --all` if image.sh made it
# Clean: `image.sh clean` (or just rm -rf .cache/image after it; `clean`
# unmounts what buildah left mounted first).
#
# Settings (environment):
#   MANDRILL_CLUSTER_DIR    the cluster whose node gets the image (default <repo>/.cache/cluster/dev)
#   MANDRILL_IMAGE          the image's name (default localhost/mandrill:dev)
#   MANDRILL_DEBIAN_MIRROR  the Debian mirror (default: the host's apt sources')
#   MANDRILL_CA_BUNDLE      the CA bundle the build trusts (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MANDRILL_IMAGE_DIR:-$repo/.cache/image}
machine_cache=${MANDRILL_MACHINE_CACHE:-$HOME/.cache/mandrill}/image
cluster_dir=${MANDRILL_CLUSTER_DIR:-$repo/.cache/cluster/dev}
image=${MANDRILL_IMAGE:-localhost/mandrill:dev}
ca_bundle=${MANDRILL_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
sock=$cluster_dir/node/containerd/containerd.sock
constraints=deploy/constraints.txt

# The base: what goes into it, and so its key. Changing any of this (or the
# recipe in make_base) makes a new base, and so a new image.
suite=bookworm
base_packages=python3,python3-venv,python-is-python3,ca-certificates
base_recipe="v2 $suite minbase $base_packages $(dpkg --print-architecture 2>/dev/null || uname -m)"
base_key=$(printf '%s' "$base_recipe" | sha256sum | cut -c1-12)
base=localhost/mandrill-base:$base_key
base_archive=$machine_cache/base-$base_key.tar

say() { printf '[image] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
cannot() { echo "no image build on this machine: $*"; exit 3; }

# buildah's storage and network configuration are ours (the CNI backend,
# whose lock goes in our folder: chroot isolation uses no network of its
# own). What stays outside: containers/image's blob-info cache, which root
# always gets in /var/lib/containers/cache (128 KB); if image.sh made that
# folder, `clean --all` removes it.
buildah() {
  if [ ! -e "$cache/containers.conf" ]; then
    mkdir -p "$cache/networks"
    printf '# Written by deploy/local/image.sh.\n[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "%s"\n' \
      "$cache/networks" >"$cache/containers.conf"
  fi
  if [ ! -e /var/lib/containers ]; then mkdir -p "$machine_cache" && touch "$machine_cache/created-var-lib-containers"; fi
  CONTAINERS_CONF=$cache/containers.conf command buildah --root "$cache/storage" --runroot "$cache/run" \
    --storage-driver overlay "$@"
}
ctr() { command ctr --address "$sock" --namespace k8s.io "$@"; }

preflight() {
  [ "$(uname -s)" = Linux ] || cannot "not Linux"
  [ "$(id -u)" = 0 ] || cannot "needs root (buildah and debootstrap run as root here)"
  if ! type -P buildah >/dev/null || ! type -P debootstrap >/dev/null; then
    command -v apt-get >/dev/null || cannot "buildah or debootstrap missing, and no apt-get to install them"
  fi
}

# `type -P`, not `command -v`: the buildah() wrapper above would answer for a
# buildah that is not installed (a fresh machine then failed at its first call).
ensure_packages() {
  local missing=()
  type -P buildah >/dev/null || missing+=(buildah)
  type -P debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing Debian packages: ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
  type -P buildah >/dev/null && type -P debootstrap >/dev/null || cannot "buildah/debootstrap did not install"
}

# The first Debian mirror the host's apt sources name (deb822 or one-line).
debian_mirror() {
  if [ -n "${MANDRILL_DEBIAN_MIRROR:-}" ]; then echo "$MANDRILL_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(awk 'tolower($1) == "uris:" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# ------------------------------------------------------------------ the base

has_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

make_base() {
  has_image "$base" && return
  if [ -f "$base_archive" ]; then
    local id
    id=$(buildah pull --quiet "oci-archive:$base_archive" | tail -n 1)
    buildah tag "$id" "$base"
    say "base $base: from the machine cache ($base_archive)"
    return
  fi
  local mirror t0=$SECONDS root=$cache/tmp/base-rootfs
  mirror=$(debian_mirror)
  say "base $base: debootstrap $suite ($base_packages) from $mirror"
  rm -rf "$root" && mkdir -p "$root"
  debootstrap --variant=minbase --include="$base_packages" "$suite" "$root" "$mirror" \
    >"$cache/tmp/debootstrap.log" 2>&1 || { tail -n 20 "$cache/tmp/debootstrap.log" >&2; die "debootstrap failed (log: $cache/tmp/debootstrap.log)"; }
  # Nothing of this machine or of the build stays: no resolver, no host
  # name, no apt lists or package caches, no logs.
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  # minbase has no /etc/hosts (netbase is not in it); a RUN step would leave
  # the empty file buildah mounts over it. The kubelet mounts its own anyway.
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
  chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$cache/tmp/base.packages"
  local python
  python=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
  local c mnt
  c=$(buildah from --quiet scratch)
  mnt=$(buildah mount "$c")
  tar -C "$root" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 \
    --label "org.opencontainers.image.description=Debian $suite minbase with Python $python (mandrill's base)" \
    --label "dev.mandrill.base.recipe=$base_recipe" --label "dev.mandrill.base.mirror=$mirror" \
    --created-by "deploy/local/image.sh: debootstrap --variant=minbase --include=$base_packages $suite" "$c"
  buildah commit --quiet --rm "$c" "$base" >/dev/null
  # Bases of other recipes go (their images with them, at the next prune).
  local old
  for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep -E '^localhost/mandrill-base:' | grep -vxF "$base"); do
    buildah rmi "$old" >/dev/null 2>&1 || true
  done
  rm -rf "$root"
  mkdir -p "$machine_cache"
  buildah push --quiet "$base" "oci-archive:$base_archive.tmp:$base" && mv "$base_archive.tmp" "$base_archive"
  mv "$cache/tmp/base.packages" "$machine_cache/base-$base_key.packages"
  say "base $base: Python $python, $(wc -l <"$machine_cache/base-$base_key.packages") packages, made in $((SECONDS - t0))s; cached in $base_archive"
}

# ----------------------------------------------------------------- the image

# Every input of the build, by path and content: what the Dockerfile copies
# (the .dockerignore allow-list), the Dockerfile itself and the base.
content_hash() {
  (
    cd "$repo"
    printf 'base %s\nname %s\n' "$base_key" "$image"
    sha256sum deploy/Dockerfile .dockerignore pyproject.toml README.md "$constraints"
    find operator -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' ! -path '*.egg-info/*' \
      ! -path '*/.mypy_cache/*' ! -path '*/.ruff_cache/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -c1-16
}

# The manifest digest inside an OCI archive: what containerd will call the image.
archive_digest() { tar -xOf "$1" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])'; }

# The image's CA bundle must be the base's: the host's was mounted over it
# for RUN steps only. Prints its sha256.
check_ca_bundle() {
  local f=etc/ssl/certs/ca-certificates.crt ci cb mi mb a b
  ci=$(buildah from --quiet --pull=never "$image")
  cb=$(buildah from --quiet --pull=never "$base")
  mi=$(buildah mount "$ci")
  mb=$(buildah mount "$cb")
  a=$(sha256sum "$mi/$f" | cut -d' ' -f1)
  b=$(sha256sum "$mb/$f" | cut -d' ' -f1)
  buildah rm "$ci" "$cb" >/dev/null
  [ "$a" = "$b" ] || die "the image's /$f ($a) is not the base's ($b): the build left the host's CA bundle in it"
  echo "$a"
}

# What every building command does first: can it run here, what it needs
# installed, its temporary folder, and one build at a time per cache.
begin() {
  preflight
  ensure_packages
  mkdir -p "$cache/tmp"
  export TMPDIR=$cache/tmp
  exec 9>"$cache/lock"
  flock 9
}

cmd_build() {
  begin
  [ -f "$repo/$constraints" ] || die "$constraints is missing: run 'make constraints'"
  local hash archive
  hash=$(content_hash)
  archive=$cache/mandrill-$hash.tar
  if [ -f "$archive" ]; then
    say "image $image: unchanged tree ($hash), archive cached: $archive"
  else
    make_base
    local t0=$SECONDS args=()
    if [ -f "$ca_bundle" ]; then
      # Over the base's own bundle (which exists, so no empty file is left
      # behind), read-only, for RUN steps only.
      args+=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
    fi
    local v
    for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
      [ -n "${!v:-}" ] && args+=(--build-arg "$v=${!v}")
    done
    say "image $image: building deploy/Dockerfile on $base ($hash)"
    (cd "$repo" && buildah bud --isolation chroot --pull=never \
      --build-arg "PYTHON_IMAGE=$base" "${args[@]}" --label "dev.mandrill.tree=$hash" \
      -f deploy/Dockerfile -t "$image" .) >&2
    local ca
    ca=$(check_ca_bundle)
    buildah push --quiet "$image" "oci-archive:$archive.tmp:$image"
    printf 'DIGEST=%s\nCA_SHA256=%s\n' "$(archive_digest "$archive.tmp")" "$ca" >"$archive.env"
    mv "$archive.tmp" "$archive"
    # The previous build (no longer tagged), and archives older than the newest 3.
    buildah rmi --prune >/dev/null 2>&1 || true
    ls -t "$cache"/mandrill-*.tar 2>/dev/null | tail -n +4 | while read -r f; do rm -f "$f" "$f.env"; done
    say "image $image: built in $((SECONDS - t0))s, archive $archive ($(du -m "$archive" | cut -f1) MB)"
  fi
  { printf 'IMAGE=%s\nARCHIVE=%s\nBASE=%s\nHASH=%s\n' "$image" "$archive" "$base" "$hash"; cat "$archive.env"; } \
    >"$cache/image.env.new"
  mv "$cache/image.env.new" "$cache/image.env"
}

node_runs() { [ -S "$sock" ] && ctr version >/dev/null 2>&1; }

imported_digest() { ctr images ls "name==$image" 2>/dev/null | awk 'NR > 1 {print $3}'; }

cmd_import() {
  [ -f "$cache/image.env" ] || die "nothing built yet: run 'image.sh build'"
  # shellcheck disable=SC1091
  local IMAGE ARCHIVE DIGEST
  . "$cache/image.env"
  [ "$IMAGE" = "$image" ] || die "the last build is $IMAGE, not $image: run 'image.sh build'"
  node_runs || die "no real node runs for $cluster_dir (no containerd at $sock): node.sh up first"
  if [ "$(imported_digest)" = "$DIGEST" ]; then
    say "image $image: in the node's containerd already ($DIGEST)"
    return
  fi
  local t0=$SECONDS
  ctr images import --base-name "${image%:*}" "$ARCHIVE" >/dev/null
  [ "$(imported_digest)" = "$DIGEST" ] ||
    die "imported $ARCHIVE but containerd has $image as '$(imported_digest)', not $DIGEST"
  say "image $image: imported into the node's containerd in $((SECONDS - t0))s ($DIGEST)"
}

cmd_up() {
  cmd_build
  if node_runs; then
    cmd_import
  else
    say "no real node runs for $cluster_dir: built only (node.sh up, then image.sh import)"
  fi
}

# ------------------------------------------------------------ constraints

cmd_constraints() {
  begin
  make_base
  local c out=$repo/$constraints
  c=$(buildah from --quiet --pull=never "$base")
  # shellcheck disable=SC2064 # the container's name now, not at exit
  trap "buildah rm '$c' >/dev/null 2>&1 || true" EXIT
  buildah copy --quiet "$c" "$repo/pyproject.toml" "$repo/README.md" /src/ >/dev/null
  buildah copy --quiet "$c" "$repo/operator" /src/operator >/dev/null
  local args=()
  [ -f "$ca_bundle" ] && args+=(--volume "$ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro")
  say "resolving the dependencies of pyproject.toml afresh from PyPI, in $base's Python"
  # The runtime dependencies as `pip install .` resolves them today, and the
  # build backend pip fetches for pyproject.toml's [build-system] (pinned too:
  # the Dockerfile passes the file as PIP_CONSTRAINT, which reaches pip's
  # isolated build environment).
  {
    printf '# Written by `make constraints` (deploy/local/image.sh constraints): the versions\n'
    printf '# `pip install .` resolved in a clean venv in the image'"'"'s Python, then `pip freeze`.\n'
    printf '# deploy/Dockerfile installs exactly these (PIP_CONSTRAINT). Do not edit by hand.\n'
    buildah run --isolation chroot "${args[@]}" "$c" -- sh -ec '
      export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
      python -m venv /tmp/venv >&2
      cd /src
      /tmp/venv/bin/pip install --quiet . >&2
      /tmp/venv/bin/pip freeze --exclude mandrill
      python - <<EOF
import json, subprocess, tomllib
requires = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
report = subprocess.run(
    ["/tmp/venv/bin/pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-", *requires],
    check=True, capture_output=True, text=True).stdout
print("# the build backend ([build-system] requires: %s)" % ", ".join(requires))
for item in json.loads(report)["install"]:
    print("%s==%s" % (item["metadata"]["name"], item["metadata"]["version"]))
EOF
    '
  } >"$out.new"
  mv "$out.new" "$out"
  say "wrote $constraints ($(grep -c '==' "$out") pins)"
}

# ------------------------------------------------------------------- status

cmd_status() {
  echo "base $base: $(has_image "$base" && echo built || { [ -f "$base_archive" ] && echo "in the machine cache" || echo absent; })"
  local hash
  hash=$(content_hash)
  if [ -f "$cache/mandrill-$hash.tar" ]; then
    echo "image $image: built for this tree ($hash), $(du -m "$cache/mandrill-$hash.tar" | cut -f1) MB archive"
  else
    echo "image $image: not built for this tree ($hash)"
  fi
  if node_runs; then
    local digest want=
    digest=$(imported_digest)
    [ -f "$cache/image.env" ] && want=$(sed -n 's/^DIGEST=//p' "$cache/image.env")
    echo "node containerd ($sock): ${digest:-no $image}${digest:+$([ "$digest" = "$want" ] && echo ' (the last build)' || echo ' (not the last build)')}"
  else
    echo "node containerd: not running for $cluster_dir"
  fi
}

cmd_check() {
  preflight
  echo ok
}

cmd_clean() {
  if [ -d "$cache/storage" ] && [ -f "$cache/containers.conf" ] && type -P buildah >/dev/null; then
    buildah rm --all >/dev/null 2>&1 || true
    buildah rmi --all --force >/dev/null 2>&1 || true
  fi
  local m
  for m in $(awk -v p="$cache/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
  rm -rf "$cache"
  say "removed $cache"
  if [ "${1:-}" = --all ]; then
    rm -f "$machine_cache"/base-*
    say "removed the cached bases in $machine_cache"
    if [ -f "$machine_cache/created-var-lib-containers" ]; then
      rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
      rmdir /var/lib/containers/cache /var/lib/containers 2>/dev/null || true
      rm -f "$machine_cache/created-var-lib-containers"
      say "removed buildah's blob-info cache in /var/lib/containers (image.sh made that folder)"
    fi
  fi
}

case ${1:-} in
up) cmd_up ;;
build) cmd_build ;;
import) cmd_import ;;
constraints) cmd_constraints ;;
status) cmd_status ;;
check) cmd_check ;;
clean) cmd_clean "${2:-}" ;;
*)
  awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0" >&2
  exit 2
  ;;
esac
