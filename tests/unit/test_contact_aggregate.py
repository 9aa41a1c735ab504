"""The contact aggregate used directly: ids, rejection texts, state and edge moments.

Written against the survivors of mutation testing (docs/mutation.md). The ids
are derived, never random, so both runtimes and every version of the code must
derive the same ones: a changed derivation would give a stored contact's next
conversation the id of an earlier one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import ContactAbsorbed, ConversationOpened, MessageSent
from services.conversation.application.handlers import survivor
from services.conversation.domain.contact import (
    Contact,
    Expiry,
    aggregate_id,
    merge,
    name_uuid,
)
from services.conversation.domain.errors import (
    AlreadyMerged,
    AlreadyOpen,
    InvalidMerge,
    NoOpenConversation,
    WelcomeNotSupported,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def at(minutes: float, actor_type: str | None = None, actor_id: str | None = None,
       base: datetime = T0) -> Expiry:
    """A source (gateway event) at ``base`` + ``minutes``."""
    moment = base + timedelta(minutes=minutes)
    return Expiry(f"g-{moment.isoformat()}", moment, actor_type, actor_id)


@pytest.mark.parametrize("name", ["", "1", "42", "conversation:1", "ü\x1fé", "x" * 300])
def test_name_uuid_is_uuid5(name: str) -> None:
    """The hot-path uuid5 gives exactly ``str(uuid.uuid5(...))``, from a UUID or its bytes."""
    for namespace in (aggregate_id("ws1", "c1"), aggregate_id("other", "c\x002"),
                      uuid.NAMESPACE_DNS):
        expected = str(uuid.uuid5(namespace, name))
        assert name_uuid(namespace, name) == expected
        assert name_uuid(namespace.bytes, name) == expected


def test_event_and_conversation_ids_are_uuid5_of_the_aggregate() -> None:
    contact = Contact("ws1", "c1")
    for n in range(3):
        contact.receive_message(at(10 * n, "contact"), "whatsapp", None, None)
        contact.close(at(10 * n + 1, "user", "a1"), "user", None, None)
    events = contact.collect()
    space = aggregate_id("ws1", "c1")
    assert space == uuid.uuid5(uuid.UUID("6f0c7a52-2b5e-4f55-9a57-8d6cbb0b6b11"), "ws1\x1fc1")
    assert [e.event_id for e in events] == [str(uuid.uuid5(space, str(v))) for v in range(1, 10)]
    opened = [e for e in events if isinstance(e, ConversationOpened)]
    assert [e.conversation_id for e in opened] == [
        str(uuid.uuid5(space, f"conversation:{n}")) for n in (1, 2, 3)]
    assert contact.conversation_count == 3
    # rebuilt from its events, the next conversation gets the next number
    again = Contact.replay("ws1", "c1", events)
    again.open(at(100, "user"), "user", None, None)
    (fourth,) = again.collect()
    assert fourth.conversation_id == str(uuid.uuid5(space, "conversation:4"))  # type: ignore[attr-defined]
    assert fourth.aggregate_version == 10


def test_rejections_say_what_they_are_about() -> None:
    contact = Contact("ws1", "c1")
    with pytest.raises(NoOpenConversation) as none_open:
        contact.close(at(0, "user"), "user", None, None)
    assert str(none_open.value) == "contact c1 has no open conversation"
    with pytest.raises(WelcomeNotSupported) as welcome:
        contact.welcome(at(0), "sms", None)
    assert str(welcome.value) == "channel sms has no welcome events"
    contact.receive_message(at(0), "whatsapp", None, None)
    with pytest.raises(AlreadyOpen) as already:
        contact.open(at(1, "user"), "user", None, None)
    assert str(already.value) == f"conversation {contact.open_conversation_id} is open"
    with pytest.raises(InvalidMerge) as itself:
        merge(contact, Contact("ws1", "c1"), at(2))
    assert str(itself.value) == "c1 cannot be merged into itself"
    secondary = Contact("ws1", "c2")
    merge(contact, secondary, at(3))
    with pytest.raises(AlreadyMerged) as merged:
        merge(Contact("ws1", "c3"), secondary, at(4))
    assert str(merged.value) == "c2 was merged into c1"


def test_a_recontact_within_a_day_of_year_one() -> None:
    """``opened_at`` - 24 h is before year 1: the window starts at the first closing."""
    year_one = datetime(1, 1, 1, tzinfo=UTC)
    contact = Contact("ws1", "c1")
    contact.receive_message(at(0, base=year_one), "whatsapp", None, None)
    contact.close(at(60, "user", base=year_one), "user", None, None)
    assert contact.is_recontact(year_one + timedelta(hours=2))
    assert not contact.is_recontact(year_one + timedelta(minutes=30))  # before the closing
    contact.receive_message(at(90, base=year_one), "whatsapp", None, None)
    contact.close(at(180, "user", base=year_one), "user", None, None)
    assert contact.is_recontact(year_one + timedelta(minutes=120))  # between the two
    contact.open(at(240, "user", base=year_one), "user", None, None)
    opened = contact.collect()[-1]
    assert isinstance(opened, ConversationOpened) and opened.recontact


def test_an_outbound_message_without_an_actor_counts_as_a_human_reply() -> None:
    """A command that names no actor is a user's reply (the envelope requires one)."""
    contact = Contact("ws1", "c1")
    contact.receive_message(at(0, "contact"), "whatsapp", None, None)
    contact.send_message(at(1))
    sent = contact.collect()[-1]
    assert isinstance(sent, MessageSent)
    assert (sent.actor_type, sent.actor_id, sent.first_response) == ("user", None, True)


