"""The conversation service reading the gateway topic itself, on real Kafka + PostgreSQL.

``BONYCHAT_CONVERSATION_INPUT=gateway`` removes the ingest -> command-topic hop.
What a user sees must not change: the same conversations as the embedded import,
and the same DLQ records, byte for byte and header for header, as ingest writes
(``=commands``, the layout before). Positions are tracked per gateway partition
in PostgreSQL, so a ``kill -9`` loses and repeats nothing.
"""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kafka_fixtures import (
    WORKSPACES,
    Consumed,
    ServeProcess,
    World,
    embedded_snapshot,
    generate_stream,
    new_world,
    read_topic,
    snapshot,
    wait_until,
)

pytestmark = pytest.mark.integration
SETTLE = 90  # seconds: upper bound for one wait; typical runs take 1-10 s
GATEWAY = {"BONYCHAT_CONVERSATION_INPUT": "gateway"}
COMMANDS = {"BONYCHAT_CONVERSATION_INPUT": "commands"}


@pytest.fixture
def worlds(infra: dict[str, str]) -> Iterator[list[World]]:
    made: list[World] = []
    yield made
    for world in made:
        world.destroy()


def converge(world: World, expected: dict[str, Any]) -> None:
    with world.opened() as stores:
        try:
            wait_until(lambda: snapshot(stores.read_models, WORKSPACES) == expected, SETTLE,
                       "the read model to equal the embedded import", 0.25)
        except AssertionError:
            got = snapshot(stores.read_models, WORKSPACES)
            for ws in WORKSPACES:
                assert got[ws]["conversations"] == expected[ws]["conversations"], ws
            raise


def dead_letters(world: World, count: int) -> list[Consumed]:
    def probe() -> list[Consumed] | None:
        found = read_topic(world.bootstrap, world.topics.dlq, idle_ms=500)
        return found if len(found) >= count else None
    return wait_until(probe, SETTLE, f"{count} dead letters")


def comparable(world: World, found: list[Consumed]) -> list[tuple[Any, ...]]:
    """DLQ records without the test's topic suffix: key, value, partition, headers."""
    rows = []
    for record in found:
        headers = dict(record.headers)
        assert headers.pop("original_topic") == world.topics.gateway
        rows.append((record.key, record.value, record.partition, sorted(headers.items())))
    return sorted(rows, key=repr)


def gateway_records_read(process: ServeProcess) -> float:
    """``bonychat_events_total{service="ingest"}``: gateway records validated (forwarded or
    invalid) by ``process``, whichever service read them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{process.port()}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m[1]) for m in re.finditer(
        r'^bonychat_events_total\{[^}]*service="ingest"[^}]*\} (\S+)$', text, re.M))


def tracked(world: World) -> dict[str, int]:
    """The positions PostgreSQL tracks for the gateway and command topics' partitions."""
    with world.opened() as stores:
        found = {}
        for topic in (world.topics.gateway, world.topics.commands):
            for partition in range(world.partitions):
                position = stores.events.position(f"{topic}:{partition}")
                if position is not None:
                    found[f"{topic}:{partition}"] = position
        return found


def test_same_conversations_and_dead_letters_as_through_ingest(
        infra: dict[str, str], worlds: list[World]) -> None:
    stream = generate_stream(2_000, seed=23)
    assert stream.invalid > 0
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    before, after = new_world(infra), new_world(infra)
    worlds += [before, after]
    before.serve("ingest,conversation,projections", name="through-ingest", **COMMANDS)
    direct = after.serve("ingest,conversation,projections", name="direct", **GATEWAY)
    direct.wait_log("ingest not started")
    # Keyed, so each record lands on the same partition and offset in both worlds.
    records = [(key or b"bad:%d" % n, value) for n, (key, value) in enumerate(stream.records)]
    for world in (before, after):
        world.publish(records)
    for world in (before, after):
        converge(world, expected)

    old = comparable(before, dead_letters(before, stream.invalid))
    new = comparable(after, dead_letters(after, stream.invalid))
    assert len(new) == stream.invalid and new == old
    sources = Counter(dict(headers)["source"] for _, _, _, headers in new)
    assert sources == {"kafka": stream.invalid}

    # The gateway topic's positions are tracked in PostgreSQL; no command was produced.
    positions = tracked(after)
    gateway = {k: v for k, v in positions.items() if k.startswith(after.topics.gateway + ":")}
    assert sum(v + 1 for v in gateway.values()) == len(records), positions
    assert read_topic(after.bootstrap, after.topics.commands, idle_ms=500) == []
    assert not any(k.startswith(before.topics.gateway) for k in tracked(before))


