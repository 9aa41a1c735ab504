"""Projecting stored JSON (``apply_stored``) gives exactly the rows of projecting events."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Iterator
from typing import Any

import orjson
import pytest
from fakes import FakeEventStore, FakeReadModelStore

from schemas.events import UPCASTERS, ConversationOpened, decode_event
from services.conversation.application.ports import Position
from services.conversation.application.unit_of_work import BatchUnitOfWork
from services.ingest.domain.normalise import parse
from services.projections.application.projector import ConversationProjection
from services.projections.domain import rows
from services.projections.domain.rows import Item, trusted_payload
from tests.unit.harness import ev, line, merge

KINDS = ("message.received", "message.received", "message.sent", "message.sent", "welcome",
         "conversation.open", "conversation.close", "conversation.assign",
         "dialogflow.response")


def _envelopes(count: int, seed: int = 5) -> list[str]:
    """Random lifecycles of a few hundred contacts, merges and rejections included."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        contact, t = f"c{rng.randrange(300)}", n * 0.5
        kind = rng.choice(KINDS)
        if rng.random() < 0.01:
            out.append(line(merge(contact, f"c{rng.randrange(300)}", t)))
        elif kind == "conversation.assign":
            data = {"assignee_id": rng.choice(("a1", "a2", None))}
            if rng.random() < 0.5:
                data["team_id"] = rng.choice(("t1", None))
            out.append(line(ev(kind, contact, t, data=data)))
        elif kind == "conversation.close":
            out.append(line(ev(kind, contact, t, data={"category": "x", "summary": "done"})))
        elif kind == "dialogflow.response":
            flag = rng.choice((True, False, None))
            params = {} if flag is None else {"RB_MARKDONE": flag}
            out.append(line(ev(kind, contact, t, data={"parameters": params})))
        else:
            out.append(line(ev(kind, contact, t)))
    return out


def _stored(lines: int = 12_000) -> list[bytes]:
    store = FakeEventStore()
    processor = BatchUnitOfWork(store)
    items = [parse(text) for text in _envelopes(lines)]
    for start in range(0, len(items), 1_000):
        processor.process(items[start:start + 1_000])
    return [state for _, _, _, state in store.notifications]


def _rows(read_models: FakeReadModelStore) -> dict[str, dict[str, object]]:
    return {cid: row.public() for cid, row in read_models.rows.items()}


def test_stored_json_projects_to_the_same_rows_as_decoded_events() -> None:
    states = _stored()
    by_events, by_json = FakeReadModelStore(), FakeReadModelStore()
    events, stored = ConversationProjection(by_events), ConversationProjection(by_json)
    for start in range(0, len(states), 700):  # pages that cut conversations in two
        page = states[start:start + 700]
        events.apply([decode_event(s) for s in page], Position("p", start + len(page)))
        stored.apply_stored(page, Position("p", start + len(page)))
    assert len(by_events.rows) > 500
    assert _rows(by_json) == _rows(by_events)
    stored.forget()  # rows loaded back from the store, not from the cache, also agree
    extra = FakeReadModelStore()
    fresh = ConversationProjection(extra)
    fresh.apply_stored(states[:5_000], Position("p", 1))
    fresh.forget()
    fresh.apply_stored(states[5_000:], Position("p", 2))
    assert _rows(extra) == _rows(by_events)


def test_rows_that_are_not_current_and_exact_are_decoded() -> None:
    current = orjson.dumps({
        "schema_version": 2, "event_type": "ConversationOpened", "event_id": "e",
        "workspace_id": "ws", "contact_id": "c", "aggregate_version": 1,
        "occurred_at": "2026-11-24T10:00:00Z", "source_event_id": "g1",
        "conversation_id": "conv", "opened_by": "contact", "channel_type": "viber",
        "channel_id": None, "actor_id": None, "recontact": False})
    assert isinstance(trusted_payload(current), dict)
    missing_default = orjson.loads(current)
    del missing_default["channel_id"]
    assert not isinstance(trusted_payload(orjson.dumps(missing_default)), dict)
    assert not isinstance(trusted_payload(orjson.dumps({**orjson.loads(current), "x": 1})),
                          dict)
    version_1 = {**orjson.loads(current), "schema_version": 1}
    del version_1["recontact"]
    decoded = trusted_payload(orjson.dumps(version_1))
    assert isinstance(decoded, ConversationOpened) and decoded.recontact is False


