"""var/stack.env: the development stack's secrets and the settings every service process gets.

Generated once with random secrets; later runs keep every value already there and only add keys
that are missing (so a key added to this script reaches an existing checkout without rotating the
secrets the data in var/ was made with).

Format: one KEY=VALUE a line, the value taken verbatim up to the end of the line, no quoting
(like docker's --env-file). It is NOT meant for the shell's `source`: the JSON value holds quotes.

Usage (stdlib only):
    python scripts/stack_env.py ensure      # create or complete var/stack.env, print its path
    python scripts/stack_env.py get KEY     # print one value (exit 1 if absent)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "var" / "stack.env"

S3_ENDPOINT = "127.0.0.1:9000"
# service-credential client id -> the env prefix of the service that uses it ("auth" asks the
# ECR API who may use the registry, with a secret that it also knows as one of its clients)
CLIENTS = {
    "auth": "SAGE_AUTH_",
    "ecr-api": "SAGE_ECR_",
    "storage": "SAGE_STORAGE_",
    "builder": "SAGE_BUILDER_",
    "profiler": "SAGE_PROFILER_",
}
# Services that reach the S3 server (the ECR API reads the builder's build logs there).
S3_USERS = ("SAGE_STORAGE_", "SAGE_BUILDER_", "SAGE_PROFILER_", "SAGE_ECR_")
# Services on the bus -> their env prefix. Each has its own RabbitMQ user, `sage-<service>`, with
# its password in RABBITMQ_<SERVICE>_PASSWORD, made by scripts/infra.sh with
# deploy/rabbitmq/users.sh (names as in sage_common.bus.grants).
BUS_USERS = {"ecr-api": "SAGE_ECR_", "builder": "SAGE_BUILDER_", "profiler": "SAGE_PROFILER_"}
AMQP_ADDRESS = "127.0.0.1:5672"

# Services a browser app calls (through the gateway), and the CORS origins the dev stack allows.
BROWSER_FACING = ("SAGE_AUTH_", "SAGE_ECR_", "SAGE_STORAGE_")
DEV_CORS_ORIGINS = '["*"]'


def _secret() -> str:
    return secrets.token_urlsafe(32)


def broker_password_variable(service: str) -> str:
    return "RABBITMQ_" + service.upper().replace("-", "_") + "_PASSWORD"


def parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value
    return values


def load(path: Path = PATH) -> dict[str, str]:
    """The values in var/stack.env ({} when it does not exist)."""
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return {}


def build(existing: dict[str, str]) -> dict[str, str]:
    """Every key the stack needs, keeping the values already in `existing`."""
    out = dict(existing)
    access = out.setdefault("SAGE_S3_ACCESS_KEY", "sage" + secrets.token_hex(8))
    secret = out.setdefault("SAGE_S3_SECRET_KEY", _secret())
    for prefix in S3_USERS:
        out.setdefault(prefix + "S3_ENDPOINT", S3_ENDPOINT)
        out.setdefault(prefix + "S3_ACCESS_KEY", access)
        out.setdefault(prefix + "S3_SECRET_KEY", secret)
    # The ECR API serves build logs from the bucket the builder writes them to.
    out.setdefault(
        "SAGE_ECR_BUILD_LOG_BUCKET", out.get("SAGE_BUILDER_S3_BUCKET") or "sage-build-logs"
    )

    known: dict[str, str] = {}
    try:
        parsed = json.loads(out.get("SAGE_AUTH_SERVICE_CLIENTS", "{}"))
        if isinstance(parsed, dict):
            known = {str(k): str(v) for k, v in parsed.items()}
    except ValueError:
        pass
    clients: dict[str, str] = {}
    for client_id, prefix in CLIENTS.items():
        value = out.get(prefix + "CLIENT_SECRET") or known.get(client_id) or _secret()
        clients[client_id] = value
        out[prefix + "CLIENT_ID"] = out.get(prefix + "CLIENT_ID", client_id)
        out[prefix + "CLIENT_SECRET"] = value
    for client_id, value in known.items():  # keep clients added by hand
        clients.setdefault(client_id, value)
    out["SAGE_AUTH_SERVICE_CLIENTS"] = json.dumps(clients, separators=(",", ":"))
    # The profiler pulls the images it tests as its service account (the ECR lets it read all).
    out.setdefault("SAGE_PROFILER_REGISTRY_USERNAME", "profiler")
    out.setdefault("SAGE_PROFILER_REGISTRY_PASSWORD", clients["profiler"])
    out.setdefault("SAGE_AUTH_KEY_DIR", "var/auth-keys")
    for service, prefix in BUS_USERS.items():
        password = out.setdefault(broker_password_variable(service), secrets.token_hex(24))
        out.setdefault(prefix + "AMQP_URL", f"amqp://sage-{service}:{password}@{AMQP_ADDRESS}/")
    # Browser apps (the SAGE portal) may call the development stack from any origin: a developer
    # serves the portal on some localhost port or on a name mapped to loopback. No credentials
    # are ever allowed (docs/operations.md, "CORS"), so a page needs the user's token to do anything.
    for prefix in BROWSER_FACING:
        out.setdefault(prefix + "CORS_ORIGINS", DEV_CORS_ORIGINS)
    return out


def ensure(path: Path = PATH) -> dict[str, str]:
    """Create or complete var/stack.env; return its values."""
    existing = load(path)
    values = build(existing)
    if values != existing:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in values.items())
        header = "# Generated by scripts/stack_env.py: dev stack secrets. KEY=VALUE, no quoting.\n"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(header + body)
        os.replace(tmp, path)
    return values


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "ensure":
        ensure()
        print(PATH)
        return 0
    if len(argv) == 2 and argv[0] == "get":
        value = ensure().get(argv[1])
        if value is None:
            return 1
        print(value)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
