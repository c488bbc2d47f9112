"""The profiler's application keys: what `app.py` makes and the consumers use."""

from __future__ import annotations

from aiohttp import web

from sage_common.work import Jobs

from .service import Profiler
from .service_profiles import Profiles

PROFILER = web.AppKey("profiler", Profiler)
PROFILES = web.AppKey("profiles", Profiles)
JOBS = web.AppKey("jobs", Jobs)
