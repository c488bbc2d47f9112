"""The builder service's aiohttp application."""

from pathlib import Path

from aiohttp import web
from sage_common.web import create_service_app

from .config import Config
from .routes import routes

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(config: Config) -> web.Application:
    return create_service_app("builder", config, routes=routes, migrations=MIGRATIONS)
