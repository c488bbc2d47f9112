"""Start a service from its `__main__`: JSON logging, then the aiohttp app on the configured port."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from aiohttp import web

from .config import InsecureConfig, ServiceConfig
from .logs import setup_logging


def run_service(
    name: str, config: ServiceConfig, create_app: Callable[[ServiceConfig], web.Application]
) -> None:
    setup_logging(name, config.log_level)
    logging.getLogger(__name__).info(
        "starting", extra={"host": config.host, "port": config.port, "schema": config.db_schema}
    )
    try:
        app = create_app(config)
    except InsecureConfig as exc:
        logging.getLogger(__name__).critical("%s", exc)
        sys.exit(f"{name}: {exc}")
    web.run_app(app, host=config.host, port=config.port, access_log=None, print=None)
