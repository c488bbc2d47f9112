"""The storage service's route table, in one place."""

from aiohttp import web

routes: list[web.RouteDef] = []
