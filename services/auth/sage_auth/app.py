"""The auth service's aiohttp application: the common frame, checking tokens locally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from sage_common.supervise import Supervised
from sage_common.web import POOL, create_service_app, supervise

from .config import Config
from .introspect import LocalIntrospector
from .oidc import OidcProvider
from .routes import SCOPES, routes
from .service_login import Login
from .service_registry import AdminAndBuilderPolicy, RegistryPolicy
from .service_registry_ecr import EcrRegistryPolicy
from .signing import Signer
from .state import AUTH_CONFIG, LOCAL, LOGIN, POLICY, SIGNER, STORE
from .store import Store
from .store_login import LoginStore

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(config: Config, *, registry_policy: RegistryPolicy | None = None) -> web.Application:
    """The auth service; `registry_policy` decides registry access (default: from the config)."""
    local = LocalIntrospector(config)
    app = create_service_app(
        "auth",
        config,
        routes=routes,
        scopes=SCOPES,  # auth:admin and registry are weighed by the service itself
        migrations=MIGRATIONS,
        introspector=local,
    )
    app[AUTH_CONFIG] = config
    app[LOCAL] = local
    app[SIGNER] = Signer.from_dir(config.key_dir)
    app[POLICY] = registry_policy or make_registry_policy(config)
    app.cleanup_ctx.append(_store_context)
    app.on_cleanup.append(_close_policy)
    return app


def make_registry_policy(config: Config) -> RegistryPolicy:
    """The ECR API decides, unless the config says "local" or names no ECR."""
    if config.registry_policy == "local" or not config.ecr_url:
        return AdminAndBuilderPolicy()
    return EcrRegistryPolicy(
        config.ecr_url,
        config.client_id,
        config.client_secret.get_secret_value(),
        timeout=config.ecr_timeout,
    )


async def _close_policy(app: web.Application) -> None:
    close = getattr(app[POLICY], "close", None)
    if close is not None:
        await close()


async def _store_context(app: web.Application) -> AsyncIterator[None]:
    """Runs after the pool is open: the store, token-use batching and the login flow."""
    config, local = app[AUTH_CONFIG], app[LOCAL]
    store = Store(app[POOL])
    app[STORE] = store
    local.bind(store)
    usage = supervise(
        app,
        Supervised(
            "auth-token-usage", lambda: local.usage.run(store, config.token_usage_flush_seconds)
        ),
    )
    provider = None
    if config.login_enabled:
        provider = OidcProvider(
            config.oidc_issuer,
            config.oidc_client_id,
            config.oidc_client_secret.get_secret_value(),
            config.redirect_uri,
            scopes=config.oidc_scopes,
            timeout=config.oidc_timeout,
        )
        app[LOGIN] = Login(
            LoginStore(store),
            provider,
            state_seconds=config.login_state_seconds,
            session_hours=config.session_hours,
            return_hosts=frozenset({urlsplit(config.public_url).hostname or ""} - {""}),
            cookie_domain=config.cookie_domain,
        )
    yield
    await usage.stop()
    if provider is not None:
        await provider.close()
