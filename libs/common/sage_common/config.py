"""The base of every service's configuration: one pydantic-settings object, env-prefixed.

Secrets are `SecretStr`, so they print as `**********` in logs, reprs and tracebacks. In
production (`environment = "production"`) a service refuses to start while any of its secrets is
empty or a known placeholder (`change-me-*` from `.env.example`, `REPLACE` from the Kubernetes
template, RabbitMQ's `guest`, ...): a stack started from the examples must not run.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Placeholders shipped in examples and templates, and the stock passwords of the parts we run on.
KNOWN_DEFAULT_PREFIXES = ("change-me", "changeme", "change_me", "replace")
KNOWN_DEFAULT_VALUES = frozenset({"guest", "minioadmin", "secret", "password", "admin", "sage"})


def is_known_default(value: str) -> bool:
    """Whether a secret is empty or a value anyone can read in an example, template or manual."""
    folded = value.strip().lower()
    return not folded or folded.startswith(KNOWN_DEFAULT_PREFIXES) or folded in KNOWN_DEFAULT_VALUES


class InsecureConfig(ValueError):
    """Production settings that still hold an empty or well-known secret."""


class ServiceConfig(BaseSettings):
    """Settings every service has; a service subclasses this and sets its own `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="SAGE_", extra="ignore")

    # "production" refuses empty or known default secrets at start; "development" only warns.
    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/sage")
    db_schema: str = "public"
    db_pool_min: int = 1
    db_pool_max: int = 10
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    exchange: str = "sage.events"
    # Where token introspection is asked, and this service's credentials for asking.
    auth_url: str = "http://127.0.0.1:8081"
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    introspection_ttl: float = 10.0
    introspection_negative_ttl: float = 2.0
    introspection_timeout: float = 3.0
    # Largest request body accepted by handlers that read bodies whole (streams are separate).
    max_body_bytes: int = 1024 * 1024
    outbox_poll_seconds: float = 1.0
    # /readyz answers 503 when the outbox relay or a consumer made no progress for this long (a
    # dependency down, a stuck channel); /healthz fails only when a background loop is dead.
    stall_seconds: float = 30.0
    # Browser origins (the SAGE portal) that may call this service (CORS), as a JSON list: exact
    # origins or patterns where `*` stands for host or port characters ("http://localhost:*",
    # "https://*.sagecontinuum.org"); "*" allows any. Empty: CORS off, preflights unanswered.
    cors_origins: list[str] = []

    def unused_secrets(self) -> set[str]:
        """Secret settings this configuration does not use (a service overrides it), by name."""
        return set()

    def secrets(self) -> dict[str, str]:
        """Every secret this configuration holds, by setting name: `SecretStr` fields, the
        entries of `dict[str, SecretStr]` fields (as `name[key]`), and passwords inside URLs."""
        found: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                found[name] = value.get_secret_value()
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, SecretStr):
                        found[f"{name}[{key}]"] = item.get_secret_value()
        for name, url in list(found.items()):
            if "://" in url:
                del found[name]
                password = urlsplit(url).password
                if password is not None:  # no password at all: certificates or peer auth
                    found[name] = password
        return found

    def insecure_secrets(self) -> list[str]:
        """The environment variables whose secrets are empty or known defaults, sorted."""
        prefix = str(self.model_config.get("env_prefix", ""))
        skip = self.unused_secrets()
        return sorted(
            prefix + name.upper()
            for name, value in self.secrets().items()
            if name.partition("[")[0] not in skip and is_known_default(value)
        )

    def check_secrets(self) -> list[str]:
        """Raise `InsecureConfig` in production when a secret is empty or a known default;
        elsewhere return the names of such secrets (for a warning). Never shows a value."""
        bad = self.insecure_secrets()
        if bad and self.environment == "production":
            raise InsecureConfig(
                "refusing to start in production with empty or known default secrets in "
                + ", ".join(bad)
                + ": set each to a long random value (openssl rand -hex 24)"
            )
        return bad
