"""The storage service's application keys: what `app.py` makes and the handlers use."""

from __future__ import annotations

from aiohttp import web

from .service import Storage

STORAGE = web.AppKey("storage", Storage)
