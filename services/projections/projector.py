"""Runs the conversation projection: events in, rows and a tracked position out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from schemas.events import DomainEvent

from ..conversation.ports import EventStore, Position
from .ports import ReadModelStore
from .rows import ConversationRow, conversation_of, project

EVENT_STORE_POSITION = "projection:conversations"


class ConversationProjection:
    """Applies domain events to conversation rows, caching the open ones."""

    def __init__(self, store: ReadModelStore, *, cache_size: int = 200_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._open: dict[str, ConversationRow] = {}

    def forget(self) -> None:
        """Drop cached rows (after a rebalance or a failed write)."""
        self._open.clear()

    def apply(self, events: Sequence[DomainEvent], position: Position) -> int:
        """Project a batch and record ``position`` with it; returns rows written."""
        missing = {cid for e in events if (cid := conversation_of(e)) and cid not in self._open}
        loaded = self.store.load_rows(missing) if missing else {}
        changed: dict[str, ConversationRow] = {}
        for event in events:
            cid = conversation_of(event)
            if cid is None:
                continue
            row = changed.get(cid) or self._open.get(cid) or loaded.get(cid)
            new = project(row, event)
            if new is not None:
                changed[cid] = new
        try:
            self.store.save(list(changed.values()), position)
        except BaseException:
            self.forget()
            raise
        for cid, row in changed.items():
            if row.closed_us is None:
                self._open[cid] = row
            else:
                self._open.pop(cid, None)
        if len(self._open) > self.cache_size:
            self.forget()
        return len(changed)

    def catch_up(self, events: EventStore, *, name: str = EVENT_STORE_POSITION,
                 page: int = 5_000, progress: Callable[[int], None] | None = None) -> int:
        """Project every stored event after this projection's tracked position."""
        done = 0
        after = self.store.position(name) or 0
        while True:
            batch = events.read(after, page)
            if not batch:
                return done
            after = batch[-1][0]
            self.apply([e for _, e in batch], Position(name, after))
            done += len(batch)
            if progress is not None:
                progress(len(batch))

    def replay(self, events: EventStore, *, name: str = EVENT_STORE_POSITION,
               progress: Callable[[int], None] | None = None) -> int:
        """Rebuild the read model from scratch out of the event store."""
        self.store.reset()
        self.forget()
        return self.catch_up(events, name=name, page=20_000, progress=progress)