@pytest.fixture
def v0_upcaster() -> Iterator[None]:
    UPCASTERS[("ConversationOpened", 0)] = lambda p: {**p, "channel_type": p.get("channel")}
    yield
    del UPCASTERS[("ConversationOpened", 0)]


def test_old_schema_versions_are_upcast(v0_upcaster: None) -> None:
    old = orjson.dumps({
        "schema_version": 0, "event_type": "ConversationOpened", "event_id": "e",
        "workspace_id": "ws", "contact_id": "c", "aggregate_version": 1,
        "occurred_at": "2026-11-24T10:00:00Z", "source_event_id": "g1",
        "conversation_id": "conv", "opened_by": "contact", "channel": "viber"})
    read_models = FakeReadModelStore()
    ConversationProjection(read_models).apply_stored([old], Position("p", 1))
    assert read_models.rows["conv"].channel == "viber"


def _mixed(states: list[bytes]) -> list[bytes]:
    """Every third timed event spelled ``+00:00`` (trusted as a dict, not a struct) and
    every seventh first opening as schema version 1 (decoded and upcast to a model)."""
    out = []
    for number, stored in enumerate(states):
        payload = orjson.loads(stored)
        new = stored
        if number % 3 == 1 and payload["occurred_at"].endswith("Z"):
            payload["occurred_at"] = payload["occurred_at"][:-1] + "+00:00"
            new = orjson.dumps(payload)
        elif number % 7 == 2 and payload.get("recontact") is False:  # v1 had no recontact
            del payload["recontact"]
            new = orjson.dumps({**payload, "schema_version": 1})
        out.append(new)
    return out


