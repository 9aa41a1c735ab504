"""Hand-written in-memory fakes of the storage ports (no I/O), for unit tests.

They keep the semantics of the SQLite adapters that matter to the core:

* :class:`FakeEventStore` stores events serialised (``encode_event`` /
  ``decode_event``, so a non-round-tripping event fails here as it would on disk),
  refuses a taken ``(aggregate, version)``, an outcome key already recorded, a
  position not after the recorded one or not at its ``after`` (``Positions``:
  each of them) with :class:`ConcurrencyConflict` and
  writes nothing of that commit, numbers notifications from 1, and records
  outcomes and dead letters atomically with the events.
* :class:`FakeReadModelStore` copies rows in and out (callers mutate rows), sorts
  conversations by ``opened_at``, ``contact_id``, ``conversation_id``, refuses a
  position not after the recorded one, or one whose ``after`` is not the recorded
  one (compare-and-set), with eventsourcing's ``IntegrityError`` (as the SQLite
  and PostgreSQL stores do) and resets only the ``projection:`` positions.

Both pass the store contract (``tests/store_contract.py``) that SQLite and
PostgreSQL pass: ``tests/unit/test_store_contract_fake.py``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from schemas.events import DomainEvent, decode_event, encode_event
from services.conversation.application.ports import (
    ConcurrencyConflict,
    DeadLetter,
    EventStore,
    Outcome,
    Position,
    Positions,
)
from services.conversation.domain.contact import aggregate_id
from services.projections.application.ports import ReadModelStore
from services.projections.domain.metrics import Fact, FactWindow, RowWindow, in_window
from services.projections.domain.rows import ConversationRow


def _positions(position: Position | None) -> list[Position]:
    if position is None:
        return []
    return list(position.all()) if isinstance(position, Positions) else [position]


class FakeEventStore:
    """:class:`services.conversation.application.ports.EventStore` in memory.

    Records every position of a :class:`Positions` (``RecordsManyPositions``, as
    PostgreSQL does), each a compare-and-set when it has ``after``.
    """

    tracks_many_positions = True

    def __init__(self) -> None:
        self.notifications: list[tuple[int, uuid.UUID, int, bytes]] = []
        self.by_aggregate: dict[uuid.UUID, dict[int, bytes]] = {}
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        self.dead_letters: list[DeadLetter] = []
        self.positions: dict[str, set[int]] = {}
        self.commits = 0
        #: commits refused with :class:`ConcurrencyConflict` (an injected one included)
        self.conflicts = 0
        self.fail_next_commit: BaseException | None = None
        #: run once right after the next successful commit (another process "gets in")
        self.after_next_commit: Callable[[], object] | None = None

    def load(self, originator_id: uuid.UUID) -> list[DomainEvent]:
        versions = self.by_aggregate.get(originator_id, {})
        return [decode_event(versions[v]) for v in sorted(versions)]

    def load_many(self, originator_ids: Collection[uuid.UUID]
                  ) -> dict[uuid.UUID, list[DomainEvent]]:
        return {oid: self.load(oid) for oid in originator_ids if oid in self.by_aggregate}

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        return {key for key in keys if key in self.outcomes}

    def commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               dead_letters: Sequence[DeadLetter], position: Position | None,
               read: Mapping[uuid.UUID, int] | None = None, *,
               originators: Sequence[uuid.UUID] | None = None) -> list[int]:
        if originators is not None:  # what the caller says must be what a store computes
            assert list(originators) == [aggregate_id(e.workspace_id, e.contact_id)
                                         for e in events], "wrong originator ids"
        try:
            return self._commit(events, outcomes, dead_letters, position, read)
        except ConcurrencyConflict:
            self.conflicts += 1
            raise

    def _commit(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
                dead_letters: Sequence[DeadLetter], position: Position | None,
                read: Mapping[uuid.UUID, int] | None) -> list[int]:
        if self.fail_next_commit is not None:
            error, self.fail_next_commit = self.fail_next_commit, None
            raise error
        self._check(events, outcomes, position)
        for originator, version in (read or {}).items():
            if max(self.by_aggregate.get(originator, {0: b""})) != version:
                raise ConcurrencyConflict(f"{originator} moved after version {version}")
        ids: list[int] = []
        for event in events:
            originator = aggregate_id(event.workspace_id, event.contact_id)
            state = encode_event(event)
            self.by_aggregate.setdefault(originator, {})[event.aggregate_version] = state
            notification_id = len(self.notifications) + 1
            self.notifications.append((notification_id, originator, event.aggregate_version,
                                       state))
            ids.append(notification_id)
        for outcome in outcomes:
            self.outcomes[(outcome.workspace_id, outcome.event_id)] = outcome
        self.dead_letters.extend(dead_letters)
        for each in _positions(position):
            self.positions.setdefault(each.name, set()).add(each.offset)
        self.commits += 1
        if self.after_next_commit is not None:
            hook, self.after_next_commit = self.after_next_commit, None
            hook()
        return ids

    def _check(self, events: Sequence[DomainEvent], outcomes: Sequence[Outcome],
               position: Position | None) -> None:
        """Raise before writing anything, like a rolled back transaction."""
        taken: set[tuple[uuid.UUID, int]] = set()
        for event in events:
            key = (aggregate_id(event.workspace_id, event.contact_id), event.aggregate_version)
            if key in taken or key[1] in self.by_aggregate.get(key[0], {}):
                raise ConcurrencyConflict(f"version {key[1]} of {key[0]} is taken")
            taken.add(key)
        keys = [(o.workspace_id, o.event_id) for o in outcomes]
        if len(set(keys)) != len(keys) or any(k in self.outcomes for k in keys):
            raise ConcurrencyConflict("outcome already recorded")
        for each in _positions(position):
            recorded = self.position(each.name)
            if each.after is not None and (-1 if recorded is None else recorded) != each.after:
                raise ConcurrencyConflict(f"position {each.name} is not where this batch "
                                          "continues from")
            if recorded is not None and each.offset <= recorded:
                raise ConcurrencyConflict(f"position {each} is not after the recorded one")

    def position(self, name: str) -> int | None:
        offsets = self.positions.get(name)
        return max(offsets) if offsets else None

    def read(self, after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        chosen = self.notifications[after:after + limit] if after >= 0 else []
        return [(nid, decode_event(state)) for nid, _, _, state in chosen]

    def max_notification_id(self) -> int:
        return len(self.notifications)


class FakeReadModelStore:
    """:class:`services.projections.application.ports.ReadModelStore` in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, ConversationRow] = {}
        self.positions: dict[str, set[int]] = {}
        self.fail_next_save: BaseException | None = None

    def load_rows(self, ids: Collection[str]) -> dict[str, ConversationRow]:
        return {cid: dataclasses.replace(self.rows[cid]) for cid in ids if cid in self.rows}

    def save(self, rows: Sequence[ConversationRow], position: Position) -> None:
        if self.fail_next_save is not None:
            error, self.fail_next_save = self.fail_next_save, None
            raise error
        recorded = self.position(position.name) or 0
        if position.after is not None and recorded != position.after:  # compare-and-set
            raise IntegrityError(f"projection position {position.name} moved to {recorded} "
                                 f"while a batch computed after {position.after} was projected")
        if position.offset <= recorded:  # single-row tracking
            raise IntegrityError(f"Failed to record tracking for {position}")
        for row in rows:
            self.rows[row.conversation_id] = dataclasses.replace(row)
        self.positions.setdefault(position.name, set()).add(position.offset)

    def position(self, name: str) -> int | None:
        offsets = self.positions.get(name)
        return max(offsets) if offsets else None

    def reset(self) -> None:
        self.rows.clear()
        for name in [n for n in self.positions if n.startswith("projection:")]:
            del self.positions[name]

    def conversations(self, workspace_id: str, contact_id: str | None = None,
                      status: str | None = None,
                      between: RowWindow | None = None) -> list[ConversationRow]:
        def inside(row: ConversationRow) -> bool:
            if between is None:
                return True
            moment = getattr(row, between[0])
            return moment is not None and between[1] <= moment < between[2]

        chosen = [
            dataclasses.replace(row) for row in self.rows.values()
            if row.workspace_id == workspace_id
            and (contact_id is None or row.contact_id == contact_id)
            and (status is None or row.status == status) and inside(row)
        ]
        return sorted(chosen, key=lambda r: (r.opened_us, r.contact_id, r.conversation_id))

    def facts(self, workspace_id: str, window: FactWindow | None = None) -> Iterator[Fact]:
        for row in self.rows.values():
            if row.workspace_id == workspace_id:
                fact = Fact(row.opened_us, row.closed_us, row.channel, row.opened_by,
                            row.closed_by, row.assignee_id, row.team_id,
                            row.first_message_us, row.first_response_us, row.recontact)
                if window is None or in_window(fact, window):
                    yield fact

    def expired_contacts(self, workspace_id: str, last_activity_before_us: int) -> list[str]:
        return sorted({row.contact_id for row in self.rows.values()
                       if row.workspace_id == workspace_id and row.closed_us is None
                       and row.last_activity_us <= last_activity_before_us})

    def open_workspaces(self) -> list[str]:
        return sorted({row.workspace_id for row in self.rows.values() if row.closed_us is None})


if TYPE_CHECKING:  # mypy checks that the fakes implement the ports
    _EVENTS: EventStore = FakeEventStore()
    _READ_MODELS: ReadModelStore = FakeReadModelStore()
