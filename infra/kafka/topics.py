"""BonyChat Kafka topics: the single definition, and an idempotent creator.

Import ``TOPICS`` (name -> (partitions, config)) from tests instead of
repeating names and settings; run this file to create whatever is missing:

    .venv/bin/python infra/kafka/topics.py [--bootstrap 127.0.0.1:19092]

Existing topics are left alone (their partitions/config are not altered, a
difference is only reported). Partition count comes from BONYCHAT_PARTITIONS
(default 4).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

DAY_MS = 24 * 60 * 60 * 1000
PARTITIONS = int(os.environ.get("BONYCHAT_PARTITIONS", "4"))
#: a dead letter keeps the whole raw input, and an input may be larger than we
#: accept (over 1 MiB uncompressed, which a compressed gateway batch can carry):
#: the DLQ takes records up to 4 MiB so such an input is kept, not lost.
#: Keep equal to ``services.runtime.kafka.MAX_RECORD_BYTES``.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
REPLICATION_FACTOR = 1  # single local broker

GATEWAY_EVENTS = "bonychat.gateway.events.v1"
GATEWAY_EVENTS_DLQ = "bonychat.gateway.events.dlq.v1"
CONVERSATION_COMMANDS = "bonychat.conversation.commands.v1"
CONVERSATION_EVENTS = "bonychat.conversation.events.v1"

TOPICS: dict[str, tuple[int, dict[str, str]]] = {
    GATEWAY_EVENTS: (
        PARTITIONS,
        {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    GATEWAY_EVENTS_DLQ: (
        PARTITIONS,
        {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS),
         "max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
    ),
    # internal command topic (gateway -> conversation service)
    CONVERSATION_COMMANDS: (
        PARTITIONS,
        {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    ),
    # the event log: kept forever
    CONVERSATION_EVENTS: (
        PARTITIONS,
        {"cleanup.policy": "delete", "retention.ms": "-1"},
    ),
}


async def ensure_topics(
    bootstrap: str,
    topics: dict[str, tuple[int, dict[str, str]]] = TOPICS,
    *,
    replication_factor: int = REPLICATION_FACTOR,
) -> list[str]:
    """Create the missing topics; return the names that were created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            new = [
                NewTopic(
                    name=name,
                    num_partitions=topics[name][0],
                    replication_factor=replication_factor,
                    topic_configs=dict(topics[name][1]),
                )
                for name in missing
            ]
            resp = await admin.create_topics(new, timeout_ms=15000)
            for item in resp.topic_errors:
                name, code = item[0], item[1]
                msg = item[2] if len(item) > 2 else None
                if code and code != TopicAlreadyExistsError.errno:
                    raise RuntimeError(
                        f"creating topic {name} failed: error {code} {msg or ''}".rstrip()
                    )
        # Report (don't fix) partition-count drift on pre-existing topics.
        present = [n for n in topics if n in existing]
        if present:
            for meta in await admin.describe_topics(present):
                name = meta["topic"]
                got = len(meta["partitions"])
                if got != topics[name][0]:
                    print(
                        f"warning: topic {name} has {got} partitions, definition says "
                        f"{topics[name][0]} (left as is; purge the infra state to recreate)",
                        file=sys.stderr,
                    )
        return missing
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Create BonyChat Kafka topics (idempotent).")
    ap.add_argument(
        "--bootstrap",
        default=os.environ.get("BONYCHAT_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
        help="Kafka bootstrap servers (default: $BONYCHAT_KAFKA_BOOTSTRAP or 127.0.0.1:19092)",
    )
    ap.add_argument("--list", action="store_true", help="print the topic definitions and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (parts, cfg) in TOPICS.items():
            print(name, parts, " ".join(f"{k}={v}" for k, v in sorted(cfg.items())))
        return 0
    created = asyncio.run(ensure_topics(args.bootstrap))
    if created:
        print("created topics: " + ", ".join(created))
    else:
        print(f"topics ok ({len(TOPICS)} present)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
