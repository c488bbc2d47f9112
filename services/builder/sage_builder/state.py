"""The builder's application keys: what `app.py` makes and the handlers and consumers use."""

from __future__ import annotations

from aiohttp import web

from sage_common.work import Jobs

from .registry_images import ImageRemover
from .service import Builder
from .service_builds import Builds

BUILDER = web.AppKey("builder", Builder)
BUILDS = web.AppKey("builds", Builds)
JOBS = web.AppKey("jobs", Jobs)
REMOVER = web.AppKey("image_remover", ImageRemover)
