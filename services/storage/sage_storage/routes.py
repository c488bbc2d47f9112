"""The storage service's route table, in one place: the SAGE storage API under /api/v1/objects."""

from aiohttp import web

from sage_common.scopes import ScopeTable

from . import handlers, handlers_objects

READ = "storage:read"  # list, show and download what the caller may read
USE = "storage"  # also create, change and delete buckets, objects and grants
ADMIN = "storage:admin"  # also an administrator's powers, for users who are administrators

BUCKETS = "/api/v1/objects"
BUCKET = "/api/v1/objects/{bucket}"
OBJECT = "/api/v1/objects/{bucket}/{key:.*}"

routes: list[web.RouteDef] = [
    web.post(BUCKETS, handlers.create_bucket),
    web.post(BUCKETS + "/", handlers.create_bucket),
    web.get(BUCKETS, handlers.list_buckets),
    web.get(BUCKETS + "/", handlers.list_buckets),
    web.get(BUCKET, handlers.show_bucket),
    web.patch(BUCKET, handlers.update_bucket),
    web.put(BUCKET, handlers.add_grant),
    web.delete(BUCKET, handlers.delete_bucket),
    web.get(OBJECT, handlers_objects.get),  # HEAD too: headers of the object, no body
    web.put(OBJECT, handlers_objects.upload),
    web.delete(OBJECT, handlers_objects.delete),
]

# The scope a token needs on each route (sage_common.scopes); a route not here refuses every token.
SCOPES: ScopeTable = {
    ("POST", BUCKETS): USE,
    ("GET", BUCKETS): READ,
    ("GET", BUCKET): READ,
    ("PATCH", BUCKET): USE,
    ("PUT", BUCKET): USE,
    ("DELETE", BUCKET): USE,
    ("GET", OBJECT): READ,
    ("PUT", OBJECT): USE,
    ("DELETE", OBJECT): USE,
}
