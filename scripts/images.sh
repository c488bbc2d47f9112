#!/usr/bin/env bash
# Build the five service images from their Dockerfiles (`make images`).
#
#   scripts/images.sh [SERVICE...]   build these (default: all five), tagged as compose and
#                                    deploy/k8s name them: ${IMAGE_PREFIX:-sage}/SERVICE:${IMAGE_TAG:-dev}
#   scripts/images.sh base           only make sure the Dockerfiles' base image is present
#
# The Dockerfiles start FROM python:3.11.11-slim-bookworm. Where that base cannot be pulled (no
# public registry, as on the development machines), the same base is built here from Debian's own
# packages: a `debootstrap --variant=minbase bookworm` root with Debian's CPython 3.11, pip and
# venv, laid out as the official image is (python, python3, pip at /usr/local/bin, LANG=C.UTF-8),
# imported into the Docker engine under the base's tag. It is built once: an existing tag is
# reused. With a registry reachable the pinned base is pulled as usual.
#
# Builds use the classic builder with the host's network (the bridge is off here): the build
# stages fetch the pinned wheels from PyPI and the builder's image installs Debian packages.
# Environment: IMAGE_PREFIX, IMAGE_TAG, DEBIAN_MIRROR (default: the one apt is configured with).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BASE="python:3.11.11-slim-bookworm"
PREFIX="${IMAGE_PREFIX:-sage}"
TAG="${IMAGE_TAG:-dev}"
ALL=(auth ecr-api storage builder profiler)

log() { echo "images: $*" >&2; }
die() { echo "images: error: $*" >&2; exit 1; }

# The Debian mirror apt is configured with (deb822 or one-line sources), else deb.debian.org.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -v '^\s*#' \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ')" || true
  echo "${m:-http://deb.debian.org/debian}"
}

# Build $BASE from Debian packages and import it into the engine.
build_local_base() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "building the base image needs root (debootstrap)"
  local mirror rootfs
  mirror="$(debian_mirror)"
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/sage-base.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$rootfs'" EXIT
  log "$BASE cannot be pulled: building it from Debian packages ($mirror)"
  debootstrap --variant=minbase \
    --include=python3.11,python3.11-venv,python3-pip,python3-venv,ca-certificates,netbase,tzdata \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
  rm -f "$rootfs.log"
  cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian*}/debian-security bookworm-security main
EOF
  # The official image's layout: the interpreter, pip and venv reachable as python/python3/pip
  # on /usr/local/bin, and no PEP 668 marker (its pip installs into the system interpreter).
  # The certificate authorities this host adds to Debian's (a TLS-inspecting proxy's, say), so
  # that the build stages reach PyPI from here as the host does; a pulled base has none of them.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed"
    log "the local base trusts this host's local certificate authorities too"
  fi
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
  ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3.11"
  printf '#!/bin/sh\nexec /usr/bin/python3.11 -m pip "$@"\n' > "$rootfs/usr/local/bin/pip"
  chmod 0755 "$rootfs/usr/local/bin/pip"
  ln -sf pip "$rootfs/usr/local/bin/pip3"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  # What a slim image leaves out: caches, docs, manuals, locales, the package lists.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
    "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
    "$rootfs"/usr/share/locale/*
  find "$rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
  : > "$rootfs/etc/machine-id"
  tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHON_VERSION=3.11' \
    --change 'CMD ["python3"]' \
    --message "built locally by scripts/images.sh: debootstrap bookworm + Debian python3.11" \
    - "$BASE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "built $BASE locally from Debian bookworm's python3.11 ($(docker image inspect -f '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

ensure_base() {
  if docker image inspect "$BASE" >/dev/null 2>&1; then return 0; fi
  log "pulling $BASE"
  if timeout 120 docker pull "$BASE" >/dev/null 2>&1; then return 0; fi
  build_local_base
}

build_one() {
  local service="$1" start
  [ -f "services/$service/Dockerfile" ] || die "no services/$service/Dockerfile"
  start=$(date +%s)
  log "building $PREFIX/$service:$TAG"
  mkdir -p var/log
  DOCKER_BUILDKIT=0 docker build --network host -f "services/$service/Dockerfile" \
    -t "$PREFIX/$service:$TAG" . >"var/log/image-$service.log" 2>&1 \
    || { tail -n 40 "var/log/image-$service.log" >&2; die "building $service failed (var/log/image-$service.log)"; }
  log "built $PREFIX/$service:$TAG in $(($(date +%s) - start)) s"
}

main() {
  timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "no Docker engine answers (scripts/infra.sh start dockerd)"
  ensure_base
  if [ "${1:-}" = base ]; then return 0; fi
  local services=("$@")
  [ ${#services[@]} -gt 0 ] || services=("${ALL[@]}")
  for s in "${services[@]}"; do build_one "$s"; done
}

main "$@"
