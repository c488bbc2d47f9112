"""The storage service's route table, in one place: the SAGE storage API under /api/v1/objects."""

from aiohttp import web

from . import handlers, transfer

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
    web.get(OBJECT, transfer.get),  # HEAD too: headers of the object, no body
    web.put(OBJECT, transfer.upload),
    web.delete(OBJECT, transfer.delete),
]
