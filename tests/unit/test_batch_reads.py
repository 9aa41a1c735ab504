"""What deciding a batch reads from the store: one ``load_many`` for the workspaces'
settings and the uncached contacts, and settings changes seen from the next batch on."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from fakes import FakeEventStore

from schemas.events import DomainEvent
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.application.workspaces import SettingsChange, change_settings
from services.conversation.domain.contact import aggregate_id
from services.conversation.domain.workspace import settings_id
from services.ingest.domain.normalise import parse
from tests.unit.harness import ev, line


def items(*envelopes: dict[str, object]) -> list[object]:
    return [parse(line(e)) for e in envelopes]


class LoadCountingStore(FakeEventStore):
    """Records every ``load_many`` call (its ids) and every single ``load``."""

    def __init__(self) -> None:
        super().__init__()
        self.many: list[set[uuid.UUID]] = []
        self.single = 0

    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        self.many.append(set(originator_ids))
        return super().load_many(originator_ids)

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        self.single += 1
        return super().load(originator_id)


def test_settings_and_uncached_contacts_are_read_in_one_load_many() -> None:
    store = LoadCountingStore()
    uow = BatchUnitOfWork(store)
    uow.process(items(ev("message.received", event_id="e1", contact="c1"),  # type: ignore[arg-type]
                      ev("message.received", event_id="e2", contact="c2", ws="ws2")))
    assert store.many == [{settings_id("ws1"), settings_id("ws2"),
                           aggregate_id("ws1", "c1"), aggregate_id("ws2", "c2")}]
    # cached contacts are not asked again, the settings are (every batch)
    store.many.clear()
    uow.process(items(ev("message.sent", event_id="e3", contact="c1", t=5)))  # type: ignore[arg-type]
    assert store.many == [{settings_id("ws1")}] and store.single == 0


def test_a_settings_change_by_another_writer_applies_from_the_next_batch() -> None:
    store = LoadCountingStore()
    uow = BatchUnitOfWork(store)
    uow.process(items(ev("message.received", event_id="e1", contact="c1", t=0)))  # type: ignore[arg-type]
    assert uow.processor.inactivity_timeout("ws1") is None
    # another process (bonychat workspace set, PUT .../settings) commits a change
    change_settings(store, "ws1", {"inactivity_timeout_seconds": 60},
                    SettingsChange("cli"))
    # the next batch, two hours later for the same contact: the conversation was
    # quiet past the new timeout, so it is closed by inactivity before the event
    result = uow.process(items(ev("message.received", event_id="e2", contact="c1",  # type: ignore[arg-type]
                                  t=7200)))
    assert uow.processor.inactivity_timeout("ws1") == 60
    assert result.expired == 1


class AtOnceStore(LoadCountingStore):
    """A store that answers ``seen`` and ``load_many`` together (as PostgreSQL does)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        self.calls.append("seen")
        return super().seen(keys)

    def seen_and_load(self, keys: Collection[tuple[str, str]],
                      originator_ids: Collection[uuid.UUID]
                      ) -> tuple[set[tuple[str, str]], dict[uuid.UUID, list[DomainEvent]]]:
        self.calls.append("seen_and_load")
        return FakeEventStore.seen(self, keys), FakeEventStore.load_many(self, originator_ids)


def test_a_store_that_can_answers_keys_and_aggregates_in_one_call() -> None:
    store = AtOnceStore()
    BatchUnitOfWork(store).process(items(ev("message.received", event_id="e1", contact="c1")))  # type: ignore[arg-type]
    uow = BatchUnitOfWork(store)  # a fresh process: nothing cached, nothing in flight
    result = uow.process(items(ev("message.received", event_id="e1", contact="c1"),  # type: ignore[arg-type]
                               ev("message.received", event_id="e2", contact="c1", t=3)))
    assert store.calls == ["seen_and_load", "seen_and_load"] and store.many == []
    assert (result.duplicate, result.accepted) == (1, 1)
    # c1 was loaded with its stored events: its next event follows them
    assert [e.aggregate_version for _, e in result.events] == [3]
