"""The Kafka runtime end to end: ``bonychat serve`` processes on real Kafka + PostgreSQL.

The oracle is the embedded import of the same gateway lines into a fresh SQLite
file: the conversation rows and every metrics grouping must be identical,
whatever crashes, restarts, redeliveries and consumer groups happen on the way.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kafka_fixtures import (
    GATEWAY_INPUT,
    WORKSPACES,
    ServeProcess,
    Stream,
    World,
    embedded_snapshot,
    generate_stream,
    new_world,
    read_topic,
    snapshot,
    wait_until,
)

pytestmark = pytest.mark.integration
SETTLE = 90  # seconds: generous upper bound for any one wait; typical runs take 1-10 s


def converge(world: World, expected: dict[str, Any], timeout: float = SETTLE) -> None:
    """Wait until the read model equals ``expected``; show the first difference if not."""
    with world.opened() as stores:
        try:
            wait_until(lambda: snapshot(stores.read_models, WORKSPACES) == expected,
                       timeout, "the read model to equal the embedded import", 0.25)
        except AssertionError:
            got = snapshot(stores.read_models, WORKSPACES)
            for ws in WORKSPACES:
                assert got[ws]["conversations"] == expected[ws]["conversations"], ws
                assert got[ws]["metrics"] == expected[ws]["metrics"], ws
            raise


def prometheus(process: ServeProcess, port: int) -> dict[str, float]:
    """``bonychat_events_total`` samples of one process: ``service/type/outcome`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for match in re.finditer(r'^bonychat_events_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        found[f"{labels['service']}/{labels['type']}/{labels['outcome']}"] = float(match[2])
    return found


def post_events(port: int, token: str, body: list[Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


# --- one shared run: all services in one process, a 3,000-line stream ------------------------

@pytest.fixture(scope="module")
def baseline(infra: dict[str, str]) -> Iterator[tuple[World, Stream, ServeProcess, int]]:
    w = new_world(infra)
    stream = generate_stream(3_000, seed=7)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    process = w.serve(name="all")
    port = process.port()
    w.publish(stream.records)
    converge(w, expected)
    yield w, stream, process, port
    assert process.stop() == 0, process.log()
    w.destroy()


def test_stream_gives_exactly_the_embedded_import(
        baseline: tuple[World, Stream, ServeProcess, int]) -> None:
    world, stream, process, port = baseline
    converge(world, embedded_snapshot(stream.lines, WORKSPACES), timeout=5)
    counts = prometheus(process, port)
    assert counts["ingest/unknown/invalid"] == stream.invalid
    duplicates = sum(v for k, v in counts.items() if k.endswith("/duplicate"))
    assert duplicates == stream.duplicates


def test_invalid_inputs_go_to_the_dlq_with_a_reason(
        baseline: tuple[World, Stream, ServeProcess, int]) -> None:
    world, stream, _, port = baseline
    answer = post_events(port, "gw-token", [
        {"event_id": "h1", "type": "message.received", "workspace_id": "ws_http",
         "contact_id": "http-1", "occurred_at": "2026-10-02T10:00:00"},  # no offset
        {"event_id": "h2", "type": "message.received", "workspace_id": "ws_http",
         "contact_id": "http-1", "occurred_at": "2026-10-02T10:00:00Z",
         "channel": {"type": "webchat"}}])
    assert answer["invalid"] == 1 and answer["accepted"] == 1, answer

    def dead_letters() -> list[Any] | None:
        found = read_topic(world.bootstrap, world.topics.dlq, idle_ms=500)
        return found if len(found) == stream.invalid + 1 else None

    found = wait_until(dead_letters, SETTLE, "the dead letters")
    assert all(d.headers.get("reason") for d in found)
    sources = Counter(d.headers["source"] for d in found)
    assert sources == {"kafka": stream.invalid, "http": 1}
    raw = {d.value for d in found if d.headers["source"] == "kafka"}
    assert raw == {value for key, value in stream.records if key is None}
    malformed = [d for d in found if d.value.startswith(b'{"event_id": "broken"')]
    assert malformed and malformed[0].headers["reason"].startswith("malformed JSON")
    offsets = [int(d.headers["original_offset"]) for d in found if d.headers["source"] == "kafka"]
    assert len(offsets) == stream.invalid
    with world.opened() as stores:  # the valid item of the same request was processed
        wait_until(lambda: stores.read_models.conversations("ws_http", "http-1"), SETTLE,
                   "the HTTP event's conversation")


def test_relay_publishes_each_domain_event_once(
        baseline: tuple[World, Stream, ServeProcess, int]) -> None:
    world, _, _, _ = baseline
    with world.opened() as stores:
        wanted = {e.event_id: e for _, e in stores.events.read(0, 1_000_000)}

    def published() -> list[Any] | None:
        found = read_topic(world.bootstrap, world.topics.events, idle_ms=500)
        return found if len(found) >= len(wanted) else None

    found = wait_until(published, SETTLE, "the relay to publish every stored event")
    ids = [json.loads(r.value)["event_id"] for r in found]
    assert len(ids) == len(set(ids)) == len(wanted)
    assert set(ids) == set(wanted)
    for record in found:
        body = json.loads(record.value)
        event = wanted[body["event_id"]]
        assert record.headers["event_id"] == event.event_id
        assert record.key == f"{event.workspace_id}:{event.contact_id}".encode()
        assert body["event_type"] == record.headers["event_type"]
    with world.opened() as stores:  # the relay recorded how far it got
        newest = stores.events.max_notification_id()
        wait_until(lambda: stores.read_models.position(f"relay:{world.topics.events}") == newest,
                   SETTLE, "the relay position")


# --- crashes, several copies, redelivery ------------------------------------------------------

def test_conversation_service_killed_mid_stream(world: World) -> None:
    stream = generate_stream(3_000, seed=11)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    world.serve("ingest,projections", name="edge")
    victim = world.serve("conversation", name="conversation-1")
    victim.wait_log(r"partitions assigned.*\"partitions\": \[0, 1, 2, 3\]")
    half = len(stream.records) // 2
    world.publish(stream.records[:half])
    with world.opened() as stores:
        wait_until(lambda: stores.events.max_notification_id() > 0, SETTLE,
                   "the first stored events", 0.02)
    victim.kill9()
    world.publish(stream.records[half:])
    successor = world.serve("conversation", name="conversation-2")
    successor.wait_log(r'resume_after": \{[^}]*\d')  # resumed from PostgreSQL tracking
    converge(world, expected)


def test_projections_killed_mid_stream(world: World) -> None:
    stream = generate_stream(3_000, seed=13)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    world.serve("ingest,conversation", name="core")
    victim = world.serve("projections", name="projections-1")
    victim.wait_log(r"projections following")
    half = len(stream.records) // 2
    world.publish(stream.records[:half])
    with world.opened() as stores:
        wait_until(lambda: stores.read_models.position("projection:conversations"), SETTLE,
                   "the first projected events", 0.02)
    victim.kill9()
    world.publish(stream.records[half:])
    successor = world.serve("projections", name="projections-2")
    successor.wait_log(r'projections following the event store", "after": [1-9]')
    converge(world, expected)


def test_two_conversation_copies_share_the_partitions(world: World) -> None:
    stream = generate_stream(3_000, seed=17)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    world.serve("ingest,projections", name="edge")
    first = world.serve("conversation", name="conversation-a")
    first.port()
    second = world.serve("conversation", name="conversation-b")

    def latest(process: ServeProcess) -> set[int]:
        found = re.findall(r'"msg": "partitions assigned".*?"partitions": \[([\d, ]*)\]',
                           process.log())
        return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()

    wait_until(lambda: latest(first) and latest(second)
               and latest(first) | latest(second) == {0, 1, 2, 3}
               and not latest(first) & latest(second), SETTLE, "both copies to get partitions")
    world.publish(stream.records)
    converge(world, expected)
    ports = [first.port(), second.port()]
    worked = [sum(v for k, v in prometheus(p, port).items() if k.startswith("conversation/"))
              for p, port in zip((first, second), ports, strict=True)]
    assert all(n > 0 for n in worked), worked


def test_redelivered_envelopes_count_once_and_a_fresh_group_skips(world: World) -> None:
    stream = generate_stream(1_500, seed=19)
    twice = stream.records + stream.records
    expected = embedded_snapshot([value for _, value in twice], WORKSPACES)
    world.serve("ingest,projections", name="edge")
    conversation = world.serve("conversation", name="conversation-1")
    world.publish(stream.records)
    world.publish(stream.records)
    converge(world, expected)
    with world.opened() as stores:
        stored = stores.events.max_notification_id()
    assert conversation.stop() == 0, conversation.log()

    fresh = world.serve("conversation", name="conversation-fresh",
                        BONYCHAT_CONSUMER_GROUP_PREFIX=f"fresh-{world.suffix}")
    fresh.wait_log(r'resume_after": \{"0": \d+, "1": \d+, "2": \d+, "3": \d+\}')
    world.publish([(b"ws_z:late", json.dumps({
        "event_id": "late-1", "type": "message.received", "workspace_id": "ws_z",
        "contact_id": "late", "occurred_at": "2026-11-01T10:00:00Z",
        "channel": {"type": "sms"}}).encode())])
    with world.opened() as stores:
        wait_until(lambda: stores.read_models.conversations("ws_z"), SETTLE,
                   "the late event's conversation")
        assert stores.events.max_notification_id() == stored + 2  # opened + message only
    counts = prometheus(fresh, fresh.port())
    expected_counts = {"conversation/message.received/accepted": 1.0}
    if GATEWAY_INPUT:  # it validated the gateway record itself
        expected_counts["ingest/message.received/forwarded"] = 1.0
    assert counts == expected_counts, counts
    converge(world, expected, timeout=5)
