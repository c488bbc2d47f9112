"""The builder's application keys: what `app.py` makes and the handlers and consumers use."""

from __future__ import annotations

from aiohttp import web

from sage_common.work import Jobs

from .service import Builder
from .service_builds import Builds
from .service_images import ImageDeletions

BUILDER = web.AppKey("builder", Builder)
BUILDS = web.AppKey("builds", Builds)
JOBS = web.AppKey("jobs", Jobs)
DELETIONS = web.AppKey("image_deletions", ImageDeletions)
