"""Topic names, consumer group names and Kafka client tuning of the runtime.

The names are the contract's (CONTRACT §5). ``BONYCHAT_TOPIC_SUFFIX`` appends
``.SUFFIX`` to every topic so that tests (or a staging copy on a shared broker)
get their own topics. The tuning knobs are the ``kafka_*`` fields of
:class:`~services.settings.Settings` (``BONYCHAT_KAFKA_*`` variables).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from services.settings import Settings

GATEWAY_EVENTS: Final = "bonychat.gateway.events.v1"
GATEWAY_EVENTS_DLQ: Final = "bonychat.gateway.events.dlq.v1"
CONVERSATION_COMMANDS: Final = "bonychat.conversation.commands.v1"
CONVERSATION_EVENTS: Final = "bonychat.conversation.events.v1"


@dataclass(frozen=True, slots=True)
class Topics:
    """The four topics one deployment uses."""

    gateway: str = GATEWAY_EVENTS
    dlq: str = GATEWAY_EVENTS_DLQ
    commands: str = CONVERSATION_COMMANDS
    events: str = CONVERSATION_EVENTS

    @classmethod
    def with_suffix(cls, suffix: str) -> Topics:
        if not suffix:
            return cls()
        return cls(*(f"{name}.{suffix}" for name in
                     (GATEWAY_EVENTS, GATEWAY_EVENTS_DLQ, CONVERSATION_COMMANDS,
                      CONVERSATION_EVENTS)))

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls.with_suffix(settings.topic_suffix)

    def all(self) -> tuple[str, str, str, str]:
        return (self.gateway, self.dlq, self.commands, self.events)


def group_id(prefix: str, service: str) -> str:
    """The consumer group of ``service`` (``{prefix}-ingest``, ``{prefix}-conversation``)."""
    return f"{prefix}-{service}"


def partition_key(workspace_id: str, contact_id: str) -> bytes:
    """The record key of everything about one contact (CONTRACT §2, §5)."""
    return f"{workspace_id}:{contact_id}".encode()


@dataclass(frozen=True, slots=True)
class KafkaTuning:
    """Client settings that trade latency, throughput and failover time."""

    max_poll_records: int = 2_000
    fetch_max_wait_ms: int = 40
    fetch_min_bytes: int = 1_048_576
    commands_fetch_min_bytes: int = 1
    commands_fetch_max_wait_ms: int = 100
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    session_timeout_ms: int = 10_000
    linger_ms: int = 5
    max_batch_size: int = 256 * 1024
    poll_timeout_ms: int = 200
    batch_records: int = 32_000
    commit_interval_ms: int = 1_000

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaTuning:
        base = cls()
        return cls(
            max_poll_records=settings.kafka_max_poll_records,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            fetch_min_bytes=settings.kafka_fetch_min_bytes,
            commands_fetch_min_bytes=settings.kafka_commands_fetch_min_bytes,
            commands_fetch_max_wait_ms=settings.kafka_commands_fetch_max_wait_ms,
            max_partition_fetch_bytes=base.max_partition_fetch_bytes,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            linger_ms=settings.kafka_linger_ms,
            max_batch_size=base.max_batch_size,
            poll_timeout_ms=base.poll_timeout_ms,
            batch_records=settings.kafka_batch_records,
            commit_interval_ms=settings.kafka_commit_interval_ms,
        )

    def for_commands(self) -> KafkaTuning:
        """The tuning of the conversation service's consumer of the command topic."""
        return replace(self, fetch_min_bytes=self.commands_fetch_min_bytes,
                       fetch_max_wait_ms=self.commands_fetch_max_wait_ms)
