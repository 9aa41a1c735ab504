"""Joining a consumer group: what our consumers send the group coordinator.

aiokafka 0.14 sends one JoinGroup per assignor a consumer offers, the first one
offering only the first assignor. Each change of a member's offered protocols
makes the broker start another rebalance, so a consumer offering two assignors
changes them twice per join; two such members out of step kept failing each
other's SyncGroup (``REBALANCE_IN_PROGRESS``, logged at DEBUG only) for minutes
after a broker restart: the hang of ``make test``'s fault plan with
``BONYCHAT_CONVERSATION_INPUT=gateway`` (docs/runtime.md, "Conversation input").
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors
from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance
from aiokafka.protocol.group import JoinGroupRequest, JoinGroupRequest_v5

from services.composition import open_stores
from services.conversation.entrypoints import kafka as conversation_kafka
from services.conversation.entrypoints.kafka import ConversationService
from services.ingest.entrypoints import kafka as ingest_kafka
from services.runtime.kafka import make_consumer
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.topics import KafkaTuning, Topics
from services.settings import Settings


async def join_requests(colocate: bool) -> list[list[str]]:
    """The protocols offered by each JoinGroup request of one join attempt."""
    consumer = make_consumer("127.0.0.1:9", KafkaTuning(), topic="a", group="g",
                             service="test", colocate=colocate)
    sent: list[list[str]] = []

    class Coordinator:  # what CoordinatorGroupRebalance uses of aiokafka's GroupCoordinator
        _rebalance_timeout_ms = 10_000
        _group_instance_id = None
        member_id = JoinGroupRequest.UNKNOWN_MEMBER_ID

        async def _send_req(self, request: Any) -> Any:
            struct = request.build(JoinGroupRequest_v5)
            sent.append([name for name, _ in struct.group_protocols])
            # the broker is loading the group: aiokafka backs off and joins again later
            return SimpleNamespace(error_code=errors.GroupLoadInProgressError.errno)

    rebalance = CoordinatorGroupRebalance(
        Coordinator(), "g", 1, SimpleNamespace(topics={"a", "b"}, active=True),
        consumer._partition_assignment_strategy, 10_000, 0)
    try:
        assert await rebalance.perform_group_join() is None
    finally:
        await consumer.stop()  # never started: closes its client
    return sent


@pytest.mark.parametrize(("colocate", "protocol"), [(True, "range"), (False, "roundrobin")])
def test_a_join_offers_one_assignor_in_a_single_join_request(colocate: bool,
                                                               protocol: str) -> None:
    sent = asyncio.run(join_requests(colocate))
    assert sent == [[protocol]]


# --- a consumer that failed to start leaves the group ------------------------------------------

class FailingStart:
    """A consumer whose start (the group join) fails, e.g. the broker lost mid-join."""

    def __init__(self) -> None:
        self.stopped = False

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    async def start(self) -> None:
        raise errors.KafkaConnectionError("connection lost while joining the group")

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("service", ["conversation", "ingest"])
def test_a_consumer_that_fails_to_start_is_stopped_before_the_retry(
        service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its coordinator already runs: unstopped, it would stay in the group beside the next one."""
    consumer = FailingStart()
    common: dict[str, Any] = {"bootstrap": "unused", "topics": Topics(), "group_prefix": "t",
                              "tuning": KafkaTuning(), "metrics": RuntimeMetrics(),
                              "health": Health()}

    async def scenario() -> None:
        if service == "conversation":
            monkeypatch.setattr(conversation_kafka, "make_consumer", lambda *a, **k: consumer)
            stores = open_stores(Settings(database_url=str(tmp_path / "events.db")))
            run = ConversationService(events=stores.events, **common).run
        else:
            monkeypatch.setattr(ingest_kafka, "make_consumer", lambda *a, **k: consumer)
            run = ingest_kafka.IngestService(producer=object(), **common).run  # type: ignore[arg-type]
        with pytest.raises(errors.KafkaConnectionError):
            await run(asyncio.Event())
        if service == "conversation":
            stores.close()

    asyncio.run(scenario())
    assert consumer.stopped