def test_structs_dicts_and_models_in_one_page_project_as_decoded_events(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The live path decodes what ``encode_event`` writes with msgspec, the rest as
    before; one page mixes all three, and the rows are those of the decoded events."""
    states = _stored(6_000)
    mixed = _mixed(states)
    trusted: list[bytes] = []
    original = rows.trusted_payload

    def counted(state: bytes) -> Item:
        trusted.append(state)
        return original(state)

    monkeypatch.setattr(rows, "trusted_payload", counted)
    expected, got = FakeReadModelStore(), FakeReadModelStore()
    by_events, by_json = ConversationProjection(expected), ConversationProjection(got)
    for start in range(0, len(states), 900):
        end = start + min(900, len(states) - start)
        by_events.apply([decode_event(s) for s in states[start:end]], Position("p", end))
        by_json.apply_stored(mixed[start:end], Position("p", end))
    assert _rows(got) == _rows(expected)
    odd = [m for s, m in zip(states, mixed, strict=True) if s != m]
    assert len(odd) > 1_000
    assert sorted(trusted) == sorted(odd)  # the others went the struct way only
    assert any(b'"schema_version":1' in s for s in odd)


class _SnapshotStore(FakeReadModelStore):
    """A :class:`~.ports.SnapshotSaver` in memory that records what each page called new."""

    def __init__(self) -> None:
        super().__init__()
        self.news: list[set[str]] = []

    def snapshot(self, rows_: list[rows.ConversationRow]) -> list[tuple[Any, ...]]:
        return [(dataclasses.replace(row),) for row in rows_]

    def save_snapshot(self, values: list[tuple[Any, ...]], position: Position, *,
                      new: Collection[str] = ()) -> None:
        stored = {v[0].conversation_id for v in values} & self.rows.keys()
        assert not stored & set(new), "a stored row was called new"
        self.news.append(set(new))
        self.save([v[0] for v in values], position)


def test_a_page_calls_new_exactly_the_rows_its_openings_started() -> None:
    """What the projection tells the store is new (not to be looked up) is every row a
    page's opening started, and no row the store holds, with a cache or without."""
    states = _stored()
    store = _SnapshotStore()
    projection = ConversationProjection(store)
    for n, start in enumerate(range(0, len(states), 700)):
        page = states[start:start + 700]
        if n % 3 == 2:
            projection.forget()  # rows loaded from the store, not the cache
        projection.apply_read(list(enumerate(page, start)), Position("p", start + len(page)))
        opened = {event.conversation_id for event in map(decode_event, page)
                  if isinstance(event, ConversationOpened)}
        assert store.news[-1] == opened
    assert sum(map(len, store.news)) == len(store.rows) > 500
    reference = FakeReadModelStore()
    ConversationProjection(reference).apply_stored(states, Position("p", 1))
    assert _rows(store) == _rows(reference)


class _LoadsLogged(_SnapshotStore):
    """:class:`_SnapshotStore` that records the ids of every ``load_rows``."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[set[str]] = []

    def load_rows(self, ids: set[str]) -> dict[str, rows.ConversationRow]:
        self.loads.append(set(ids))
        return super().load_rows(ids)


def test_rows_dropped_from_the_cache_mid_page_are_loaded_once_and_nothing_else() -> None:
    """A page runs in one pass while its rows are cached or opened there; from the
    first row that must be loaded, the rest of the page loads its rows at once. With
    part of the cache dropped before some pages, each page loads only rows that were
    neither cached nor opened before their first event there, at most once per page,
    and the rows are those of one projection of every event."""
    states = _stored()
    store = _LoadsLogged()
    projection = ConversationProjection(store)
    rng = random.Random(3)
    for n, start in enumerate(range(0, len(states), 600)):
        page = states[start:start + 600]
        cached = projection._open
        if n % 2 == 1:  # drop a random part of the cache: a mix of cached and loaded rows
            for cid in rng.sample(sorted(cached), len(cached) // 3):
                del cached[cid]
        before = set(cached)
        loads = len(store.loads)
        projection.apply_read(list(enumerate(page, start)), Position("p", start + len(page)))
        events = [e for e in map(decode_event, page) if getattr(e, "conversation_id", None)]
        first: dict[str, object] = {}
        for event in events:
            first.setdefault(event.conversation_id, event)  # type: ignore[attr-defined]
        needed = {cid for cid, event in first.items()
                  if cid not in before and not isinstance(event, ConversationOpened)}
        assert len(store.loads) - loads == (1 if needed else 0)
        if needed:
            assert store.loads[-1] == needed
    assert sum(1 for ids in store.loads if ids) > 5
    reference = FakeReadModelStore()
    ConversationProjection(reference).apply_stored(states, Position("p", 1))
    assert _rows(store) == _rows(reference)


def test_a_page_that_fails_half_way_leaves_no_changed_row_in_the_cache() -> None:
    """Events are decoded as the page is applied, and cached rows change in place: an
    event that cannot be decoded after some were applied drops the cache, so the
    page projected again (from the stored rows) counts each event once."""
    states = _stored(3_000)
    store = FakeReadModelStore()
    projection = ConversationProjection(store)
    half = len(states) // 2
    projection.apply_stored(states[:half], Position("p", half))
    assert projection._open
    with pytest.raises(ValueError):
        projection.apply_stored([*states[half:], b"not json"], Position("p", len(states)))
    assert not projection._open
    projection.apply_stored(states[half:], Position("p", len(states)))
    reference = FakeReadModelStore()
    ConversationProjection(reference).apply_stored(states, Position("p", 1))
    assert _rows(store) == _rows(reference)
