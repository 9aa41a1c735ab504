"""``decode_stored`` gives what ``decode_event`` gives, for every event class."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import ContactAbsorbed, ConversationClosed, decode_event, encode_event
from schemas.stored import decode_stored

AT = datetime(2026, 10, 1, 8, 40, 50, tzinfo=UTC)
COMMON = {"event_id": "e1", "workspace_id": "ws1", "contact_id": "c1",
          "aggregate_version": 3, "occurred_at": AT, "source_event_id": "g1"}


def test_timestamps_inside_other_fields_come_back_as_datetimes() -> None:
    # ContactAbsorbed carries the secondary's closing times: the aggregate sorts them
    # with datetimes when it is replayed from storage, so text would break replay.
    moments = (datetime(2026, 10, 1, 8, 36, 42, tzinfo=UTC), AT)
    event = ContactAbsorbed(**COMMON, secondary_contact_id="c2", closed_at=moments)
    decoded = decode_stored(encode_event(event))
    assert isinstance(decoded, ContactAbsorbed)
    assert decoded.closed_at == moments
    assert all(isinstance(moment, datetime) for moment in decoded.closed_at)
    assert decoded == decode_event(encode_event(event))


def test_the_fast_path_still_decodes_plain_events_exactly() -> None:
    event = ConversationClosed(**COMMON, conversation_id="k1", closed_by="user",
                               closed_by_actor="u1", summary="done")
    decoded = decode_stored(encode_event(event))
    assert decoded == event
    assert decoded.occurred_at == AT
