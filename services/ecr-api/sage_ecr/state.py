"""The objects handlers find on the application, each under its own typed key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .service import Ecr
from .service_logs import BuildLogs
from .service_meta import MetaFiles

if TYPE_CHECKING:  # the cache's decorator reads its key from here: imported the other way round
    from .cache import ListingCache

ECR = web.AppKey("ecr", Ecr)
BUILD_LOGS = web.AppKey("build_logs", BuildLogs)
META_FILES = web.AppKey("meta_files", MetaFiles)
LISTING_CACHE: web.AppKey[ListingCache] = web.AppKey("listing_cache")