def test_first_response_flags_follow_the_conversation() -> None:
    """``received``/``responded``: what decides a MessageSent's first_response."""
    contact = Contact("ws1", "c1")
    assert (contact.received, contact.responded) == (False, False)
    contact.open(at(0, "user"), "user", "sms", None)
    assert (contact.received, contact.responded) == (False, False)
    contact.send_message(at(1, "user"))  # before any inbound message: not a response
    assert (contact.received, contact.responded) == (False, False)
    contact.receive_message(at(2), "sms", None, None)
    assert (contact.received, contact.responded) == (True, False)
    contact.send_message(at(3, "automation"))
    assert (contact.received, contact.responded) == (True, False)
    contact.send_message(at(4, "user"))
    assert (contact.received, contact.responded) == (True, True)
    contact.close(at(5, "user"), "user", None, None)
    contact.open(at(6, "user"), "user", None, None)
    assert (contact.received, contact.responded) == (False, False)
    firsts = [e.first_response for e in contact.collect() if isinstance(e, MessageSent)]
    assert firsts == [False, False, True]
    fresh = Contact.replay("ws1", "c1", [])
    assert (fresh.received, fresh.responded, fresh.version) == (False, False, 0)


def test_the_primary_absorbs_the_secondarys_closing_times() -> None:
    """A merged secondary's closings count for the primary's re-contacts (§6.5)."""
    primary, secondary = Contact("ws1", "p"), Contact("ws1", "s")
    secondary.receive_message(at(0), "whatsapp", None, None)
    secondary.close(at(10, "user"), "user", None, None)
    secondary.receive_message(at(20), "whatsapp", None, None)  # still open: closed by merge
    merge(primary, secondary, at(30))
    absorbed = primary.collect()[-1]
    assert isinstance(absorbed, ContactAbsorbed)
    assert absorbed.closed_at == (T0 + timedelta(minutes=10),)
    assert primary.closed_times == [T0 + timedelta(minutes=10)]
    primary.receive_message(at(40), "whatsapp", None, None)
    opened = primary.collect()[0]
    assert isinstance(opened, ConversationOpened) and opened.recontact
    # rebuilt from the stored events, the primary sees the same history
    assert Contact.replay("ws1", "p", [absorbed]).closed_times == [T0 + timedelta(minutes=10)]


class _Chain:
    """Contacts c0 -> c1 -> ... -> c{length} merged into each other."""

    def __init__(self, length: int) -> None:
        self.contacts = {f"c{i}": Contact("ws1", f"c{i}") for i in range(length + 1)}
        for i in range(length):
            self.contacts[f"c{i}"].merged_into = f"c{i + 1}"

    def get(self, workspace_id: str, contact_id: str) -> Contact:
        return self.contacts[contact_id]

    def inactivity_timeout(self, workspace_id: str) -> int | None:
        return None


def test_a_merge_chain_of_10000_hops_is_followed_and_one_more_is_an_error() -> None:
    assert survivor(_Chain(10_000), "ws1", "c0").contact_id == "c10000"
    with pytest.raises(RuntimeError) as info:
        survivor(_Chain(10_001), "ws1", "c0")
    assert str(info.value) == "merge chain too long at c10001"
