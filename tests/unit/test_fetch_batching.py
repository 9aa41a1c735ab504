"""Batching by time at low load: the fetch settings reach every consumer the services make.

The broker holds ingest's fetches until ``BONYCHAT_KAFKA_FETCH_MIN_BYTES`` are
there or ``BONYCHAT_KAFKA_FETCH_MAX_WAIT_MS`` have passed, the conversation
service's until ``BONYCHAT_KAFKA_COMMANDS_FETCH_MIN_BYTES`` (docs/runtime.md,
"Low load: batching fetches by time"); both build their consumers with
:func:`services.runtime.kafka.make_consumer`.
"""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import cast

import pytest
from aiokafka.consumer.fetcher import Fetcher

from services.conversation.application.ports import EventStore
from services.conversation.entrypoints.kafka import ConversationService
from services.runtime.kafka import IDLE_FETCH_MAX_WAIT_MS, FetchHold, make_consumer
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.topics import KafkaTuning, Topics
from services.settings import Settings


def conversation(tuning: KafkaTuning) -> ConversationService:
    return ConversationService(bootstrap="unused", topics=Topics(), group_prefix="t",
                               tuning=tuning, events=cast(EventStore, SimpleNamespace()),
                               metrics=RuntimeMetrics(), health=Health())


def consumer_fetch_settings(tuning: KafkaTuning) -> tuple[int, int]:
    async def build() -> tuple[int, int]:
        consumer = make_consumer("127.0.0.1:9", tuning, topic="t", group="g", service="test")
        try:
            return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()  # never started: only closes its client

    return asyncio.run(build())


def test_by_default_ingest_waits_for_a_megabyte_or_the_wait_the_conversation_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FETCH_MIN_BYTES", "FETCH_MAX_WAIT_MS", "COMMANDS_FETCH_MIN_BYTES",
                 "COMMANDS_FETCH_MAX_WAIT_MS"):
        monkeypatch.delenv(f"BONYCHAT_KAFKA_{name}", raising=False)
    tuning = KafkaTuning.from_settings(Settings())
    wait = tuning.fetch_max_wait_ms
    # a wait that a publish -> visible p99 of 100 ms can afford on the ingest hop
    assert 0 < wait <= 50
    assert consumer_fetch_settings(tuning) == (1_048_576, wait)  # ingest's consumer
    # the command topic is written once per ingest cycle: fetched as soon as it is,
    # with a long poll that outlasts ingest's cycle (no empty fetch in between)
    commands = consumer_fetch_settings(conversation(tuning).fetch_tuning)
    assert commands[0] == 1 and commands[1] > wait


def test_the_environment_sets_the_fetch_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONYCHAT_KAFKA_FETCH_MIN_BYTES", "1")
    monkeypatch.setenv("BONYCHAT_KAFKA_FETCH_MAX_WAIT_MS", "250")
    monkeypatch.setenv("BONYCHAT_KAFKA_COMMANDS_FETCH_MIN_BYTES", "65536")
    monkeypatch.setenv("BONYCHAT_KAFKA_COMMANDS_FETCH_MAX_WAIT_MS", "30")
    tuning = KafkaTuning.from_settings(Settings())
    assert consumer_fetch_settings(tuning) == (1, 250)
    assert consumer_fetch_settings(conversation(tuning).fetch_tuning) == (65_536, 30)


def test_a_fetch_min_bytes_below_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONYCHAT_KAFKA_FETCH_MIN_BYTES", "0")
    with pytest.raises(ValueError, match="kafka_fetch_min_bytes"):
        Settings()


class _Fetcher:
    def __init__(self) -> None:
        self._fetch_min_bytes = 1_048_576
        self._fetch_max_wait_ms = 25


class _Consumer:
    def __init__(self) -> None:
        self._fetcher = _Fetcher()

    def fetch(self) -> tuple[int, int]:
        return self._fetcher._fetch_min_bytes, self._fetcher._fetch_max_wait_ms


def hold_on(consumer: _Consumer) -> FetchHold:
    return FetchHold(consumer, KafkaTuning(fetch_min_bytes=1_048_576,
                                           fetch_max_wait_ms=25))


def test_fetches_are_held_while_records_flow_and_answered_at_once_when_quiet() -> None:
    consumer = _Consumer()
    hold = hold_on(consumer)
    hold.saw(records=12, waited_ms=200)
    assert consumer.fetch() == (1_048_576, 25)  # held: a few ms' worth per fetch
    hold.saw(records=0, waited_ms=200)  # a whole poll found nothing: the topic is quiet
    assert consumer.fetch() == (1, IDLE_FETCH_MAX_WAIT_MS)  # the first record comes at once
    hold.saw(records=0, waited_ms=200)
    assert consumer.fetch() == (1, IDLE_FETCH_MAX_WAIT_MS)
    hold.saw(records=1, waited_ms=200)  # records again: hold from the next request on
    assert consumer.fetch() == (1_048_576, 25)


def test_a_look_shorter_than_the_wait_does_not_count_as_quiet() -> None:
    consumer = _Consumer()
    hold = hold_on(consumer)
    hold.saw(records=0, waited_ms=0)  # the conversation service's top-up look
    hold.saw(records=0, waited_ms=5)  # its short look while a commit is in flight
    assert consumer.fetch() == (1_048_576, 25)


def test_a_consumer_without_the_fetcher_attributes_stays_held() -> None:
    consumer = SimpleNamespace()  # not started, or another aiokafka
    hold = FetchHold(consumer, KafkaTuning(fetch_min_bytes=1_000))
    hold.saw(records=0, waited_ms=1_000)
    assert hold.holding
    assert not hasattr(consumer, "_fetcher")


def test_aiokafka_builds_each_fetch_request_from_the_values_switched() -> None:
    # FetchHold relies on it: a new aiokafka that copies them elsewhere must fail here
    source = inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms" in source
    assert "self._fetch_min_bytes" in source
