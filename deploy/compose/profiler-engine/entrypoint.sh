#!/bin/sh
# The profiler's own Docker engine (docker-compose.yml, service profiler-engine; docs/adr/0009).
#
# A Docker engine for the containers under test and nothing else: its own storage, no host socket,
# reached only over TCP with mutual TLS by the one client holding the certificate made here.
#  1. Certificates, made once: a CA, the engine's server certificate (for the names in
#     ENGINE_TLS_NAMES) and the profiler's client certificate. The CA key and the server key stay
#     in ENGINE_CERTS/ca and /server (the engine's volume); ENGINE_CERTS/client (ca.pem, cert.pem,
#     key.pem) is the profiler's, owned by PROFILER_UID.
#  2. The cgroup subtree the profiler measures runs in (ENGINE_CGROUP_PREFIX) is delegated to
#     PROFILER_UID, so the profiler makes and reads its runs' cgroups without being root.
#  3. The test-data directory shared with the profiler (ENGINE_WORK_DIR) is given to PROFILER_UID.
#  4. dockerd: TLS-verified TCP only, no bridge, no iptables, the cgroupfs driver; extra
#     arguments are passed on.
set -eu

CERTS=${ENGINE_CERTS:-/certs}
NAMES=${ENGINE_TLS_NAMES:-localhost}
LISTEN=${ENGINE_LISTEN:-0.0.0.0:2376}
PROFILER_UID=${PROFILER_UID:-10001}
PREFIX=${ENGINE_CGROUP_PREFIX:-sage-profiler}
CGROUP_ROOT=${ENGINE_CGROUP_ROOT:-/sys/fs/cgroup}
WORK=${ENGINE_WORK_DIR:-}
DAYS=${ENGINE_TLS_DAYS:-825}
BITS=${ENGINE_TLS_BITS:-4096}

make_certs() {
  umask 077
  mkdir -p "$CERTS/ca" "$CERTS/server" "$CERTS/client"
  openssl genrsa -out "$CERTS/ca/key.pem" "$BITS" 2>/dev/null
  openssl req -new -x509 -days "$DAYS" -sha256 -subj "/CN=sage profiler engine CA" \
    -key "$CERTS/ca/key.pem" -out "$CERTS/ca/cert.pem"
  sans=""
  for name in $NAMES; do
    case "$name" in
      *[!0-9.]*) sans="$sans${sans:+,}DNS:$name" ;;
      *) sans="$sans${sans:+,}IP:$name" ;;
    esac
  done
  sign() { # dir, CN, extensions
    openssl genrsa -out "$1/key.pem" "$BITS" 2>/dev/null
    openssl req -new -sha256 -subj "/CN=$2" -key "$1/key.pem" -out "$1/csr.pem"
    printf '%s\n' "$3" > "$1/ext.cnf"
    openssl x509 -req -days "$DAYS" -sha256 -in "$1/csr.pem" -CA "$CERTS/ca/cert.pem" \
      -CAkey "$CERTS/ca/key.pem" -CAcreateserial -out "$1/cert.pem" -extfile "$1/ext.cnf" \
      2>/dev/null
    rm -f "$1/csr.pem" "$1/ext.cnf"
    cp "$CERTS/ca/cert.pem" "$1/ca.pem"
  }
  sign "$CERTS/server" "sage profiler engine" \
    "$(printf 'subjectAltName = %s\nextendedKeyUsage = serverAuth' "$sans")"
  sign "$CERTS/client" "sage profiler" "extendedKeyUsage = clientAuth"
}

[ -f "$CERTS/client/cert.pem" ] && [ -f "$CERTS/server/cert.pem" ] || make_certs
chown -R "$PROFILER_UID:$PROFILER_UID" "$CERTS/client"
chmod 0500 "$CERTS/client"
chmod 0400 "$CERTS/client/key.pem"

# Delegate the runs' cgroup subtree: v2 is one tree, v1 one per controller the runs use.
if [ -f "$CGROUP_ROOT/cgroup.controllers" ]; then
  dirs="$CGROUP_ROOT/$PREFIX"
else
  dirs=""
  for controller in memory cpu cpuacct pids; do
    [ -d "$CGROUP_ROOT/$controller" ] && dirs="$dirs $CGROUP_ROOT/$controller/$PREFIX"
  done
fi
for dir in $dirs; do
  mkdir -p "$dir"
  chown "$PROFILER_UID:$PROFILER_UID" "$dir" "$dir"/cgroup.* "$dir"/tasks 2>/dev/null || :
  chown "$PROFILER_UID:$PROFILER_UID" "$dir"/memory.* "$dir"/cpu.* "$dir"/pids.* 2>/dev/null || :
done

if [ -n "$WORK" ]; then
  mkdir -p "$WORK"
  chown "$PROFILER_UID:$PROFILER_UID" "$WORK"
fi

exec dockerd \
  --host "tcp://$LISTEN" \
  --tlsverify \
  --tlscacert "$CERTS/server/ca.pem" \
  --tlscert "$CERTS/server/cert.pem" \
  --tlskey "$CERTS/server/key.pem" \
  --bridge none --iptables=false --ip-masq=false \
  --exec-opt native.cgroupdriver=cgroupfs \
  "$@"
