"""Auto-close on the Kafka runtime (CONTRACT §6.4): the sweep never bypasses the writer.

Sweep requests (``ExpireInactive`` commands) and the contacts' own events go through
the same command topic, keyed by contact; whichever the partition's owner decides
first closes the conversation, and the other finds nothing to close. Two
conversation copies share the partitions.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from kafka_fixtures import World, publish, wait_until
from test_kafka_runtime import SETTLE

from schemas.commands import ExpireInactive, ReceiveMessage
from schemas.events import ConversationClosed
from services.conversation.application.workspaces import SettingsChange, change_settings
from services.conversation.domain.contact import aggregate_id
from services.runtime.sinks import command_record

pytestmark = pytest.mark.integration
TIMEOUT = 600
# The services also run the live sweep (wall clock, at start and every 30 s). The
# events are dated so that what the test expects is what that sweep would do too:
# a contact's first conversation is already due (the live sweep may close it first,
# at the same time), its second one is not due for ~9 minutes, however slow the run.
# (computed when each test starts, not at collection: the suite runs for minutes)


def t0() -> datetime:
    return (datetime.now(UTC) - timedelta(seconds=TIMEOUT + 120)).replace(second=0,
                                                                          microsecond=0)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
CONTACTS = [f"k{n}" for n in range(40)]


def receive(contact: str, event_id: str, at: datetime) -> ReceiveMessage:
    return ReceiveMessage(workspace_id="ws1", contact_id=contact, event_id=event_id,
                          event_type="message.received", occurred_at=at, channel_type="sms")


def test_sweep_and_the_contacts_own_events_never_both_close(world: World) -> None:
    start = t0()
    with world.opened() as stores:
        change_settings(stores.events, "ws1", {"inactivity_timeout_seconds": TIMEOUT},
                        SettingsChange("test"))
    rng = random.Random(11)
    records = []
    for contact in CONTACTS:
        records.append(command_record(receive(contact, f"{contact}-1", start)))
        racing = [command_record(ExpireInactive(
                      workspace_id="ws1", contact_id=contact, event_id="sweep:x",
                      event_type="sweep", occurred_at=start + timedelta(seconds=TIMEOUT + 5))),
                  command_record(receive(contact, f"{contact}-2",
                                         start + timedelta(seconds=TIMEOUT + 60)))]
        rng.shuffle(racing)
        records.extend(racing)
        # a second sweep after the contact wrote again: nothing is due yet
        records.append(command_record(ExpireInactive(
            workspace_id="ws1", contact_id=contact, event_id="sweep:y", event_type="sweep",
            occurred_at=start + timedelta(seconds=TIMEOUT + 70))))
    publish(world.bootstrap, world.topics.commands, records)
    world.serve("conversation,projections", name="conv-a")
    world.serve("conversation", name="conv-b")
    with world.opened() as stores:
        def settled() -> bool | None:
            rows = stores.read_models.conversations("ws1")
            return len(rows) == 2 * len(CONTACTS) or None

        wait_until(settled, SETTLE, "two conversations per contact")
        rows = stores.read_models.conversations("ws1")
        closed = [r for r in rows if r.closed_us is not None]
        assert len(closed) == len(CONTACTS)
        assert {r.closed_by for r in closed} == {"inactivity"}
        assert {r.public()["closed_at"] for r in closed} == {z(start + timedelta(seconds=TIMEOUT))}
        assert all(r.recontact for r in rows if r.closed_us is None)
        for contact in CONTACTS:
            events = stores.events.load(aggregate_id("ws1", contact))
            closings = Counter(e.conversation_id for e in events
                               if isinstance(e, ConversationClosed))
            assert list(closings.values()) == [1], (contact, events)


def test_serve_sweeps_quiet_conversations(world: World) -> None:
    start = t0()
    with world.opened() as stores:
        change_settings(stores.events, "ws1", {"inactivity_timeout_seconds": 60},
                        SettingsChange("test"))
    publish(world.bootstrap, world.topics.commands,
            [command_record(receive("quiet", "q-1", start))])
    world.serve("conversation,projections", name="sweeper")
    with world.opened() as stores:
        def closed() -> bool | None:
            rows = stores.read_models.conversations("ws1", status="closed")
            return bool(rows) or None

        wait_until(closed, SETTLE, "the serve sweep to close the quiet conversation")
        (row,) = stores.read_models.conversations("ws1")
        assert (row.closed_by, row.public()["closed_at"]) == (
            "inactivity", z(start + timedelta(seconds=60)))