def test_kill9_resumes_from_the_tracked_gateway_position(
        infra: dict[str, str], worlds: list[World]) -> None:
    stream = generate_stream(3_000, seed=29)
    expected = embedded_snapshot(stream.lines, WORKSPACES)
    world = new_world(infra)
    worlds.append(world)
    world.serve("projections", name="projections", **GATEWAY)
    victim = world.serve("conversation", name="conversation-1", **GATEWAY)
    victim.wait_log(r"partitions assigned.*\"partitions\": \[0, 1, 2, 3\]")
    half = len(stream.records) // 2
    world.publish(stream.records[:half])
    with world.opened() as stores:
        wait_until(lambda: stores.events.max_notification_id() > 0, SETTLE,
                   "the first stored events", 0.02)
    victim.kill9()
    world.publish(stream.records[half:])
    successor = world.serve("conversation", name="conversation-2", **GATEWAY)
    topic = world.topics.gateway.replace(".", r"\.")
    successor.wait_log(rf'"topic": "{topic}", "partitions": \[0, 1, 2, 3\], '
                       r'"resume_after": \{[^}]*\d')  # resumed from PostgreSQL tracking
    converge(world, expected)

    # Every invalid record dead-lettered (at least once: kill -9 may repeat a DLQ record).
    found = dead_letters(world, stream.invalid)
    offsets = {(r.headers["original_partition"], r.headers["original_offset"]) for r in found}
    assert len(offsets) == stream.invalid
    positions = tracked(world)
    assert sum(v + 1 for k, v in positions.items()
               if k.startswith(world.topics.gateway + ":")) == len(stream.records)
    assert successor.stop() == 0, successor.log()


def test_switching_to_gateway_input_starts_where_ingest_stopped(
        infra: dict[str, str], worlds: list[World]) -> None:
    """An existing deployment switched over: nothing decided or dead-lettered twice."""
    stream = generate_stream(2_000, seed=31)
    records = [(key or b"bad:%d" % n, value) for n, (key, value) in enumerate(stream.records)]
    half = len(records) // 2
    first_invalid = sum(1 for key, _ in stream.records[:half] if key is None)
    assert 0 < first_invalid < stream.invalid
    world = new_world(infra)
    worlds.append(world)
    before = world.serve("ingest,conversation,projections", name="before", **COMMANDS)
    world.publish(records[:half])
    converge(world, embedded_snapshot([v for _, v in records[:half]], WORKSPACES))
    dead_letters(world, first_invalid)
    assert before.stop() == 0, before.log()  # ingest commits its offsets as it stops

    after = world.serve("ingest,conversation,projections", name="after", **GATEWAY)
    after.wait_log(r'"partitions assigned".*"from_ingest": \{"\d": [1-9]')
    world.publish(records[half:])
    converge(world, embedded_snapshot(stream.lines, WORKSPACES))
    found = read_topic(world.bootstrap, world.topics.dlq, idle_ms=1_000)
    assert len(found) == stream.invalid  # each invalid record dead-lettered once
    # It read the gateway topic from where ingest stopped: the second half only.
    assert gateway_records_read(after) == len(records) - half
