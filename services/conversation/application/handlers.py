"""One small handler per command: resolve the contact, let the aggregate decide.

A command is the ``Source`` of what it decides (it carries the gateway event's
id, time and actor), so it is handed to the aggregate as it is.

Before a command is decided, the contact it applies to closes its conversation
if it expired by the command's time (CONTRACT §6.4); a merge is an event of both
contacts, so both are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from schemas.commands import (
    AcknowledgeBotResponse,
    AssignConversation,
    CloseConversation,
    CommandBase,
    ExpireInactive,
    MergeContacts,
    OpenConversation,
    OpenWithWelcome,
    ReceiveMessage,
    SendMessage,
)
from services.conversation.domain.contact import Contact, merge


class Contacts(Protocol):
    """The unit of work's view of contact aggregates."""

    def get(self, workspace_id: str, contact_id: str) -> Contact: ...

    def inactivity_timeout(self, workspace_id: str) -> int | None:
        """The workspace's ``inactivity_timeout_seconds`` in force now (None: never)."""
        ...


def survivor(contacts: Contacts, workspace_id: str, contact_id: str) -> Contact:
    """The contact that events for ``contact_id`` apply to (follows merges transitively)."""
    return _followed(contacts, contacts.get(workspace_id, contact_id))


def _followed(contacts: Contacts, contact: Contact) -> Contact:
    """The contact ``contact`` was merged into, transitively (itself if it was not)."""
    workspace_id = contact.workspace_id
    hops = 0
    while contact.merged_into is not None:
        contact = contacts.get(workspace_id, contact.merged_into)
        hops += 1
        if hops > 10_000:  # merges never form cycles; this guards corrupt data
            raise RuntimeError(f"merge chain too long at {contact.contact_id}")
    return contact


def expired(contact: Contact, cmd: CommandBase, contacts: Contacts) -> Contact:
    """``contact``, its conversation closed first if it expired by ``cmd``'s time."""
    contact.expire(cmd, contacts.inactivity_timeout(cmd.workspace_id))
    return contact


def target_of(cmd: CommandBase, contacts: Contacts) -> Contact:
    """The contact ``cmd`` applies to (after merges), expired conversation closed:
    :func:`survivor` then :func:`expired`, the merges followed only for a contact
    that was merged (most never are; every command asks)."""
    contact = contacts.get(cmd.workspace_id, cmd.contact_id)
    if contact.merged_into is not None:
        contact = _followed(contacts, contact)
    return expired(contact, cmd, contacts)


def receive_message(cmd: ReceiveMessage, contacts: Contacts) -> None:
    target = target_of(cmd, contacts)
    target.receive_message(cmd, cmd.channel_type, cmd.channel_id, cmd.message_id)


def send_message(cmd: SendMessage, contacts: Contacts) -> None:
    target_of(cmd, contacts).send_message(cmd)


def welcome(cmd: OpenWithWelcome, contacts: Contacts) -> None:
    target = target_of(cmd, contacts)
    target.welcome(cmd, cmd.channel_type, cmd.channel_id)


def open_conversation(cmd: OpenConversation, contacts: Contacts) -> None:
    target = target_of(cmd, contacts)
    target.open(cmd, cmd.opened_by, cmd.channel_type, cmd.channel_id)


def close_conversation(cmd: CloseConversation, contacts: Contacts) -> None:
    target = target_of(cmd, contacts)
    target.close(cmd, cmd.closed_by, cmd.category, cmd.summary)


def assign_conversation(cmd: AssignConversation, contacts: Contacts) -> None:
    target = target_of(cmd, contacts)
    target.assign(cmd, cmd.assignee_id, cmd.team_given, cmd.team_id)


def acknowledge(cmd: AcknowledgeBotResponse, contacts: Contacts) -> None:
    """Accepted with no lifecycle effect (an expired conversation still closes first)."""
    target_of(cmd, contacts)


def expire_inactive(cmd: ExpireInactive, contacts: Contacts) -> None:
    """A sweep: only the closing after inactivity, if it is due."""
    target_of(cmd, contacts)


def merge_contacts(cmd: MergeContacts, contacts: Contacts) -> None:
    primary = target_of(cmd, contacts)
    secondary = expired(contacts.get(cmd.workspace_id, cmd.secondary_contact_id), cmd,
                        contacts)
    merge(primary, secondary, cmd)


Handler = Callable[[CommandBase, Contacts], None]
HANDLERS: dict[type[CommandBase], Handler] = {
    ReceiveMessage: receive_message,  # type: ignore[dict-item]
    SendMessage: send_message,  # type: ignore[dict-item]
    OpenWithWelcome: welcome,  # type: ignore[dict-item]
    OpenConversation: open_conversation,  # type: ignore[dict-item]
    CloseConversation: close_conversation,  # type: ignore[dict-item]
    AssignConversation: assign_conversation,  # type: ignore[dict-item]
    AcknowledgeBotResponse: acknowledge,  # type: ignore[dict-item]
    MergeContacts: merge_contacts,  # type: ignore[dict-item]
    ExpireInactive: expire_inactive,  # type: ignore[dict-item]
}


def handle(cmd: CommandBase, contacts: Contacts) -> None:
    """Dispatch a command; lifecycle rejections propagate as named errors."""
    HANDLERS[type(cmd)](cmd, contacts)
