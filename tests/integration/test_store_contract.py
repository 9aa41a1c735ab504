"""The store contract (``tests/store_contract.py``) on SQLite and PostgreSQL.

The in-memory fakes pass the same contract in ``tests/unit/test_store_contract_fake.py``.
The end-to-end test then runs the whole embedded pipeline over the same generated
input on both and demands identical results.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.composition import Stores
from services.composition.postgres import open_postgres_stores
from services.composition.sqlite import open_sqlite_stores
from services.in_process.pipeline import EmbeddedPipeline
from services.projections.domain.metrics import GROUPINGS, MetricsQuery, compute
from tests.store_contract import T0, ManyPositionsContract, StoreContract, envelope

pytestmark = pytest.mark.integration

class TestSQLiteStores(StoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path) -> Iterator[Stores]:
        opened_stores = open_sqlite_stores(str(tmp_path / "contract.db"))
        yield opened_stores
        opened_stores.close()

    def dead_letter_count(self, stores: Stores) -> int:
        with stores.events.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute("SELECT count(*) FROM dead_letters")
            return int(c.fetchone()[0])


class TestPostgresStores(StoreContract, ManyPositionsContract):
    @pytest.fixture
    def stores(self, postgres_url: str) -> Iterator[Stores]:
        opened_stores = open_postgres_stores(postgres_url)
        yield opened_stores
        opened_stores.close()

    def dead_letter_count(self, stores: Stores) -> int:
        with stores.events.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            schema = stores.events.datastore.schema  # type: ignore[attr-defined]
            c.execute(f'SELECT count(*) AS n FROM "{schema}".dead_letters')
            return int(c.fetchone()["n"])

    def test_reopening_is_idempotent_and_concurrent_safe(self, postgres_url: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            opened_all = list(pool.map(lambda _: open_postgres_stores(postgres_url), range(4)))
        for each in opened_all:
            each.close()
        again = open_postgres_stores(postgres_url)
        assert again.events.max_notification_id() == 0
        again.close()

    def test_nul_characters_are_invalid_and_do_not_break_a_batch(self, stores: Stores) -> None:
        pipeline = EmbeddedPipeline(stores.events, stores.read_models)
        nul = envelope("ws1", "e\x001", "message.received", "c\x001", T0,
                       channel={"type": "sms"})
        good = envelope("ws1", "e2", "message.received", "c2", T0, channel={"type": "sms"})
        summary = pipeline.run([nul, nul, b'{"bad": "\\u0000', good])
        assert (summary.accepted, summary.duplicate, summary.invalid) == (1, 0, 3)
        assert [r.contact_id for r in stores.read_models.conversations("ws1")] == ["c2"]


class TestPostgresStoresCopying(TestPostgresStores):
    """The same contract with every outcome and event written by ``COPY`` (pg_copy):
    conflicts, dedupe and positions must not depend on the write path."""

    @pytest.fixture
    def stores(self, postgres_url: str) -> Iterator[Stores]:
        opened_stores = open_postgres_stores(postgres_url)
        opened_stores.events.recorder.copy_min_rows = 1  # type: ignore[attr-defined]
        yield opened_stores
        opened_stores.close()


# -- end to end: same input, same answers on both backends -----------------------

def generate_lines(count: int = 2_000, seed: int = 20261124) -> list[bytes]:
    """A deterministic mix of every event type, a few invalid and duplicate lines."""
    rnd = random.Random(seed)
    channels = ["whatsapp", "facebook", "viber", "sms", "webchat", "email"]
    at = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    lines: list[bytes] = []
    for n in range(count):
        at += timedelta(seconds=rnd.randint(1, 900), microseconds=rnd.choice([0, 0, 250_000]))
        ws = rnd.choice(["ws_a", "ws_a", "ws_b"])
        contact, eid = f"c{rnd.randint(0, 29)}", f"{ws}-e{n}"
        roll = rnd.random()
        if roll < 0.03 and lines:
            lines.append(rnd.choice(lines))  # redelivery
            continue
        if roll < 0.05:
            lines.append(rnd.choice([b"{not json", envelope(ws, eid, "message.sent", contact,
                                                            at, actor={"type": "contact"}),
                                     b'{"event_id": "x", "type": "welcome"}']))
            continue
        user = {"type": rnd.choice(["user", "automation"]), "id": f"u{rnd.randint(1, 4)}"}
        kind = rnd.choices(
            ["message.received", "message.sent", "conversation.open", "conversation.close",
             "conversation.assign", "welcome", "dialogflow.response", "contact.merge"],
            [30, 15, 8, 16, 10, 5, 6, 2])[0]
        extra: dict[str, Any] = {}
        if kind in ("message.received", "welcome") or rnd.random() < 0.3:
            extra["channel"] = {"type": rnd.choice(channels)}
        if kind in ("message.sent", "conversation.open", "conversation.close",
                    "conversation.assign"):
            extra["actor"] = user
        if kind == "conversation.close" and rnd.random() < 0.5:
            extra["data"] = {"category": rnd.choice(["sales", "support"]), "summary": "fait ✓"}
        elif kind == "conversation.assign":
            extra["data"] = {"assignee_id": rnd.choice(["a1", "a2", None])}
            if rnd.random() < 0.5:
                extra["data"]["team_id"] = rnd.choice(["t1", "t2", None])
        elif kind == "dialogflow.response":
            extra["data"] = {"parameters": {"RB_MARKDONE": rnd.choice([True, "false", "TRUE"])}}
        elif kind == "contact.merge":
            extra["data"] = {"secondary_contact_id": f"c{rnd.randint(0, 29)}"}
        lines.append(envelope(ws, eid, kind, contact, at, **extra))
    return lines


def snapshot(stores: Stores) -> dict[str, Any]:
    """Every workspace's conversation rows and metrics, in comparable form."""
    result: dict[str, Any] = {}
    for ws in ("ws_a", "ws_b"):
        result[f"{ws}/rows"] = [r.public() for r in stores.read_models.conversations(ws)]
        for group in GROUPINGS:
            for tz in ("UTC", "America/Sao_Paulo"):
                query = MetricsQuery(ws, group, tz, date(2026, 11, 26), None)
                result[f"{ws}/{group}/{tz}"] = compute(query, stores.read_models.facts(ws))
    return result


