"""The conversation service's batches under a backlog: small first, then doubling.

The first batch after the consumer starts is gathered up to ``FIRST_BATCH_RECORDS``
(the first events are stored soon), each next one up to twice the last limit, up to
``BONYCHAT_KAFKA_BATCH_RECORDS`` (a backlog in large transactions); a restart of the
consumer starts small again. Fetching stops at once when the buffer is empty.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from services.composition import open_stores
from services.conversation.entrypoints.kafka import FIRST_BATCH_RECORDS, ConversationService
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.topics import KafkaTuning, Topics
from services.settings import Settings

TP = TopicPartition(Topics().commands, 0)
POLL = 500


class Backlog:
    """A consumer buffer holding ``size`` records, handed out ``POLL`` at a time."""

    def __init__(self, size: int) -> None:
        self.left = size

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[int]]:
        take = min(self.left, max_records)
        self.left -= take
        return {TP: list(range(take))} if take else {}


def sizes(service: ConversationService, backlog: Backlog, rounds: int) -> list[int]:
    async def run() -> list[int]:
        got = []
        for _ in range(rounds):
            batches = await service._fetch(backlog)  # type: ignore[arg-type]
            got.append(sum(len(r) for r in batches.values()))
        return got
    return asyncio.run(run())


def test_batches_start_small_and_double_up_to_the_setting(tmp_path: Path) -> None:
    stores = open_stores(Settings(database_url=str(tmp_path / "ramp.db")))
    try:
        most = FIRST_BATCH_RECORDS * 8
        service = ConversationService(
            bootstrap="unused", topics=Topics(), group_prefix="t",
            tuning=KafkaTuning(max_poll_records=POLL), events=stores.events,
            metrics=RuntimeMetrics(), health=Health(), batch_records=most)
        backlog = Backlog(10 * most)
        assert sizes(service, backlog, 6) == [FIRST_BATCH_RECORDS * k for k in (1, 2, 4, 8, 8, 8)]
        backlog.left = 1_200  # what is buffered, no more: nothing waits for the limit
        assert sizes(service, backlog, 2) == [1_200, 0]
        service._reset()  # the consumer (re)starts: small again
        backlog.left = 10 * most
        assert sizes(service, backlog, 2) == [FIRST_BATCH_RECORDS, 2 * FIRST_BATCH_RECORDS]
    finally:
        stores.close()


def test_a_setting_below_the_first_batch_is_the_limit_throughout(tmp_path: Path) -> None:
    assert FIRST_BATCH_RECORDS > 3
    stores = open_stores(Settings(database_url=str(tmp_path / "small.db")))
    try:
        service = ConversationService(
            bootstrap="unused", topics=Topics(), group_prefix="t",
            tuning=KafkaTuning(max_poll_records=2), events=stores.events,
            metrics=RuntimeMetrics(), health=Health(), batch_records=3)
        assert sizes(service, Backlog(100), 3) == [4, 4, 4]  # whole polls: up to 3, then one more
    finally:
        stores.close()
