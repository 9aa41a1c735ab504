"""Typed settings, read once from the environment (prefix ``BONYCHAT_``) and validated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE = "./bonychat.db"


def parse_tokens(text: str | None) -> dict[str, str]:
    """``ws1=tok1,ws2=tok2`` -> ``{"tok1": "ws1", ...}`` (token -> workspace)."""
    tokens: dict[str, str] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        workspace, sep, token = item.partition("=")
        if not sep or not workspace.strip() or not token.strip():
            raise ValueError(f"token entry {item!r} is not workspace_id=token")
        tokens[token.strip()] = workspace.strip()
    return tokens


class Settings(BaseSettings):
    """Everything a BonyChat process can be configured with."""

    model_config = SettingsConfigDict(env_prefix="BONYCHAT_", frozen=True, extra="ignore")

    database_url: str = DEFAULT_DATABASE
    kafka_bootstrap: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    gateway_tokens: SecretStr = SecretStr("")
    analytics_tokens: SecretStr = SecretStr("")
    gateway_tokens_file: str | None = None
    analytics_tokens_file: str | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    #: how `bonychat import` uses the cores: "processes" (parse, decide+store and
    #: project in three processes), "threads" (one process, a writer thread) or
    #: "inline" (everything in sequence, for debugging and comparisons)
    import_mode: Literal["processes", "threads", "inline"] = "processes"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    consumer_group_prefix: str = "bonychat"
    partitions: int = Field(default=4, ge=1)

    @field_validator("gateway_tokens", "analytics_tokens")
    @classmethod
    def _tokens_well_formed(cls, value: SecretStr) -> SecretStr:
        parse_tokens(value.get_secret_value())
        return value

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    def sqlite_path(self) -> str:
        url = self.database_url
        return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url

    def tokens(self, kind: Literal["gateway", "analytics"]) -> dict[str, str]:
        secret = self.gateway_tokens if kind == "gateway" else self.analytics_tokens
        path = self.gateway_tokens_file if kind == "gateway" else self.analytics_tokens_file
        text = secret.get_secret_value()
        if path:
            with open(path, encoding="utf-8") as handle:
                text = ",".join([text, *(line.strip() for line in handle)])
        return parse_tokens(text)
