"""Issue 9 §3 in the Kafka runtime: the DLQ topic is the source of Kafka-side dead letters.

A real broker and PostgreSQL; ``bonychat serve`` runs ingest, conversation and
projections; the operator commands run as the installed command with the same
environment. One partition, so the DLQ offsets (and the retry group's
watermark) are known: the first two DLQ records are published straight to the
DLQ topic as an older parser would have left them (a valid envelope and a copy
of an event that was processed meanwhile), then ingest dead-letters three
invalid gateway records.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from kafka_fixtures import BONYCHAT, World, new_world, publish, wait_until
from test_undecodable_records import committed

pytestmark = pytest.mark.integration
SETTLE = 90
WS = "ws_ops"


@pytest.fixture
def world(infra: dict[str, str]) -> Iterator[World]:
    w = new_world(infra, partitions=1)
    try:
        yield w
    finally:
        w.destroy()


def envelope(event_id: str, contact: str, at: str, ws: str = WS, **extra: Any) -> bytes:
    body = {"event_id": event_id, "type": "message.received", "workspace_id": ws,
            "contact_id": contact, "occurred_at": at, "channel": {"type": "sms"}, **extra}
    return json.dumps(body).encode()


def bonychat(world: World, *args: str) -> Any:
    done = subprocess.run([str(BONYCHAT), *args], env=world.env(), capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def dlq_record(value: bytes, reason: str) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    return None, value, [("reason", reason.encode()), ("source", b"kafka")]


def publish_dlq(world: World, records: list[tuple[bytes | None, bytes,
                                                  list[tuple[str, bytes]]]]) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=world.bootstrap)
        await producer.start()
        try:
            for key, value, headers in records:
                await producer.send_and_wait(world.topics.dlq, value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_dead_letters_outcome_and_retry_on_the_dlq_topic(world: World) -> None:
    serve = world.serve()
    publish(world.bootstrap, world.topics.gateway, [
        (f"{WS}:c1".encode(), envelope("e1", "c1", "2026-11-24T10:00:00Z"))])
    wait_until(lambda: bonychat(world, "outcome", "--workspace", WS, "e1", "--format", "json")
               if _known(world, "e1") else None, SETTLE, "e1 processed")

    # an older parser dead-lettered these two (offsets 0 and 1)
    publish_dlq(world, [
        dlq_record(envelope("e-old", "c2", "2026-11-24T11:00:00Z"), "old parser bug"),
        dlq_record(envelope("e1", "c1", "2026-11-24T10:00:00Z"), "old parser bug"),
    ])
    # ingest dead-letters these three (offsets 2, 3, 4)
    no_offset = envelope("e-tz", "c3", "2026-11-24T12:00:00")
    publish(world.bootstrap, world.topics.gateway, [
        (f"{WS}:c3".encode(), no_offset), (None, b"not json at all"),
        (b"other:c1", envelope("x1", "c1", "2026-11-24T12:00:00Z", ws="other", channel=None))])
    rows = wait_until(lambda: _listed(world, 5), SETTLE, "five DLQ records listed")

    assert [r["id"] for r in rows] == [f"dlq-0-{o}" for o in range(5)]
    assert {r["source"] for r in rows} == {"kafka"}
    by_id = {r["id"]: r for r in rows}
    assert by_id["dlq-0-2"]["event_id"] == "e-tz" and "offset" in by_id["dlq-0-2"]["reason"]
    assert (by_id["dlq-0-2"]["partition"], by_id["dlq-0-2"]["offset"]) == (0, 1)
    assert by_id["dlq-0-3"]["workspace_id"] is None and by_id["dlq-0-3"]["offset"] == 2
    assert [r["id"] for r in bonychat(world, "dead-letters", "--workspace", WS, "--format",
                                      "json")] == ["dlq-0-0", "dlq-0-1", "dlq-0-2"]
    invalid = bonychat(world, "outcome", "--workspace", WS, "e-tz", "--format", "json")
    assert invalid["outcome"] == "invalid"
    assert [d["id"] for d in invalid["dead_letters"]] == ["dlq-0-2"]

    dry = bonychat(world, "dead-letters", "retry", "--all", "--dry-run", "--format", "json")
    assert dry["summary"] == {"duplicate": 1, "invalid": 3, "valid": 1}
    assert committed(world, _group(world), TopicPartition(world.topics.dlq, 0)) is None

    report = bonychat(world, "dead-letters", "retry", "--all", "--format", "json")
    outcomes = {r["id"]: r["outcome"] for r in report["results"]}
    assert outcomes == {"dlq-0-0": "accepted", "dlq-0-1": "duplicate", "dlq-0-2": "invalid",
                        "dlq-0-3": "invalid", "dlq-0-4": "invalid"}
    # the watermark: the first record still invalid
    assert committed(world, _group(world), TopicPartition(world.topics.dlq, 0)) == 2
    accepted = bonychat(world, "outcome", "--workspace", WS, "e-old", "--format", "json")
    assert accepted["outcome"] == "accepted"
    assert [e["event_type"] for e in accepted["domain_events"]] == [
        "ConversationOpened", "MessageReceived"]
    assert [d["retry_outcome"] for d in accepted["dead_letters"]] == ["accepted"]
    convs = bonychat(world, "conversations", "--workspace", WS, "--contact", "c2", "--format",
                     "json")
    assert len(convs) == 1

    # a second pass starts at the watermark and never retries a resolved record again
    again = bonychat(world, "dead-letters", "retry", "--all", "--format", "json")
    assert sorted(r["id"] for r in again["results"]) == ["dlq-0-2", "dlq-0-3", "dlq-0-4"]
    named = bonychat(world, "dead-letters", "retry", "--id", "dlq-0-0", "--format", "json")
    assert named["results"] == [{"id": "dlq-0-0", "outcome": "accepted", "reason": None,
                                 "skipped": True}]
    attempts = {r["id"]: r["retry_attempts"] for r in _listed(world, 5) or []}
    assert attempts == {"dlq-0-0": 1, "dlq-0-1": 1, "dlq-0-2": 2, "dlq-0-3": 2, "dlq-0-4": 2}

    # the same over HTTP, for the analytics token of the workspace
    port = serve.port()
    posted = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events", method="POST",
        data=json.dumps({"event_id": "h1", "workspace_id": "ws_http"}).encode(),
        headers={"Authorization": "Bearer gw-token", "Content-Type": "application/json"})
    with urllib.request.urlopen(posted, timeout=30) as response:
        assert response.status == 202

    def http_rows() -> list[dict[str, Any]] | None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/workspaces/ws_http/dead-letters",
            headers={"Authorization": "Bearer an-token"})
        with urllib.request.urlopen(request, timeout=60) as response:
            found: list[dict[str, Any]] = json.loads(response.read())
        return found or None

    listed = wait_until(http_rows, SETTLE, "the HTTP dead letter")
    assert [(r["event_id"], r["source"]) for r in listed] == [("h1", "http")]


def _group(world: World) -> str:
    return f"bonychat-{world.suffix}-dlq-retry"


def _known(world: World, event_id: str) -> bool:
    done = subprocess.run([str(BONYCHAT), "outcome", "--workspace", WS, event_id],
                          env=world.env(), capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def _listed(world: World, count: int) -> list[dict[str, Any]] | None:
    rows: list[dict[str, Any]] = bonychat(world, "dead-letters", "--format", "json")
    return rows if len(rows) >= count else None
