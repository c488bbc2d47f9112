#!/usr/bin/env bash
# The development stack's infrastructure, on loopback only.
#
#   scripts/infra.sh start [PART...]   start what does not answer yet, wait until each answers
#   scripts/infra.sh stop  [PART...]   stop, by recorded pid, what this script started
#   scripts/infra.sh status            one line per part
#
# PARTs: postgres rabbitmq dockerd registry s3 gateway (default: all).
# Postgres and RabbitMQ are the machine's own servers: started when down, never stopped here.
# dockerd, the registry, the S3 server and the gateway record their pid in var/run/PART.pid when
# this script starts them; a part that already answers (a dockerd started by someone else, say) is
# reused and left alone by `stop`.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VAR="$ROOT/var"
RUN="$VAR/run"
LOG="$VAR/log"
PY="$ROOT/.venv/bin/python"
ALL_PARTS=(postgres rabbitmq dockerd registry s3 gateway)
OWNED_PARTS=(dockerd registry s3 gateway)

log() { echo "infra: $*" >&2; }
die() { echo "infra: error: $*" >&2; exit 1; }

mkdir -p "$RUN" "$LOG"

# The executable each recorded pid must belong to (guards against a reused pid).
expected_exe() {
  case "$1" in
    dockerd) echo dockerd ;;
    registry) echo docker-registry ;;
    s3) echo rclone ;;
    gateway) echo nginx ;;
  esac
}

# Print the recorded pid of PART if that process is alive and is what we started.
recorded_pid() {
  local part="$1" f="$RUN/$1.pid" pid exe
  [ -f "$f" ] || return 1
  pid="$(tr -dc '0-9' < "$f")"
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe="$(expected_exe "$part")"
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$exe" || return 1
  echo "$pid"
}

http_code() {  # URL -> HTTP status (000 when nothing answers)
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true
}

tcp_open() {  # PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# ------------------------------------------------------------------------------------ checks --
up_postgres() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2 >/dev/null 2>&1; }
up_rabbitmq() { tcp_open 5672; }
up_dockerd() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
up_registry() { case "$(http_code http://127.0.0.1:5000/v2/)" in 200|401) return 0 ;; esac; return 1; }
up_s3() { [ "$(http_code http://127.0.0.1:9000/)" != "000" ]; }
up_gateway() { [ "$(http_code http://127.0.0.1:8080/gateway/healthz)" = "200" ]; }

# wait_for PART SECONDS [PID]: poll up_PART; fail early if PID dies; show the log on failure.
wait_for() {
  local part="$1" limit="$2" pid="${3:-}" i
  for ((i = 0; i < limit * 4; i++)); do
    if "up_$part"; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "$part exited while starting; last lines of var/log/$part.log:"
      tail -n 30 "$LOG/$part.log" >&2 2>/dev/null || true
      rm -f "$RUN/$part.pid"
      return 1
    fi
    sleep 0.25
  done
  log "$part did not answer within ${limit}s; last lines of var/log/$part.log:"
  tail -n 30 "$LOG/$part.log" >&2 2>/dev/null || true
  return 1
}

# spawn PART CMD...: run CMD in the background, in its own session, logging to var/log/PART.log.
spawn() {
  local part="$1"; shift
  echo "=== $(date -u +%FT%TZ) starting: $*" >> "$LOG/$part.log"
  setsid "$@" >> "$LOG/$part.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$part.pid"
}

# --------------------------------------------------------------------------------- the parts --
start_postgres() {
  if up_postgres; then return 0; fi
  command -v pg_ctlcluster >/dev/null || die "Postgres is not installed (run scripts/setup.sh)"
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  log "starting Postgres $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for postgres 60
}

ensure_database() {
  local exists
  exists="$(psql -h 127.0.0.1 -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = 'sage'" 2>/dev/null || true)"
  if [ "$exists" != "1" ]; then
    log "createdb sage"
    createdb -h 127.0.0.1 -U postgres sage
  fi
}

start_rabbitmq() {
  if up_rabbitmq; then return 0; fi
  command -v rabbitmq-server >/dev/null || die "RabbitMQ is not installed (run scripts/setup.sh)"
  log "starting RabbitMQ"
  rabbitmq-server -detached
  local i
  for ((i = 0; i < 120; i++)); do
    if rabbitmq-diagnostics -q ping >/dev/null 2>&1 && up_rabbitmq; then return 0; fi
    sleep 1
  done
  die "RabbitMQ did not answer within 120s"
}

