"""``utc_micros`` (the replay's fast path for stored times) equals ``to_micros(fromisoformat)``."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import ConversationOpened, encode_event
from schemas.moments import to_micros, utc_micros
from schemas.stored import trusted_fields


def reference(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return to_micros(moment) if moment.tzinfo is not None else None


@given(st.datetimes(timezones=st.just(UTC)), st.booleans())
def test_the_stored_spellings_give_the_same_microseconds(moment: datetime,
                                                         whole: bool) -> None:
    if whole:
        moment = moment.replace(microsecond=0)
    for text in (moment.isoformat().replace("+00:00", "Z"),
                 moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), moment.strftime("%Y-%m-%dT%H:%M:%SZ")):
        if len(text) in (20, 27):
            assert utc_micros(text) == to_micros(moment.replace(microsecond=0)
                                                 if len(text) == 20 else moment)


@given(st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                     r"(\.[0-9]{6})?[Z+0-9:]{1,6}\Z") | st.text(max_size=30))
def test_other_text_is_left_to_fromisoformat_or_read_the_same(text: str) -> None:
    fast = utc_micros(text)
    assert fast is None or fast == reference(text)


@given(st.datetimes(timezones=st.just(UTC)),
       st.lists(st.text(alphabet="0123456789Zz.:+ 6", max_size=4), max_size=6))
def test_a_minute_already_read_reads_its_other_seconds_the_same(
        moment: datetime, endings: list[str]) -> None:
    """Once a whole-second time of a minute has been read, the others of that minute are
    two lookups (the prefix and ``SSZ``); any other ending still goes the long way."""
    whole = moment.replace(microsecond=0)
    first = whole.isoformat().replace("+00:00", "Z")  # four-digit years, unlike %Y
    assert utc_micros(first) == to_micros(whole)
    prefix = first[:17]
    for second in (0, 7, 59):
        text = prefix + f"{second:02d}Z"
        assert utc_micros(text) == reference(text) == to_micros(whole.replace(second=second))
    for text in (prefix + ending for ending in endings):
        fast = utc_micros(text)
        assert fast is None or fast == reference(text), text


def test_trusted_fields_gives_microseconds_only_for_the_types_asked() -> None:
    event = ConversationOpened(
        event_id="e1", workspace_id="ws", contact_id="c1", aggregate_version=1,
        occurred_at=datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC), source_event_id="s1",
        conversation_id="k1", opened_by="contact", channel_type="email")
    state = encode_event(event)
    as_micros = trusted_fields(state, {"ConversationOpened"})
    as_moment = trusted_fields(state)
    assert as_micros is not None and as_moment is not None
    assert as_micros["occurred_at"] == to_micros(event.occurred_at)
    assert as_moment["occurred_at"] == event.occurred_at
    text = state.decode().replace(".890000Z", ".890000+00:00")  # not the fast spelling
    slow = trusted_fields(text, {"ConversationOpened"})
    assert slow is not None and slow["occurred_at"] == to_micros(event.occurred_at)
