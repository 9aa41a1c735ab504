"""Typed settings, read once from the environment (prefix ``BONYCHAT_``) and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE = "./bonychat.db"


def parse_tokens(text: str | None) -> dict[str, str]:
    """``ws1=tok1,ws2=tok2`` -> ``{"tok1": "ws1", ...}`` (token -> workspace).

    An error names the entry's position, never its text: the text holds a secret.
    """
    tokens: dict[str, str] = {}
    for number, raw in enumerate((text or "").split(","), start=1):
        item = raw.strip()
        if not item:
            continue
        workspace, sep, token = item.partition("=")
        if not sep or not workspace.strip() or not token.strip():
            raise ValueError(f"token entry {number} is not workspace_id=token")
        tokens[token.strip()] = workspace.strip()
    return tokens


def read_token_file(path: str) -> str:
    """A token file's entries as one ``parse_tokens`` text.

    One ``workspace_id=token`` per line (commas also separate); blank lines and
    lines starting with ``#`` are skipped.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise ValueError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    return ",".join(line for line in lines if line and not line.startswith("#"))


class Settings(BaseSettings):
    """Everything a BonyChat process can be configured with."""

    #: an empty variable counts as unset (``BONYCHAT_X=`` keeps the default)
    model_config = SettingsConfigDict(env_prefix="BONYCHAT_", frozen=True, extra="ignore",
                                      env_ignore_empty=True)

    database_url: str = DEFAULT_DATABASE
    kafka_bootstrap: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    gateway_tokens: SecretStr = SecretStr("")
    analytics_tokens: SecretStr = SecretStr("")
    #: may change workspace settings (PUT /v1/workspaces/{ws}/settings), and read them
    admin_tokens: SecretStr = SecretStr("")
    #: ``BONYCHAT_<REALM>_TOKENS_FILE``: the same entries, one per line, read from a file
    #: so secrets stay out of process listings and environments
    gateway_tokens_file: str | None = None
    analytics_tokens_file: str | None = None
    admin_tokens_file: str | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    #: how `bonychat import` uses the cores: "processes" (parse, decide+store and
    #: project in three processes), "threads" (one process, a writer thread) or
    #: "inline" (everything in sequence, for debugging and comparisons)
    import_mode: Literal["processes", "threads", "inline"] = "processes"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    consumer_group_prefix: str = "bonychat"
    partitions: int = Field(default=4, ge=1)
    #: appended as ``.SUFFIX`` to every topic name: tests (or a staging copy on a
    #: shared broker) get their own topics
    topic_suffix: str = ""
    #: Kafka client tuning (latency, throughput, failover time): services/runtime/topics.py
    kafka_max_poll_records: int = Field(default=2_000, ge=1)
    #: while gateway records flow, the broker holds each fetch of ingest until
    #: ``kafka_fetch_min_bytes`` are there or ``kafka_fetch_max_wait_ms`` have passed:
    #: ingest cycles (fetch, produce) about once per wait instead of once per few
    #: records, and so does the conversation service (a transaction, a NOTIFY) behind
    #: it; a backlog is fetched at once. Adds up to the wait to the latency
    #: (docs/runtime.md, "Low load: batching fetches by time"); 1 returns at once
    kafka_fetch_max_wait_ms: int = Field(default=40, ge=0)
    kafka_fetch_min_bytes: int = Field(default=1_048_576, ge=1)
    #: the same for the conversation service's fetches of the command topic: 1 (at
    #: once), because ingest already writes it once per wait; a larger value also
    #: batches commands that gateways POST over HTTP, for up to the wait more latency
    kafka_commands_fetch_min_bytes: int = Field(default=1, ge=1)
    #: how long the broker may hold the conversation service's fetch when the command
    #: topic has less than that: with 1 byte it answers at the first record anyway, so
    #: a wait longer than ingest's cycle (``kafka_fetch_max_wait_ms`` plus its work)
    #: saves the empty fetch that expired before each ingest cycle's records
    #: (docs/runtime.md, "Per-cycle work")
    kafka_commands_fetch_max_wait_ms: int = Field(default=100, ge=0)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1)
    kafka_linger_ms: int = Field(default=5, ge=0)
    kafka_batch_records: int = Field(default=32_000, ge=1)
    #: ingest commits the offsets of acknowledged fetches at most this often (and
    #: whenever a fetch comes back empty or it stops); 0 commits after every fetch.
    #: A crash redelivers at most this much of the gateway topic (harmless: the
    #: commands dedupe), and each commit is a broker write: see docs/runtime.md
    kafka_commit_interval_ms: int = Field(default=1_000, ge=0)
    #: what the conversation service consumes. "gateway" (the default): the gateway
    #: topic itself (each record validated as ingest validates it, an invalid one
    #: written to the DLQ topic as ingest writes it) and the command topic (HTTP
    #: posts, the inactivity sweep); the ingest service then has nothing to do and is
    #: not run. "commands": only the command topic, which the ingest service fills
    #: from the gateway topic (validation on other machines than the database
    #: writers). Switch with every conversation copy stopped (docs/runtime.md,
    #: "Conversation input")
    conversation_input: Literal["commands", "gateway"] = "gateway"
    #: the outbox relay runs inside ``serve --services conversation`` (False: only as
    #: ``--services relay``)
    relay_with_conversation: bool = True
    #: the relay and the projections wake up at most once per this many ms when
    #: events trickle in (the commits meanwhile are read as one page; under a
    #: backlog, or after a quiet spell, they do not wait): fewer reads, writes and
    #: produce requests at low load for at most this much added latency
    relay_interval_ms: int = Field(default=250, ge=0, le=60_000)
    projections_interval_ms: int = Field(default=0, ge=0, le=60_000)
    #: stored events the relay and the projections read (and publish or project) per
    #: page at most: under a backlog, each page costs a read, a write of the position
    #: (and, for the relay, a produce request per broker) beside its events
    relay_page: int = Field(default=20_000, ge=1, le=100_000)
    projections_page: int = Field(default=20_000, ge=1, le=100_000)
    #: how often the dependency watch asks Kafka and PostgreSQL whether they answer
    health_probe_seconds: float = Field(default=1.0, gt=0)
    #: the longest an HTTP POST waits for Kafka's acknowledgements before a 503
    http_produce_timeout_seconds: float = Field(default=10.0, gt=0)
    #: freeze start-up objects and raise the collector thresholds (False: Python's defaults)
    gc_tuning: bool = True
    #: with ``gc_tuning``: the collector's young-generation threshold (net allocations
    #: of tracked objects between two young collections; services/runtime/gc_tuning.py)
    gc_young_threshold: int = Field(default=1_000_000, ge=700)
    #: a ``serve`` process (or worker process) with Kafka that runs only followers (the
    #: relay and/or the projections) lowers its CPU priority by this much (``nice``), so
    #: that on a busy machine the conversation service, which sets the pace, gets the CPU
    #: first; 0 leaves it alone (services/runtime/priority.py)
    follower_niceness: int = Field(default=10, ge=0, le=19)
    #: ``bonychat serve`` with Kafka: "auto" runs each service in a worker process of
    #: its own under the serve process when this process may use two or more CPUs;
    #: "1" keeps every service in the serve process (services/runtime/workers.py)
    serve_processes: Literal["auto", "1"] = "auto"
    #: how those worker processes first start: "fork" from the serve process once it has
    #: loaded their code (one load for all; exec where fork is unavailable), or "exec"
    #: (each loads its own); a restart always execs (services/runtime/worker_fork.py)
    serve_worker_start: Literal["fork", "exec"] = "fork"
    #: processes of a partitioned replay (None: one per CPU, at most 8)
    replay_workers: int | None = Field(default=None, ge=0)

    @field_validator("topic_suffix", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("gateway_tokens", "analytics_tokens", "admin_tokens")
    @classmethod
    def _tokens_well_formed(cls, value: SecretStr) -> SecretStr:
        parse_tokens(value.get_secret_value())
        return value

    @field_validator("gateway_tokens_file", "analytics_tokens_file", "admin_tokens_file")
    @classmethod
    def _token_file_readable(cls, value: str | None) -> str | None:
        if value:
            parse_tokens(read_token_file(value))
        return value

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    def sqlite_path(self) -> str:
        url = self.database_url
        return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url

    def tokens(self, kind: str) -> dict[str, str]:
        """Token -> workspace of realm ``kind``: ``<kind>_tokens`` plus ``<kind>_tokens_file``."""
        secret = getattr(self, f"{kind}_tokens", None)
        path = getattr(self, f"{kind}_tokens_file", None)
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else ""
        if path:
            text = ",".join([text, read_token_file(path)])
        return parse_tokens(text)


def replace_environment(env: Mapping[str, str]) -> None:
    """This process's environment becomes ``env`` (a forked ``serve`` worker takes the
    environment an exec'd one would get: services/runtime/worker_fork.py)."""
    os.environ.clear()
    os.environ.update(env)


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides`` (``BONYCHAT_*`` settings of a child
    process it starts, e.g. a ``serve`` worker)."""
    return {**os.environ, **overrides}