def test_pipeline_gives_identical_results_on_sqlite_and_postgres(
        tmp_path: Path, postgres_url: str) -> None:
    lines = generate_lines()
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    sqlite = open_sqlite_stores(str(tmp_path / "e2e.db"))
    postgres = open_postgres_stores(postgres_url)
    try:
        for name, stores in (("sqlite", sqlite), ("postgres", postgres)):
            summary = EmbeddedPipeline(stores.events, stores.read_models, batch_size=150).run(lines)
            results[name] = (summary.as_dict(), snapshot(stores))
        assert results["sqlite"][0] == results["postgres"][0]
        summary = results["postgres"][0]
        assert summary["read"] == len(lines) and summary["invalid"] > 0
        assert summary["duplicate"] > 0 and summary["rejected"]
        assert len(results["postgres"][1]["ws_a/rows"]) > 50
        assert results["sqlite"][1] == results["postgres"][1]

        replayed = EmbeddedPipeline(postgres.events, postgres.read_models)
        assert replayed.projection.replay(postgres.events) > 0
        assert snapshot(postgres) == results["postgres"][1]

        again = EmbeddedPipeline(postgres.events, postgres.read_models).run(lines)
        assert again.accepted == 0 and not again.rejected
        assert snapshot(postgres) == results["postgres"][1]
    finally:
        sqlite.close()
        postgres.close()


def test_fresh_schema_per_test(postgres_url: str) -> None:
    """The fixture's isolation: a new schema starts empty."""
    stores = open_postgres_stores(postgres_url)
    try:
        assert stores.events.max_notification_id() == 0
        assert stores.events.seen({("ws1", "e1")}) == set()
        assert stores.events.load_many([uuid.UUID(int=0)]) == {}
    finally:
        stores.close()
