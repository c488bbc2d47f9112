"""The concurrency limit and cancels of the work on one node (`sage_common.work.Jobs`)."""

from __future__ import annotations

import asyncio

from sage_common.work import Jobs


async def test_builds_beyond_the_limit_wait_for_a_slot():
    jobs = Jobs(None, concurrency=1)  # type: ignore[arg-type] - no polling here
    order: list[str] = []
    release = asyncio.Event()

    async def build(name: str) -> None:
        with jobs.register(name, "ns/app:1") as job:
            async with jobs.slot(job):
                order.append(f"start {name}")
                if name == "first":
                    await release.wait()
                order.append(f"end {name}")

    first = asyncio.create_task(build("first"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(build("second"))
    await asyncio.sleep(0.01)
    assert order == ["start first"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["start first", "end first", "start second", "end second"]


async def test_a_build_cancelled_while_waiting_goes_on_without_a_slot():
    jobs = Jobs(None, concurrency=1)  # type: ignore[arg-type]
    hold = asyncio.Event()

    async def holder() -> None:
        with jobs.register("holder", "a") as job:
            async with jobs.slot(job):
                await hold.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    with jobs.register("waiting", "a") as job:
        waiter = asyncio.create_task(_enter(jobs, job))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        assert jobs.cancel("waiting", "cancelled by bob")
        await asyncio.wait_for(waiter, 1)
        assert job.reason == "cancelled by bob"
    assert not jobs.cancel("waiting", "again")  # no longer registered
    hold.set()
    await task


async def _enter(jobs: Jobs, job) -> None:
    async with jobs.slot(job):
        pass


async def test_the_cancel_poll_rides_out_a_connection_lost_mid_restart():
    import asyncpg

    class Flaky(Jobs):
        def __init__(self) -> None:
            super().__init__(None, concurrency=1, poll_seconds=0.001)  # type: ignore[arg-type]
            self.failures = [asyncpg.InternalClientError("no connection"), ConnectionResetError()]
            self.polled = asyncio.Event()

        async def poll_once(self) -> None:
            if self.failures:
                raise self.failures.pop(0)
            self.polled.set()

    jobs = Flaky()
    task = asyncio.create_task(jobs._poll())
    try:
        await asyncio.wait_for(jobs.polled.wait(), 1)
        await asyncio.sleep(0.01)
        assert not task.done()  # the loop went on; it was never left to its supervisor
        assert jobs.loop.last_error is None  # a good pass since
    finally:
        task.cancel()
