"""The objects handlers find on the application, each under its own typed key."""

from __future__ import annotations

from aiohttp import web

from .config import Config
from .introspect import LocalIntrospector
from .service_login import Login
from .service_registry import RegistryPolicy
from .signing import Signer
from .store import Store

AUTH_CONFIG = web.AppKey("auth_config", Config)
STORE = web.AppKey("auth_store", Store)
LOCAL = web.AppKey("auth_introspector", LocalIntrospector)
SIGNER = web.AppKey("auth_signer", Signer)
POLICY = web.AppKey("auth_registry_policy", RegistryPolicy)  # type: ignore[type-abstract]
LOGIN = web.AppKey("auth_login", Login)
