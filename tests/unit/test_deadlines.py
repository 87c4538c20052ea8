"""api.platform.deadlines: many deadlines on one timer, on a real event loop with short delays."""

from __future__ import annotations

import asyncio

from api.platform.deadlines import Deadlines


def test_each_key_expires_at_its_deadline_unless_discarded_first() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        expired: list[tuple[str, float]] = []
        started = loop.time()
        deadlines: Deadlines[str] = Deadlines(lambda key: expired.append((key, loop.time())))
        deadlines.set("late", started + 0.15)
        deadlines.set("early", started + 0.05)  # earlier than the armed timer: rearmed
        deadlines.set("met", started + 0.10)
        deadlines.discard("met")
        await asyncio.sleep(0.25)
        assert [key for key, _ in expired] == ["early", "late"]
        (_, early_at), (_, late_at) = expired
        assert 0.05 <= early_at - started < 0.1 and 0.15 <= late_at - started < 0.22
        assert len(deadlines) == 0

    asyncio.run(body())


def test_a_new_deadline_replaces_the_old_and_a_new_loop_gets_its_own_timer() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(expired.append)

    async def body() -> None:
        before = len(expired)
        now = asyncio.get_running_loop().time()
        deadlines.set("key", now + 0.02)
        deadlines.set("key", now + 0.08)
        await asyncio.sleep(0.05)
        assert len(expired) == before
        await asyncio.sleep(0.08)
        assert len(expired) == before + 1

    asyncio.run(body())
    asyncio.run(body())  # the first loop's timer is gone with it
    assert expired == ["key", "key"]
