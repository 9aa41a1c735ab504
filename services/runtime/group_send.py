"""The records of concurrent ``POST /v1/events`` requests produced together, a round at a time.

Why: aiokafka holds one pending batch per partition (``send_batch`` waits until
the previous one is drained), and a waiter re-checks its timeout by subtracting
the time since it *first* waited after every wake-up (aiokafka 0.14,
``MessageAccumulator.add_batch``), so the time it may wait shrinks quadratically
with the number of wake-ups. With dozens of requests each sending its own
batches to the same partitions, some got ``KafkaTimeoutError`` after about a
second, far below the producer's 30 s request timeout, and the gateway a 503
(64 concurrent clients posting 50 events each: 576 of 3,853 requests).

:class:`GroupSend` is group commit: one round sends the records of every request
waiting when it starts (in arrival order) as one set of batches, and answers each
of them with its outcome; requests arriving meanwhile form the next round. So at
most one send of the HTTP sink waits on a partition, and batches grow with the
load instead of queueing. A round that fails is sent again one request at a time,
so a request the broker refuses (a record too large, say) fails alone, as before
(records of the failed round already written are written again: duplicates
downstream, de-duplicated); a request refused by the sink's deadline meanwhile is
skipped, and one refused before its round started is dropped, its records never
produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

R = TypeVar("R")


class GroupSend(Generic[R]):
    """Calls ``send`` with the records of every waiting request, one round at a time."""

    def __init__(self, send: Callable[[list[R]], Awaitable[None]]) -> None:
        self._send = send
        self._waiting: list[tuple[Sequence[R], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        #: rounds sent so far
        self.rounds = 0

    async def __call__(self, records: Sequence[R]) -> None:
        """Return once the round that took ``records`` was sent; raise what it raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((records, done))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        await done

    async def _run(self) -> None:
        taken: list[tuple[Sequence[R], asyncio.Future[None]]] = []
        try:
            while self._waiting:
                taken = [(part, f) for part, f in self._waiting if not f.done()]
                self._waiting = []
                if taken:
                    await self._round(taken)
                taken = []
        finally:  # cancelled (the loop is closing): nobody waits forever
            for _, future in (*taken, *self._waiting):
                future.cancel()

    async def _round(self, taken: list[tuple[Sequence[R], asyncio.Future[None]]]) -> None:
        error: Exception | None = None
        try:
            await self._send([record for part, _ in taken for record in part])
        except Exception as exc:
            error = exc
        self.rounds += 1
        if error is not None and len(taken) > 1:  # whose is it? each request again, alone
            for part, future in taken:
                if not future.done():
                    await self._round([(part, future)])
            return
        for _, future in taken:
            if future.done():
                continue  # refused meanwhile
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
