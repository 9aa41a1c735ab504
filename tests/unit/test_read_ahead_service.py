"""The conversation service holding full fetches and reading them ahead (issue 13).

Under a backlog each full fetch is held for one round: its decode and store read
run on a thread of their own while the previous fetch is decided
(``committing.BatchCommitting._step``). Here every fetch is full (two records,
``batch_records`` 2), event ids repeat across consecutive fetches, and a commit
fails midway: each command must be accepted exactly once, with no duplicate
slipping past the dedupe into a conflict, and the position must end at the last
offset.
"""

from __future__ import annotations

import asyncio

from fakes import FakeEventStore

from services.conversation.application.read_ahead import ReadAhead
from services.conversation.entrypoints.kafka import ConversationService
from services.ingest.domain.normalise import Invalid, parse
from services.runtime.fetch import SafeFetch
from services.runtime.observability import Health, RuntimeMetrics
from services.runtime.retry import Backoff
from services.runtime.sinks import command_record
from services.runtime.topics import KafkaTuning
from tests.unit.test_conversation_rebalance import TOPICS, TP, RebalancingConsumer, envelope

#: event numbers in offset order: 1 and 2 repeat in the next fetch (fetches of two)
ORDER = [0, 1, 1, 2, 3, 2, 4, 5, 6, 7, 8, 9]


def values() -> list[bytes]:
    out = []
    for n in ORDER:
        command = parse(envelope(n))
        assert not isinstance(command, Invalid)
        out.append(command_record(command)[1])
    return out


async def consume(store: FakeEventStore, *, fail_commit: int | None, read_ahead: bool = True
                  ) -> tuple[ConversationService, int]:
    service = ConversationService(
        bootstrap="unused", topics=TOPICS, group_prefix="t",
        tuning=KafkaTuning(max_poll_records=2), events=store, metrics=RuntimeMetrics(),
        health=Health(), batch_records=2, read_ahead=read_ahead)
    consumer = RebalancingConsumer(values(), range(0), service, rebalance_at=0)
    service._consumer = consumer  # type: ignore[assignment]
    fetch = SafeFetch(consumer, service="conversation")  # type: ignore[arg-type]
    reads: list[ReadAhead] = []
    prepare = service.uow.prepare_ahead

    def counted(items: list[object]) -> ReadAhead:
        reads.append(prepare(items))  # type: ignore[arg-type]
        return reads[-1]

    service.uow.prepare_ahead = counted  # type: ignore[assignment,method-assign]
    if fail_commit is not None:  # the commit after number `fail_commit` fails
        def fail_next() -> None:
            store.fail_next_commit = ConnectionError("connection lost")
        hooks = [lambda: None] * (fail_commit - 1) + [fail_next]

        def hook() -> None:
            hooks.pop(0)()
            if hooks:
                store.after_next_commit = hook
        store.after_next_commit = hook
    stop = asyncio.Event()
    stop.set()  # the recovery's back-off does not wait
    await service.assigned({TP})
    failures = 0
    last = len(ORDER) - 1
    for _ in range(100):
        try:
            await service._round(consumer, fetch)  # type: ignore[arg-type]
        except ConnectionError as exc:
            failures += 1
            await service._recover(exc, stop, Backoff())
        if service._pending is None and service._held is None \
                and store.position(f"{TP.topic}:0") == last:
            break
    async with service._busy:
        await service._settle()
    return service, len(reads) * 100 + failures


def test_held_fetches_with_repeated_keys_are_each_accepted_once() -> None:
    store = FakeEventStore()
    _, counts = asyncio.run(consume(store, fail_commit=None))
    reads, failures = divmod(counts, 100)
    assert reads >= 4 and failures == 0  # the fetches were read ahead
    assert sorted(key[1] for key in store.outcomes) == sorted(f"e{n}" for n in set(ORDER))
    assert store.conflicts == 0
    assert store.position(f"{TP.topic}:0") == len(ORDER) - 1


def test_a_failed_commit_drops_the_held_fetch_and_resumes_from_storage() -> None:
    store = FakeEventStore()
    service, counts = asyncio.run(consume(store, fail_commit=2))
    assert counts % 100 == 1  # the commit failed once
    assert sorted(key[1] for key in store.outcomes) == sorted(f"e{n}" for n in set(ORDER))
    assert store.conflicts == 0
    assert store.position(f"{TP.topic}:0") == len(ORDER) - 1
    assert service.uow.processor._aheads._open == []  # none left behind


def test_without_read_ahead_nothing_is_held() -> None:
    store = FakeEventStore()
    _, counts = asyncio.run(consume(store, fail_commit=None, read_ahead=False))
    assert counts == 0
    assert sorted(key[1] for key in store.outcomes) == sorted(f"e{n}" for n in set(ORDER))
