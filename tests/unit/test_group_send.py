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


class Refusing:
    """Fails every round that holds a record starting with ``bad``."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.gate = asyncio.Event()

    async def __call__(self, records: list[str]) -> None:
        self.rounds.append(records)
        await self.gate.wait()
        if any(r.startswith("bad") for r in records):
            raise ValueError("MessageSizeTooLarge")


def test_a_failed_round_is_sent_again_request_by_request_so_only_the_bad_one_fails() -> None:
    async def main() -> None:
        sender = Refusing()
        send = GroupSend(sender)
        first = asyncio.create_task(send(["a"]))
        await settle()
        tasks = [asyncio.create_task(send(part)) for part in (["b1", "b2"], ["bad"], ["c"])]
        await settle()
        sender.gate.set()
        await first
        b, bad, c = await asyncio.gather(*tasks, return_exceptions=True)
        assert b is None and c is None
        assert isinstance(bad, ValueError) and "MessageSizeTooLarge" in str(bad)
        assert sender.rounds == [["a"], ["b1", "b2", "bad", "c"], ["b1", "b2"], ["bad"], ["c"]]
        assert await asyncio.gather(send(["d"])) == [None]  # and it goes on

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_round_of_one_that_fails_fails_that_request() -> None:
    async def main() -> None:
        sender = Refusing()
        sender.gate.set()
        send = GroupSend(sender)
        with pytest.raises(ValueError, match="MessageSizeTooLarge"):
            await send(["bad"])
        assert sender.rounds == [["bad"]]

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
