"""Gateways publish with any Kafka client and any compression codec (issue 9, part 1).

librdkafka's ``kcat`` (not our client, not Python) publishes a generated stream
once per codec (``-z gzip|snappy|lz4|zstd``) to the gateway topic, and once per
codec straight to the command topic (the conversation service's input); the
conversations must be exactly those of the embedded import of the same lines.
The broker's log files show the batches really were stored compressed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kafka_fixtures import (
    KCAT_CODECS,
    ServeProcess,
    World,
    embedded_snapshot,
    generate_stream,
    kcat_publish,
    new_world,
    publish,
    read_topic,
    snapshot,
    stored_codecs,
    wait_until,
)

from services.ingest.domain.normalise import MAX_INPUT_BYTES, Invalid, parse
from services.runtime.sinks import command_record

pytestmark = pytest.mark.integration
SETTLE = 90  # seconds: upper bound for one wait; typical runs take 1-5 s


@pytest.fixture(scope="module")
def running(infra: dict[str, str]) -> Iterator[tuple[World, ServeProcess]]:
    """One world, all services in one ``bonychat serve``; every test uses its own workspace."""
    try:
        subprocess.run(["kcat", "-V"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("kcat is missing: `make deps-test` (infra/deps.sh) installs it")
    world = new_world(infra)
    process = world.serve(name="codecs")
    process.port()
    try:
        yield world, process
        assert process.stop() == 0, process.log()
    finally:
        world.destroy()


def converge(world: World, expected: dict[str, Any], workspaces: tuple[str, ...]) -> None:
    with world.opened() as stores:
        try:
            wait_until(lambda: snapshot(stores.read_models, workspaces) == expected,
                       SETTLE, "the read model to equal the embedded import", 0.25)
        except AssertionError:
            got = snapshot(stores.read_models, workspaces)
            for ws in workspaces:
                assert got[ws]["conversations"] == expected[ws]["conversations"], ws
                assert got[ws]["metrics"] == expected[ws]["metrics"], ws
            raise


def assert_stored_with(topic: str, codec: str) -> None:
    codecs = stored_codecs(topic)
    if codecs is not None:  # the broker's files are on this machine (infra/up.sh)
        assert codec in codecs, f"no {codec} batch in {topic}: {codecs}"


@pytest.mark.parametrize("codec", KCAT_CODECS)
def test_gateway_topic_in_any_codec(running: tuple[World, ServeProcess], codec: str) -> None:
    world, process = running
    workspaces = (f"ws_gw_{codec}",)
    stream = generate_stream(600, seed=len(codec), contacts=15, workspaces=workspaces)
    expected = embedded_snapshot(stream.lines, workspaces)
    assert any(ws["conversations"] for ws in expected.values())

    kcat_publish(world.bootstrap, world.topics.gateway, stream.records, codec)
    assert_stored_with(world.topics.gateway, codec)
    converge(world, expected, workspaces)
    assert process.popen.poll() is None, process.log()


@pytest.mark.parametrize("codec", KCAT_CODECS)
def test_command_topic_in_any_codec(running: tuple[World, ServeProcess], codec: str) -> None:
    """The conversation service's input, written by another client with another codec."""
    world, process = running
    workspaces = (f"ws_cmd_{codec}",)
    stream = generate_stream(600, seed=10 + len(codec), contacts=15, workspaces=workspaces)
    expected = embedded_snapshot(stream.lines, workspaces)
    commands = [command_record(item) for item in map(parse, stream.lines)
                if not isinstance(item, Invalid)]

    kcat_publish(world.bootstrap, world.topics.commands, commands, codec)
    assert_stored_with(world.topics.commands, codec)
    converge(world, expected, workspaces)
    assert process.popen.poll() is None, process.log()


def test_values_that_are_not_json_go_to_the_dlq_unchanged(
        running: tuple[World, ServeProcess]) -> None:
    """Binary, non-UTF-8 and truncated values: dead letters with a reason, bytes kept."""
    world, process = running
    marker = b"not-json-" + world.suffix.encode()
    values = [marker + b"\xff\xfe\x00\x01 binary",
              marker + b"\xc3\x28 invalid utf-8",
              b'{"event_id": "' + marker + b'", "type": "message.rec']
    publish(world.bootstrap, world.topics.gateway, [(b"ws_bad:c1", v) for v in values])

    def dead() -> list[Any]:
        found = [r for r in read_topic(world.bootstrap, world.topics.dlq, idle_ms=500)
                 if marker in r.value]
        return found if len(found) == len(values) else []

    found = wait_until(dead, SETTLE, "three dead letters")
    assert sorted(r.value for r in found) == sorted(values)
    for record in found:
        assert "malformed JSON" in record.headers["reason"], record.headers
        assert record.headers["source"] == "kafka"
        assert record.headers["original_topic"] == world.topics.gateway
        assert int(record.headers["original_offset"]) >= 0
    assert process.popen.poll() is None, process.log()


def test_an_input_over_the_limit_is_dead_lettered_whole_and_the_partition_goes_on(
        running: tuple[World, ServeProcess]) -> None:
    """Compressed, a gateway batch can carry a value over our 1 MiB limit: it is invalid,
    kept whole in the DLQ (which takes 4 MiB), and the contact's next event is processed."""
    world, process = running
    ws = "ws_big"
    event = {"event_id": "big-1", "type": "message.received", "workspace_id": ws,
             "contact_id": "c1", "occurred_at": "2026-11-24T10:00:00Z",
             "channel": {"type": "whatsapp"}, "data": {"text": ""}}
    head = orjson.dumps(event)
    padding = MAX_INPUT_BYTES + 10 - len(head)
    event["data"] = {"text": "x" * padding}
    big = orjson.dumps(event)
    assert len(big) > MAX_INPUT_BYTES
    after = orjson.dumps({**event, "event_id": "big-2", "data": {"text": "hello"}})
    records = [(b"ws_big:c1", big), (b"ws_big:c1", after)]
    kcat_publish(world.bootstrap, world.topics.gateway, records, "zstd",
                 "-X", "message.max.bytes=4000000")

    def dead() -> list[Any]:
        return [r for r in read_topic(world.bootstrap, world.topics.dlq, idle_ms=500)
                if r.headers.get("original_topic") == world.topics.gateway
                and len(r.value) == len(big)]

    found = wait_until(dead, SETTLE, "the oversized input in the DLQ")
    assert found[0].value == big
    assert f"{len(big):,} bytes" in found[0].headers["reason"], found[0].headers

    def opened() -> list[Any]:
        with world.opened() as stores:
            return list(stores.read_models.conversations(ws))

    rows = wait_until(opened, SETTLE, "the next event's conversation")
    assert [row.messages_received for row in rows] == [1]
    assert process.popen.poll() is None, process.log()
