"""Page-data latency: the endpoints the Reports and Dashboard pages call, on PostgreSQL.

    python -m bench.pages --conversations 1000000 --requests 20 [--schema bench_1m]

Fills a fresh schema with synthetic conversation rows of one workspace (``COPY``,
90 days up to now, 5 channels, 20 agents, 10% still open), serves the HTTP app on
it and times each endpoint sequentially: the dashboard summary, the day report of
the last 30 days, the channel report, and one drill-down page. Prints p50 / p99 /
max per endpoint and writes ``bench/results/pages-<timestamp>.json``. The schema
is dropped afterwards. Target of issue 12: p99 <= 300 ms at 1M conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.composition import open_stores
from services.http.app import create_app
from services.projections.domain.rows import ConversationRow
from services.settings import Settings
from tests.sink_fakes import RecordingSink

WS = "ws_bench"
TOKEN = "an-bench"
CHUNK = 100_000
ROOT = Path(__file__).resolve().parents[1]


def rows(count: int, seed: int = 12) -> list[list[ConversationRow]]:
    """``count`` rows in chunks, opened over the 90 days up to now."""
    rng = random.Random(seed)
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    span = 90 * 86_400 * 1_000_000
    channels = ("whatsapp", "webchat", "facebook", "telegram", "email")
    chunks: list[list[ConversationRow]] = []
    for start in range(0, count, CHUNK):
        chunk = []
        for n in range(start, min(count, start + CHUNK)):
            opened = now_us - span + (span * n) // count + rng.randrange(0, 60_000_000)
            open_now = rng.random() < 0.1 and opened > now_us - 7 * 86_400 * 1_000_000
            closed = None if open_now else min(now_us, opened + rng.randrange(60, 20_000)
                                               * 1_000_000)
            agent = f"agent-{rng.randrange(20)}" if rng.random() < 0.9 else None
            chunk.append(ConversationRow(
                conversation_id=str(uuid.UUID(int=rng.getrandbits(128))), workspace_id=WS,
                contact_id=f"c{n}", channel=channels[n % 5], opened_us=opened,
                opened_by="contact", closed_us=closed,
                closed_by=None if closed is None else rng.choice(("user", "automation")),
                assignee_id=agent, team_id="support" if agent else None,
                messages_received=1, messages_sent=1))
        chunks.append(chunk)
    return chunks


def fill(stores: Any, base: str, schema: str, conversations: int) -> None:
    """Copy the synthetic rows into ``schema`` unless it already holds that many, then
    build the metric cells from them."""
    with psycopg.connect(base, autocommit=True) as conn:
        found = conn.execute(f'SELECT count(*) FROM "{schema}".conversations').fetchone()
    if found is not None and found[0] == conversations:
        print(f"reusing schema {schema} ({conversations:,} conversations)", flush=True)
        return
    if found is not None and found[0]:
        raise SystemExit(f"schema {schema} holds {found[0]:,} conversations, not "
                         f"{conversations:,}: drop it or name another")
    started = time.perf_counter()
    for chunk in rows(conversations):
        stores.read_models.copy_rows(chunk)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".conversations')
    print(f"{conversations:,} conversations copied in {time.perf_counter() - started:.0f} s",
          flush=True)
    started = time.perf_counter()
    stores.read_models.rebuild_cells()
    print(f"metric cells built in {time.perf_counter() - started:.0f} s", flush=True)


@contextmanager
def filled_stores(base: str, schema: str | None, prefix: str, conversations: int,
                  **settings: Any) -> Iterator[tuple[Any, Settings]]:
    """The stores (and their settings) of a schema of ``base`` holding ``conversations``
    synthetic rows (:func:`fill`): ``schema`` when named (kept afterwards, reused next
    time), else a fresh ``PREFIX_…`` one, dropped afterwards."""
    name = schema or f"{prefix}_{uuid.uuid4().hex[:8]}"
    chosen = Settings(database_url=f"{base}{'&' if '?' in base else '?'}schema={name}",
                      **settings)
    stores = open_stores(chosen)
    try:
        fill(stores, base, name, conversations)
        yield stores, chosen
    finally:
        stores.close()
        if not schema:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def write_result(name: str, result: dict[str, Any]) -> None:
    """``bench/results/NAME`` (indented JSON) and one JSON line on stdout."""
    out = ROOT / "bench" / "results" / name
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(result).decode())


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1),
            "requests": len(ordered)}


async def measure(app: Any, requests: int) -> dict[str, dict[str, float]]:
    today = datetime.now(UTC).date()
    month = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
    yesterday = (today - timedelta(days=1)).isoformat()
    endpoints = {
        "dashboard": ("/dashboard", {}),
        "report_day_30d": ("/metrics", {"group_by": "day", **month}),
        "report_channel_30d": ("/metrics", {"group_by": "channel", **month}),
        "drill_down_page": ("/conversations", {"measure": "closed", "group_by": "day",
                                               "key": yesterday, "limit": "25", **month}),
    }
    found: dict[str, dict[str, float]] = {}
    async with TestClient(TestServer(app)) as client:
        for name, (path, params) in endpoints.items():
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                answer = await client.get(f"/v1/workspaces/{WS}{path}", params=params,
                                          headers={"Authorization": f"Bearer {TOKEN}"})
                await answer.read()
                samples.append(time.perf_counter() - started)
                assert answer.status == 200, await answer.text()
            found[name] = percentiles(samples)
            print(f"  {name:20} {found[name]}", flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--schema", help="reuse this schema when it already holds the rows "
                        "(filled and kept otherwise); default: a fresh one, dropped after")
    args = parser.parse_args(argv)
    base = os.environ.get("BONYCHAT_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        parser.error("set BONYCHAT_DATABASE_URL to PostgreSQL (make infra-up; infra/local.env)")
    with filled_stores(base, args.schema, "bench_pages", args.conversations,
                       analytics_tokens=f"{WS}={TOKEN}") as (stores, settings):
        app = create_app(settings=settings, sink=RecordingSink(),
                         read_models=stores.read_models, registry=CollectorRegistry(),
                         events=stores.events)
        result = {"conversations": args.conversations, "target_p99_ms": 300,
                  "endpoints": asyncio.run(measure(app, args.requests)),
                  "at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_result("pages-latest.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
