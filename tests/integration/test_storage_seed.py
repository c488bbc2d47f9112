"""The seed's upload example, verbatim in shape, with curl against the storage service.

    curl -X PUT localhost:8080/api/v1/objects/<bucket-id>/ -H "Authorization: sage <token>"
         -F 'file=@camera_picture1.jpg'
      -> {"bucket-id": "<bucket-id>", "key": "/camera_picture1.jpg"}

(Through the gateway on 8080 the same is checked against the running system; here the storage
service answers directly.) Also: a bad Authorization header is 401, an empty-key DELETE is 400.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.auth import MakeUser
from tests.fixtures.s3 import RunningStorage

CURL = shutil.which("curl")


async def curl(*args: str) -> str:
    """curl's output; run beside the event loop, which serves the storage service itself."""
    assert CURL is not None
    proc = await asyncio.create_subprocess_exec(
        CURL, "-s", "--max-time", "60", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"curl exited with {proc.returncode}"
    return out.decode()


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_seed_curl_upload_answers_bucket_id_and_key(
    storage_server: RunningStorage,
    make_user: MakeUser,
    unique: str,
    tmp_path: Path,
) -> None:
    token = await make_user(f"seed{unique}")
    url = storage_server.url
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/api/v1/objects",
            params={"type": "training-data", "name": "camera7"},
            headers={"Authorization": f"sage {token}"},
        ) as r,
    ):
        bucket = (await r.json())["id"]
    picture = tmp_path / "camera_picture1.jpg"
    picture.write_bytes(os.urandom(300_000))
    answer = await curl(
        "-X",
        "PUT",
        f"{url}/api/v1/objects/{bucket}/",
        "-H",
        f"Authorization: sage {token}",
        "-F",
        f"file=@{picture}",
    )
    assert json.loads(answer) == {"bucket-id": bucket, "key": "/camera_picture1.jpg"}
    back = tmp_path / "back.jpg"
    await curl(
        "-o",
        str(back),
        f"{url}/api/v1/objects/{bucket}/camera_picture1.jpg",
        "-H",
        f"Authorization: sage {token}",
    )
    assert back.read_bytes() == picture.read_bytes()

    async def status(*args: str) -> str:
        return await curl("-o", "/dev/null", "-w", "%{http_code}", *args)

    assert await status(f"{url}/api/v1/objects/{bucket}", "-H", "Authorization: garbage") == "401"
    assert (
        await status(
            "-X", "DELETE", f"{url}/api/v1/objects/{bucket}/", "-H", f"Authorization: sage {token}"
        )
        == "400"
    )
    owner = f"Authorization: sage {token}"
    assert await status(f"{url}/api/v1/objects/{bucket}", "-H", owner) == "200"
