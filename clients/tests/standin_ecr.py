"""The ECR part of the stand-in server: submit, list, status with a scripted pipeline, review."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from .standin import NOW, USER, State, problem


def ecr_routes(key: web.AppKey[State]) -> list[web.RouteDef]:
    """The routes, closed over the app key of the shared state."""

    def state(request: web.Request) -> State:
        return request.app[key]

    def app_id(request: web.Request) -> str:
        m = request.match_info
        return f"{m['ns']}/{m['name']}:{m['version']}"

    def found(request: web.Request) -> dict[str, Any]:
        app = state(request).apps.get(app_id(request))
        if app is None:
            raise web.HTTPNotFound(
                text=json.dumps({"detail": "app not found"}),
                content_type="application/problem+json",
            )
        return app

    async def submit(request: web.Request) -> web.Response:
        try:
            spec = yaml.safe_load(await request.read())
        except yaml.YAMLError:
            return problem(422, "the description is not valid YAML")
        ns = spec.get("namespace", request[USER])
        aid = f"{ns}/{spec['name']}:{spec['version']}"
        if aid in state(request).apps:
            return problem(409, f"{aid} exists")
        app = {
            "id": aid,
            "namespace": ns,
            "name": spec["name"],
            "version": spec["version"],
            "description": spec.get("description", ""),
            "source": spec.get("source", {}),
            "owner": request[USER],
            "frozen": False,
            "time_created": NOW,
            "time_last_updated": NOW,
            "state": "submitted",
            "_build_number": 1,
            "_history": [
                {
                    "time": NOW,
                    "from": None,
                    "to": "submitted",
                    "cause": "submitted",
                    "build_number": 1,
                }
            ],
            "_content_type": request.content_type,
        }
        state(request).apps[aid] = app
        return web.json_response(_public(app))

    async def list_apps(request: web.Request) -> web.Response:
        prefix = "/".join(
            p for p in (request.match_info.get("ns"), request.match_info.get("name")) if p
        )
        apps = [_public(a) for k, a in sorted(state(request).apps.items()) if k.startswith(prefix)]
        start = int(request.query.get("continue", "0"))
        limit = int(request.query.get("limit", "100"))
        page = apps[start : start + limit]
        token = str(start + limit) if start + limit < len(apps) else None
        return web.json_response({"pagination": {"continuationToken": token}, "data": page})

    async def show(request: web.Request) -> web.Response:
        return web.json_response(_public(found(request)))

    async def delete(request: web.Request) -> web.Response:
        app = found(request)
        del state(request).apps[app["id"]]
        return web.json_response({"deleted": [app["id"]]})

    def snapshot(app: dict[str, Any]) -> dict[str, Any]:
        return {
            "state": app["state"],
            "build_number": app["_build_number"],
            "history": list(app["_history"]),
        }

    async def status(request: web.Request) -> web.Response:
        app = found(request)
        st = state(request)
        if st.stale_statuses and app.get("_before_rebuild"):
            st.stale_statuses -= 1
            return web.json_response(app["_before_rebuild"])
        if st.pipeline:
            step, cause = st.pipeline.pop(0)
            entry = {
                "time": NOW,
                "from": app["state"],
                "to": step,
                "cause": cause,
                "build_number": app["_build_number"],
            }
            app["state"] = step
            app["_history"].append(entry)
        return web.json_response(snapshot(app))

    async def rebuild(request: web.Request) -> web.Response:
        """As the ECR answers `POST /api/builds/...`: a new build number, the state `submitted`."""
        app = found(request)
        if app["frozen"]:
            return problem(409, f"{app['id']} is published and frozen: submit a new version")
        app["_before_rebuild"] = snapshot(app)
        app["_build_number"] += 1
        entry = {
            "time": NOW,
            "from": app["state"],
            "to": "submitted",
            "cause": "rebuild",
            "build_number": app["_build_number"],
        }
        app["state"] = "submitted"
        app["_history"].append(entry)
        return web.json_response({"build_number": app["_build_number"]})

    async def text_log(request: web.Request) -> web.Response:
        """As the ECR's text form answers: the bytes after `offset`, and the log's headers."""
        st = state(request)
        offset = int(request.query.get("offset", "0"))
        st.text_log_calls.append(offset)
        step = {"log": st.log, "complete": True, "build_id": "b1", "build_number": 1}
        if st.log_steps:
            step = {**step, **(st.log_steps.pop(0) if len(st.log_steps) > 1 else st.log_steps[0])}
        data = step["log"].encode()
        body = data[offset : offset + st.log_chunk_bytes]
        return web.Response(
            body=body,
            content_type="text/plain",
            charset="utf-8",
            headers={
                "X-Build-Complete": "true" if step["complete"] else "false",
                "X-Build-Id": step["build_id"],
                "X-Build-Number": str(step["build_number"]),
                "X-Log-Size": str(len(data)),
            },
        )

    async def logs(request: web.Request) -> web.Response:
        """As the ECR answers: the tail the builder reported, growing until `finished`."""
        found(request)
        st = state(request)
        if st.text_logs and request.query.get("format") == "text":
            return await text_log(request)
        lines = st.log.splitlines()
        shown = min(len(lines), st.log_calls + 1) if st.log_calls_to_finish else len(lines)
        st.log_calls += 1
        finished = st.log_calls > st.log_calls_to_finish
        body = {
            "id": app_id(request),
            "build_number": 1,
            "finished": finished,
            "log_tail": lines[:shown],
            "log_location": "s3://logs/1.txt",
            "error": None,
        }
        return web.json_response(body)

    async def profile(request: web.Request) -> web.Response:
        found(request)
        if state(request).profile is None:
            return problem(404, f"{app_id(request)} has no profile yet (state: building)")
        return web.json_response(state(request).profile)

    async def review(request: web.Request) -> web.Response:
        app = found(request)
        body = await request.json()
        app["state"] = "published" if body["decision"] == "approve" else "rejected"
        app["frozen"] = app["state"] == "published"
        app["_review"] = body
        return web.json_response({"id": app["id"], "state": app["state"]})

    async def namespaces(request: web.Request) -> web.Response:
        return web.json_response({"data": state(request).namespaces})

    async def create_namespace(request: web.Request) -> web.Response:
        body = await request.json()
        ns = {"id": body["id"], "owner_id": request[USER], "type": "user"}
        state(request).namespaces.append(ns)
        return web.json_response(ns)

    async def permissions(request: web.Request) -> web.Response:
        return web.json_response(state(request).ecr_grants.get(request.match_info["res"], []))

    async def change_permission(request: web.Request) -> web.Response:
        body = await request.json()
        state(request).ecr_grants.setdefault(request.match_info["res"], []).append(body)
        return web.json_response(body)

    app_path = "/api/apps/{ns}/{name}/{version}"
    return [
        web.post("/api/submit", submit),
        web.get("/api/apps", list_apps),
        web.get("/api/apps/{ns}", list_apps),
        web.get("/api/apps/{ns}/{name}", list_apps),
        web.get(app_path, show),
        web.delete(app_path, delete),
        web.get(app_path + "/status", status),
        web.get(app_path + "/logs", logs),
        web.get(app_path + "/profile", profile),
        web.post(app_path + "/review", review),
        web.post("/api/builds/{ns}/{name}/{version}", rebuild),
        web.get("/api/namespaces", namespaces),
        web.put("/api/namespaces", create_namespace),
        web.get("/api/permissions/{res:.+}", permissions),
        web.put("/api/permissions/{res:.+}", change_permission),
    ]


def _public(app: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in app.items() if not k.startswith("_")}
