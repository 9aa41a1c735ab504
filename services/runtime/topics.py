"""Topic names, consumer group names and Kafka client tuning of the runtime.

The names are the contract's (CONTRACT §5). ``BONYCHAT_TOPIC_SUFFIX`` appends
``.SUFFIX`` to every topic so that tests (or a staging copy on a shared broker)
get their own topics. The tuning knobs are read from ``BONYCHAT_KAFKA_*``
variables; they are runtime concerns not yet in :class:`~services.settings.Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Topics:
        env = os.environ if environ is None else environ
        return cls.with_suffix(env.get("BONYCHAT_TOPIC_SUFFIX", "").strip())

    def all(self) -> tuple[str, str, str, str]:
        return (self.gateway, self.dlq, self.commands, self.events)


def group_id(prefix: str, service: str) -> str:
    """The consumer group of ``service`` (``{prefix}-ingest``, ``{prefix}-conversation``)."""
    return f"{prefix}-{service}"


def partition_key(workspace_id: str, contact_id: str) -> bytes:
    """The record key of everything about one contact (CONTRACT §2, §5)."""
    return f"{workspace_id}:{contact_id}".encode()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class KafkaTuning:
    """Client settings that trade latency, throughput and failover time."""

    max_poll_records: int = 2_000
    fetch_max_wait_ms: int = 100
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    session_timeout_ms: int = 10_000
    linger_ms: int = 5
    max_batch_size: int = 256 * 1024
    poll_timeout_ms: int = 200
    batch_records: int = 8_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaTuning:
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            max_poll_records=_int(env, "BONYCHAT_KAFKA_MAX_POLL_RECORDS", base.max_poll_records),
            fetch_max_wait_ms=_int(env, "BONYCHAT_KAFKA_FETCH_MAX_WAIT_MS",
                                   base.fetch_max_wait_ms),
            max_partition_fetch_bytes=base.max_partition_fetch_bytes,
            session_timeout_ms=_int(env, "BONYCHAT_KAFKA_SESSION_TIMEOUT_MS",
                                    base.session_timeout_ms),
            linger_ms=_int(env, "BONYCHAT_KAFKA_LINGER_MS", base.linger_ms),
            max_batch_size=base.max_batch_size,
            poll_timeout_ms=base.poll_timeout_ms,
            batch_records=_int(env, "BONYCHAT_KAFKA_BATCH_RECORDS", base.batch_records),
        )