ensure_broker_users() {  # each service's own RabbitMQ user (deploy/rabbitmq/users.sh)
  command -v rabbitmqctl >/dev/null || die "rabbitmqctl is missing (run scripts/setup.sh)"
  local svc var passwords=()
  for svc in ecr-api builder profiler; do
    var="RABBITMQ_$(echo "$svc" | tr 'a-z-' 'A-Z_')_PASSWORD"
    passwords+=("$var=$(stack_value "$var")")
  done
  env "${passwords[@]}" sh "$ROOT/deploy/rabbitmq/users.sh" >/dev/null \
    || die "could not create the services' RabbitMQ users"
}

launch_dockerd() {
  if recorded_pid dockerd >/dev/null || up_dockerd; then return 0; fi
  log "starting dockerd (no bridge, no iptables)"
  spawn dockerd dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false
}

wait_dockerd() {
  local pid
  pid="$(recorded_pid dockerd || true)"
  wait_for dockerd 90 "$pid"
}

ensure_registry_keys() {
  local dir="$VAR/auth-keys"
  mkdir -p "$dir"
  if [ -x "$PY" ] && "$PY" -c 'import sage_auth.signing' >/dev/null 2>&1; then
    "$PY" -m sage_auth.signing ensure var/auth-keys >/dev/null
  elif [ ! -s "$dir/registry.key" ] || [ ! -s "$dir/registry.crt" ]; then
    log "sage_auth.signing is not importable: making the registry key pair with openssl"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sage-auth" \
      -keyout "$dir/registry.key" -out "$dir/registry.crt" >/dev/null 2>&1
    chmod 600 "$dir/registry.key"
  fi
  [ -s "$dir/registry.crt" ] || die "var/auth-keys/registry.crt is missing"
}

write_registry_config() {
  mkdir -p "$VAR/registry/data"
  cat > "$VAR/registry/config.yml.tmp" <<EOF
# Generated by scripts/infra.sh; edits are lost at the next start.
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $VAR/registry/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  token:
    realm: http://127.0.0.1:8080/auth/registry/token
    service: sage-registry
    issuer: sage-auth
    rootcertbundle: $VAR/auth-keys/registry.crt
EOF
  mv "$VAR/registry/config.yml.tmp" "$VAR/registry/config.yml"
}

launch_registry() {
  if recorded_pid registry >/dev/null || up_registry; then return 0; fi
  write_registry_config
  log "starting the registry on 127.0.0.1:5000"
  spawn registry docker-registry serve "$VAR/registry/config.yml"
}

s3_keys_work() {  # do var/stack.env's S3 keys work against the server on 127.0.0.1:9000?
  [ -x "$PY" ] || return 0
  SAGE_S3_ACCESS_KEY="$(stack_value SAGE_S3_ACCESS_KEY)" \
  SAGE_S3_SECRET_KEY="$(stack_value SAGE_S3_SECRET_KEY)" \
  "$PY" - <<'EOF' >/dev/null 2>&1
import os
from minio import Minio
Minio("127.0.0.1:9000", os.environ["SAGE_S3_ACCESS_KEY"], os.environ["SAGE_S3_SECRET_KEY"],
      secure=False, region="us-east-1").list_buckets()
EOF
}

launch_s3() {
  if recorded_pid s3 >/dev/null; then return 0; fi
  if up_s3; then
    s3_keys_work || log "WARNING: the S3 server on 127.0.0.1:9000 was not started by this" \
      "checkout and refuses the keys in var/stack.env: stop it, or put its keys there"
    return 0
  fi
  [ -x "$ROOT/.venv/bin/rclone" ] || die ".venv/bin/rclone is missing (run scripts/setup.sh)"
  local access secret
  access="$(stack_value SAGE_S3_ACCESS_KEY)"
  secret="$(stack_value SAGE_S3_SECRET_KEY)"
  mkdir -p "$VAR/s3"
  log "starting the S3 server (rclone) on 127.0.0.1:9000"
  # The key pair goes in through the environment, not the command line (ps would show it).
  # rclone reads a repeatable flag from the environment as CSV: quote the pair.
  RCLONE_AUTH_KEY="\"$access,$secret\"" RCLONE_CONFIG=/notfound \
    spawn s3 "$ROOT/.venv/bin/rclone" serve s3 --addr 127.0.0.1:9000 "$VAR/s3"
}

ipv6_loopback_works() {
  python3 - <<'EOF' >/dev/null 2>&1
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.bind(("::1", 0))
s.close()
EOF
}

