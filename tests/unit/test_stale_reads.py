"""Two unit-of-work copies on one store: a decision read on a stale cached aggregate is redone.

In the Kafka runtime a merge is decided by the copy that owns the primary's
partition, and it writes to the secondary, whose partition another copy owns
and caches. A rejection decided on that stale cache writes nothing a version
check could refuse, so a commit also names the aggregates its decisions only
read, with the version they had; the store refuses the commit if one moved
(the store side of that is in the store contract, ``tests/store_contract.py``,
which the fake passes too), and the unit of work decides the batch again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from fakes import FakeEventStore

from schemas.events import DomainEvent
from services.conversation.adapters.store_sqlite import read_by
from services.conversation.application.ports import (
    DeadLetter,
    EncodedBatch,
    Outcome,
    Position,
)
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.conversation.domain.contact import aggregate_id
from services.ingest.domain.normalise import parse
from tests.unit.harness import ev, line, merge


def items(*envelopes: dict[str, object]) -> list[object]:
    return [parse(line(e)) for e in envelopes]


class RecordingStore(FakeEventStore):
    """Remembers the read set of every commit and counts refused ones."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[dict[uuid.UUID, int]] = []

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None, *,
               originators: Sequence[uuid.UUID] | None = None) -> list[int]:
        self.reads.append(dict(read or {}))
        return super().commit(events, outcomes, dead_letters, position, read,
                              originators=originators)


def test_a_rejection_on_a_contact_merged_meanwhile_is_decided_again() -> None:
    store = RecordingStore()
    owner_of_p, owner_of_q = BatchUnitOfWork(store), BatchUnitOfWork(store)
    # p's owner has p cached: p's conversation was opened and closed
    owner_of_p.process(items(ev("message.received", contact="p", t=0),  # type: ignore[arg-type]
                             ev("conversation.close", contact="p", t=1)))
    # q's owner merges p into q, which has a conversation open
    owner_of_q.process(items(ev("message.received", contact="q", t=2),  # type: ignore[arg-type]
                             merge("q", "p", t=3)))
    # p's owner still sees p unmerged, with nothing open: "no open conversation"
    result = owner_of_p.process(items(ev("conversation.close", contact="p", t=4)))  # type: ignore[arg-type]
    # the store refused that decision once (p moved), and it was decided again:
    # p lives on as q, whose conversation is open, so the close applies to q
    assert store.conflicts == 1
    assert result.accepted == 1 and not result.rejected
    closed = [e for e in store.load(aggregate_id("ws1", "q"))
              if type(e).__name__ == "ConversationClosed"]
    assert len(closed) == 1


def test_a_commit_names_what_its_batch_read_without_writing() -> None:
    store = RecordingStore()
    uow = BatchUnitOfWork(store)
    uow.process(items(ev("message.received", contact="p", t=0),  # type: ignore[arg-type]
                      ev("conversation.close", contact="p", t=1)))
    # p has nothing open: the close is rejected and writes nothing, but was read
    # at version 3; q is written (opened, received), so its version guards it
    result = uow.process(items(ev("conversation.close", contact="p", t=2),  # type: ignore[arg-type]
                               ev("message.received", contact="q", t=3)))
    assert dict(result.rejected) == {"no_open_conversation": 1} and result.accepted == 1
    assert store.reads[-1] == {aggregate_id("ws1", "p"): 3}


def test_the_writer_checks_only_what_its_group_reads_and_does_not_write() -> None:
    group = [EncodedBatch([("a" * 32, 6, "MessageSent", b"{}")], [], [], [("b" * 32, 3)]),
             EncodedBatch([], [], [], [("a" * 32, 5), ("c" * 32, 0)])]
    rows = [row for batch in group for row in batch.rows]
    # "a" is written by the group: the unique index guards it, no read check
    assert read_by(group, rows) == {"b" * 32: 3, "c" * 32: 0}
