"""The base of every service's configuration: one pydantic-settings object, env-prefixed.

Secrets are `SecretStr`, so they print as `**********` in logs, reprs and tracebacks.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceConfig(BaseSettings):
    """Settings every service has; a service subclasses this and sets its own `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="SAGE_", extra="ignore")

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
    # Browser origins (the SAGE portal) that may call this service (CORS), as a JSON list: exact
    # origins or patterns where `*` stands for host or port characters ("http://localhost:*",
    # "https://*.sagecontinuum.org"); "*" allows any. Empty: CORS off, preflights unanswered.
    cors_origins: list[str] = []
