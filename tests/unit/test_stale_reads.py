"""Two processors on one store: a decision read on a stale cached aggregate is redone.

In the Kafka runtime a merge is decided by the copy that owns the primary's
partition, and it writes to the secondary, whose partition another copy owns
and caches. A rejection decided on that stale cache writes nothing a version
check could refuse, so a commit also names the aggregates its decisions only
read, with the version they had; the store refuses the commit if one moved.
"""

from __future__ import annotations

from fakes import FakeEventStore

from services.bulk_import.writer import WriteBatch, _read_by
from services.conversation.application.ports import ConcurrencyConflict
from services.conversation.application.processor import BatchProcessor
from services.conversation.domain.contact import aggregate_id
from services.ingest.domain.normalise import parse

from .harness import ev, line, merge


def items(*envelopes: dict[str, object]) -> list[object]:
    return [parse(line(e)) for e in envelopes]


def test_a_rejection_on_a_contact_merged_meanwhile_is_decided_again() -> None:
    store = FakeEventStore()
    owner_of_p, owner_of_q = BatchProcessor(store), BatchProcessor(store)
    # p's owner has p cached: p's conversation was opened and closed
    owner_of_p.process(items(ev("message.received", contact="p", t=0),  # type: ignore[arg-type]
                             ev("conversation.close", contact="p", t=1)))
    # q's owner merges p into q, which has a conversation open
    owner_of_q.process(items(ev("message.received", contact="q", t=2),  # type: ignore[arg-type]
                             merge("q", "p", t=3)))
    # p's owner still sees p unmerged, with nothing open: "no open conversation"
    result = owner_of_p.process(items(ev("conversation.close", contact="p", t=4)))  # type: ignore[arg-type]
    # but p lives on as q, whose conversation is open: the close applies to q
    assert result.accepted == 1 and not result.rejected
    closed = [e for e in store.load(aggregate_id("ws1", "q"))
              if type(e).__name__ == "ConversationClosed"]
    assert len(closed) == 1


def test_a_commit_is_refused_when_an_aggregate_it_only_read_moved() -> None:
    store = FakeEventStore()
    BatchProcessor(store).process(items(ev("message.received", contact="p")))  # type: ignore[arg-type]
    p = aggregate_id("ws1", "p")
    store.commit([], [], [], None, read={p: 2})  # as read: accepted
    try:
        store.commit([], [], [], None, read={p: 1})
    except ConcurrencyConflict:
        pass
    else:
        raise AssertionError("a moved aggregate was not refused")
    store.commit([], [], [], None, read={aggregate_id("ws1", "never"): 0})  # none yet: accepted


def test_the_writer_checks_only_what_its_group_reads_and_does_not_write() -> None:
    group = [WriteBatch(1, [("a" * 32, 6, "MessageSent", b"{}")], [], [], [("b" * 32, 3)]),
             WriteBatch(2, [], [], [], [("a" * 32, 5), ("c" * 32, 0)])]
    rows = [row for batch in group for row in batch.rows]
    # "a" is written by the group: the unique index guards it, no read check
    assert _read_by(group, rows) == {"b" * 32: 3, "c" * 32: 0}
