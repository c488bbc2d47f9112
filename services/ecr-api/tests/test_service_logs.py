"""Reading a build's log by offset (where it is looked for, what a finished build answers), on
the fake store and a log reader over a dict."""

from __future__ import annotations

import pytest

from sage_common.errors import NotFound
from sage_ecr.s3 import LogObject
from sage_ecr.service import Ecr
from sage_ecr.service_logs import BuildLogs, log_key, read_log
from tests.support.ecr_memory import ALICE, BOB, Given, person

BUCKET = "sage-build-logs"
PATH = ("lab", "counter", "1.0.0")


class DictLogs:
    """A `LogReader` over a dict of object keys, recording what was asked for."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = objects or {}
        self.asked: list[tuple[str, str]] = []

    async def read(self, bucket: str, key: str, offset: int, length: int) -> LogObject | None:
        self.asked.append((bucket, key))
        data = self.objects.get((bucket, key))
        if data is None:
            return None
        return LogObject(data[offset : offset + length], len(data), False)

    async def close(self) -> None:
        pass


async def test_a_running_build_is_read_from_where_the_builder_writes_it(given: Given, ecr: Ecr):
    app = await given.submitted()
    key = log_key(*PATH, str(app.build_id))
    logs = BuildLogs(DictLogs({(BUCKET, key): b"step 1\nstep 2\n"}), BUCKET, chunk_bytes=7)

    page = await read_log(ecr, logs, ALICE, *PATH, offset=0)
    rest = await read_log(ecr, logs, ALICE, *PATH, offset=page.next_offset)

    assert (page.data, page.size, page.complete) == (b"step 1\n", 14, False)
    assert (rest.data, rest.next_offset) == (b"step 2\n", 14)


async def test_a_reported_location_outside_the_versions_prefix_is_not_read(given: Given, ecr: Ecr):
    app = await given.submitted()
    reader = DictLogs()
    await given.built(app, log_location=f"s3://{BUCKET}/builds/other/secret/1.0/x.log")

    await read_log(ecr, BuildLogs(reader, BUCKET), ALICE, *PATH, offset=0)

    assert reader.asked == [(BUCKET, log_key(*PATH, str(app.build_id)))]


async def test_a_finished_build_without_a_log_object_answers_its_last_lines(given: Given, ecr: Ecr):
    await given.built(await given.submitted(), log_tail=["compiling", "done"])

    page = await read_log(ecr, BuildLogs(DictLogs(), BUCKET), ALICE, *PATH, offset=0)

    assert (page.data, page.complete) == (b"compiling\ndone\n", True)


async def test_no_build_yet_is_an_empty_finished_page(given: Given, ecr: Ecr):
    newcomer = person("newcomer", approved=False)
    await given.submitted(newcomer)

    page = await read_log(ecr, BuildLogs(DictLogs(), BUCKET), newcomer, *PATH, offset=0)

    assert (page.build_id, page.data, page.complete) == (None, b"", True)


async def test_an_earlier_build_is_read_by_number_and_an_unknown_one_is_404(given: Given, ecr: Ecr):
    first = await given.submitted()
    await given.built(first)
    logs = BuildLogs(DictLogs(), BUCKET)

    page = await read_log(ecr, logs, ALICE, *PATH, offset=0, build_number=1)
    assert page.build_id == str(first.build_id)
    with pytest.raises(NotFound, match="has no build 7"):
        await read_log(ecr, logs, ALICE, *PATH, offset=0, build_number=7)
    with pytest.raises(NotFound):
        await read_log(ecr, logs, BOB, *PATH, offset=0)