render_gateway_config() {
  local tpl listen out
  mkdir -p "$VAR/gateway/tmp"
  tpl="$(cat "$ROOT/deploy/gateway/nginx.conf")"
  listen="        listen 127.0.0.1:8080;"
  if ipv6_loopback_works; then
    listen+=$'\n'"        listen [::1]:8080;"
  fi
  out="${tpl//@VAR@/$VAR}"
  out="${out//@LISTEN@/$listen}"
  if [ "$(id -u)" -eq 0 ]; then
    # Workers run as root too, so that they can write the temp dirs wherever the checkout is.
    out="${out//@USER@/root}"
  else
    out="$(printf '%s\n' "$out" | grep -v '^user @USER@;')"
  fi
  printf '%s\n' "$out" > "$VAR/gateway/nginx.conf"
}

launch_gateway() {
  if recorded_pid gateway >/dev/null || up_gateway; then return 0; fi
  render_gateway_config
  local conf="$VAR/gateway/nginx.conf"
  echo "=== $(date -u +%FT%TZ) starting nginx -c $conf" >> "$LOG/gateway.log"
  if ! nginx -t -q -p "$VAR/gateway/" -e "$VAR/gateway/error.log" -c "$conf" \
        >> "$LOG/gateway.log" 2>&1; then
    tail -n 20 "$LOG/gateway.log" >&2
    die "the gateway's nginx configuration does not pass nginx -t"
  fi
  log "starting the gateway (nginx) on 127.0.0.1:8080"
  rm -f "$RUN/gateway.pid"
  # nginx daemonizes itself and writes var/run/gateway.pid (the `pid` directive).
  setsid nginx -p "$VAR/gateway/" -e "$VAR/gateway/error.log" -c "$conf" \
    >> "$LOG/gateway.log" 2>&1 < /dev/null
  local i
  for ((i = 0; i < 40; i++)); do
    [ -s "$RUN/gateway.pid" ] && break
    sleep 0.25
  done
}

stack_value() {  # KEY -> value from var/stack.env (created or completed first)
  local py=python3
  [ -x "$PY" ] && py="$PY"
  "$py" "$ROOT/scripts/stack_env.py" get "$1"
}

# -------------------------------------------------------------------------------- commands ----
want() {  # PART: is PART among the requested ones?
  local p
  for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done
  return 1
}

cmd_start() {
  "${PY}" "$ROOT/scripts/stack_env.py" ensure >/dev/null 2>&1 \
    || python3 "$ROOT/scripts/stack_env.py" ensure >/dev/null
  if want postgres; then start_postgres; ensure_database; fi
  if want rabbitmq; then start_rabbitmq; ensure_broker_users; fi
  if want dockerd; then launch_dockerd; fi
  if want registry; then ensure_registry_keys; launch_registry; fi
  if want s3; then launch_s3; fi
  if want gateway; then launch_gateway; fi
  local part pid failed=0 reused=()
  if want dockerd; then wait_dockerd || failed=1; fi
  for part in registry s3 gateway; do
    want "$part" || continue
    pid="$(recorded_pid "$part" || true)"
    wait_for "$part" 30 "$pid" || failed=1
  done
  [ "$failed" -eq 0 ] || die "some parts did not start"
  for part in dockerd registry s3 gateway; do
    if want "$part" && ! recorded_pid "$part" >/dev/null; then
      reused+=("$part")
    fi
  done
  if [ ${#reused[@]} -gt 0 ]; then
    log "reused, not started by this checkout (so \`stop\` leaves them): ${reused[*]}"
  fi
  log "ready: ${PARTS[*]}"
}

stop_part() {
  local part="$1" pid i
  if ! pid="$(recorded_pid "$part")"; then
    rm -f "$RUN/$part.pid"
    return 0
  fi
  log "stopping $part (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$part (pid $pid) ignored SIGTERM for 30s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$part.pid"
}

cmd_stop() {
  local part
  for part in gateway s3 registry dockerd; do
    want "$part" && stop_part "$part"
  done
  return 0
}

cmd_status() {
  local part pid state owner
  for part in "${PARTS[@]}"; do
    if "up_$part"; then state=up; else state=down; fi
    owner=""
    if pid="$(recorded_pid "$part" 2>/dev/null)"; then
      owner="pid $pid (started by infra.sh)"
    elif [ "$state" = up ]; then
      owner="(not started by infra.sh)"
    fi
    printf '%-9s %-5s %s\n' "$part" "$state" "$owner"
  done
}

usage() {
  echo "usage: scripts/infra.sh start|stop|status [PART...]   PARTs: ${ALL_PARTS[*]}" >&2
  exit 2
}

[ $# -ge 1 ] || usage
CMD="$1"; shift
if [ $# -gt 0 ]; then
  PARTS=("$@")
  for p in "${PARTS[@]}"; do
    case " ${ALL_PARTS[*]} " in *" $p "*) ;; *) usage ;; esac
  done
else
  PARTS=("${ALL_PARTS[@]}")
fi

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
