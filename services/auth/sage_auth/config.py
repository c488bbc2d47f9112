"""Configuration of the auth service, from `SAGE_AUTH_*` environment variables."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_AUTH_", extra="ignore")

    port: int = 8081
    db_schema: str = "auth"
    # Small bodies only: JSON documents and RFC 7662 forms.
    max_body_bytes: int = 64 * 1024

    # The services allowed to call token_info: client_id -> secret
    # (JSON in SAGE_AUTH_SERVICE_CLIENTS).
    service_clients: dict[str, SecretStr] = {}

    # Where users reach this system (the gateway); used for the OIDC redirect and the login page.
    public_url: str = "http://localhost:8080"

    # User tokens.
    token_default_days: int = 90
    token_max_days: int = 3650
    # How long a token's last use may lag behind in the database (written in batches).
    token_usage_flush_seconds: float = 30.0

    # Registry tokens (Docker registry v2 token protocol), signed with the key pair in key_dir.
    key_dir: str = "var/auth-keys"
    registry_service: str = "sage-registry"
    registry_issuer: str = "sage-auth"
    registry_token_seconds: int = 300
    # Who gets which registry actions: "ecr" asks the ECR API at ecr_url (with this service's own
    # client_id/client_secret, which must also be in service_clients); "local" (or an empty
    # ecr_url) lets only admins, the builder (push, pull, delete) and the profiler (pull) in.
    registry_policy: Literal["ecr", "local"] = "ecr"
    ecr_url: str = "http://127.0.0.1:8082"
    ecr_timeout: float = 3.0
    client_id: str = "auth"

    # Institutional login (OpenID Connect, code flow + PKCE); off while oidc_issuer is empty.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_redirect_uri: str = ""  # default: public_url + /auth/callback
    oidc_scopes: str = "openid email profile"
    oidc_timeout: float = 10.0
    login_state_seconds: int = 600
    session_hours: int = 12
    # The domain of the portal's cookies (sage_token, sage_username), e.g. ".example.org" so that
    # a portal on portal.example.org reads what auth on sage.example.org set; empty: this host only.
    cookie_domain: str = ""

    @field_validator("cookie_domain")
    @classmethod
    def _cookie_domain_is_a_domain(cls, value: str, info: ValidationInfo) -> str:
        """A browser drops cookies for a domain that is not this host's own or a parent of it."""
        if not value:
            return value
        domain = value.lower().lstrip(".")
        if not _DOMAIN_RE.match(domain):
            raise ValueError("cookie_domain must be a DNS name such as .example.org")
        host = (urlsplit(str(info.data.get("public_url", ""))).hostname or "").lower()
        if host != domain and not host.endswith("." + domain):
            raise ValueError(f"cookie_domain {value} does not cover the public URL's host {host}")
        return value

    @model_validator(mode="after")
    def _own_secret_is_a_service_client(self) -> Config:
        """The ECR checks this service's own secret by asking it back: make sure it is known."""
        if self.client_id and self.client_secret.get_secret_value():
            self.service_clients.setdefault(self.client_id, self.client_secret)
        return self

    @property
    def login_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def redirect_uri(self) -> str:
        return self.oidc_redirect_uri or self.public_url.rstrip("/") + "/auth/callback"

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure unless this is a development system on http://localhost."""
        url = urlsplit(self.public_url)
        return not (url.scheme == "http" and url.hostname in _LOOPBACK)

    def unused_secrets(self) -> set[str]:
        # The auth service publishes and consumes no events: it holds no broker account.
        return {"amqp_url"} if self.login_enabled else {"amqp_url", "oidc_client_secret"}
