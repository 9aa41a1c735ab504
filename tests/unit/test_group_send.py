"""GroupSend: concurrent requests' records go out together, a round at a time."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.group_send import GroupSend


class Sender:
    """Records every round; each round waits until the test releases it."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, records: list[str]) -> None:
        self.rounds.append(records)
        await self.release.wait()
        self.release.clear()
        if self.fail is not None:
            raise self.fail


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_requests_arriving_during_a_round_form_the_next_one_in_arrival_order() -> None:
    async def main() -> None:
        sender = Sender()
        send = GroupSend(sender)
        first = asyncio.create_task(send(["a1", "a2"]))
        await settle()
        later = [asyncio.create_task(send([f"{n}1", f"{n}2"])) for n in "bcd"]
        await settle()
        assert sender.rounds == [["a1", "a2"]]  # the others wait for the round in flight
        assert not any(t.done() for t in (first, *later))
        sender.release.set()
        await first
        await settle()
        assert sender.rounds[1] == ["b1", "b2", "c1", "c2", "d1", "d2"]
        assert not any(t.done() for t in later)  # answered only when their round is sent
        sender.release.set()
        await asyncio.gather(*later)
        assert send.rounds == 2

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_failed_round_fails_each_of_its_requests_and_the_next_round_still_runs() -> None:
    async def main() -> None:
        sender = Sender()
        send = GroupSend(sender)
        first = asyncio.create_task(send(["a"]))
        await settle()
        doomed = [asyncio.create_task(send([n])) for n in "bc"]
        await settle()
        sender.release.set()
        await first
        await settle()
        sender.fail = ConnectionError("broker gone")
        sender.release.set()
        for task in doomed:
            with pytest.raises(ConnectionError, match="broker gone"):
                await task
        sender.fail = None
        after = asyncio.create_task(send(["d"]))
        await settle()
        sender.release.set()
        await after
        assert sender.rounds == [["a"], ["b", "c"], ["d"]]

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_request_refused_before_its_round_started_is_never_sent() -> None:
    async def main() -> None:
        sender = Sender()
        send = GroupSend(sender)
        first = asyncio.create_task(send(["a"]))
        await settle()
        refused = asyncio.create_task(send(["b"]))
        kept = asyncio.create_task(send(["c"]))
        await settle()
        refused.cancel()  # the sink's deadline passed: the gateway got 503
        await settle()
        sender.release.set()
        await first
        await settle()
        sender.release.set()
        await kept
        assert sender.rounds == [["a"], ["c"]]
        assert refused.cancelled()

    asyncio.run(asyncio.wait_for(main(), 10))
