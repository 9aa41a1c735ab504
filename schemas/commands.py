"""Commands: what ingest asks the contact aggregate to do (imperative names).

Ingest turns a valid gateway envelope into exactly one of these. They travel
in-process in the embedded runtime and on the internal command topic in the
Kafka runtime, so they are versioned and serialisable like events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

COMMAND_SCHEMA_VERSION = 1

OpenerActor = Literal["user", "automation", "dialogflow"]
CloserActor = Literal["user", "automation", "dialogflow"]


class CommandBase(BaseModel):
    """What every command knows about the gateway event it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    workspace_id: str
    contact_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    actor_type: str | None = None
    actor_id: str | None = None

    @property
    def dedup_key(self) -> tuple[str, str]:
        return (self.workspace_id, self.event_id)

    @field_validator("occurred_at")
    @classmethod
    def _has_offset(cls, value: datetime) -> datetime:
        """A time without its offset is refused (ingest always writes one): compared
        with the aggregate's times it would fail its whole batch, not just itself."""
        if value.utcoffset() is None:
            raise ValueError("occurred_at must carry a UTC offset (e.g. 'Z')")
        return value


class ReceiveMessage(CommandBase):
    command: Literal["ReceiveMessage"] = "ReceiveMessage"
    channel_type: str
    channel_id: str | None = None
    message_id: str | None = None


class SendMessage(CommandBase):
    command: Literal["SendMessage"] = "SendMessage"


class OpenWithWelcome(CommandBase):
    command: Literal["OpenWithWelcome"] = "OpenWithWelcome"
    channel_type: str
    channel_id: str | None = None


class OpenConversation(CommandBase):
    command: Literal["OpenConversation"] = "OpenConversation"
    opened_by: OpenerActor
    channel_type: str | None = None
    channel_id: str | None = None


class CloseConversation(CommandBase):
    command: Literal["CloseConversation"] = "CloseConversation"
    closed_by: CloserActor
    category: str | None = None
    summary: str | None = None


class AssignConversation(CommandBase):
    command: Literal["AssignConversation"] = "AssignConversation"
    assignee_id: str | None
    team_given: bool = False
    team_id: str | None = None


class AcknowledgeBotResponse(CommandBase):
    """A Dialogflow response without ``RB_MARKDONE``: accepted, no lifecycle effect."""

    command: Literal["AcknowledgeBotResponse"] = "AcknowledgeBotResponse"


class MergeContacts(CommandBase):
    command: Literal["MergeContacts"] = "MergeContacts"
    secondary_contact_id: str


class ExpireInactive(CommandBase):
    """A sweep asks: close the contact's conversation if it expired by ``occurred_at``.

    Not a gateway event: it has no outcome and is never de-duplicated (asking
    twice closes once). ``event_id`` names the sweep (``sweep:`` + its time).
    """

    command: Literal["ExpireInactive"] = "ExpireInactive"


Command = Annotated[
    ReceiveMessage | SendMessage | OpenWithWelcome | OpenConversation | CloseConversation
    | AssignConversation | AcknowledgeBotResponse | MergeContacts | ExpireInactive,
    Field(discriminator="command"),
]


COMMAND_CLASSES: tuple[type[CommandBase], ...] = (
    ReceiveMessage, SendMessage, OpenWithWelcome, OpenConversation, CloseConversation,
    AssignConversation, AcknowledgeBotResponse, MergeContacts, ExpireInactive,
)


class CommandMessage(BaseModel):
    """Wrapper used to (de)serialise any command on the internal topic."""

    model_config = ConfigDict(frozen=True)
    body: Command
