"""Validation on a second core: a worker process parses batches of raw lines.

Parsing and validating envelopes is about a third of the import's CPU. For
bulk imports a forked worker does it while the main process decides and
stores the previous batch. Results cross the process boundary as compact
tuples (cheaper to pickle than models) and are rebuilt with
:func:`schemas.construct.from_values`, since the worker has validated them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from operator import itemgetter
from types import TracebackType
from typing import Any

from schemas.commands import COMMAND_CLASSES, CommandBase
from schemas.construct import from_values
from services.bulk_import.parent_watch import end_with_parent
from services.ingest.domain.normalise import Invalid, parse

_CLASSES: dict[str, type[CommandBase]] = {cls.__name__: cls for cls in COMMAND_CLASSES}
_FIELDS: dict[str, tuple[str, ...]] = {name: tuple(cls.model_fields)
                                       for name, cls in _CLASSES.items()}
#: a command's field values in ``_FIELDS`` order (every command has several fields)
_VALUES: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    name: itemgetter(*fields) for name, fields in _FIELDS.items()}
Packed = tuple[Any, ...]


def pack(item: CommandBase | Invalid) -> Packed:
    if isinstance(item, Invalid):
        return ("", item.raw, item.reason, item.workspace_id, item.event_id)
    name = type(item).__name__
    return (name, _VALUES[name](item.__dict__))


def unpack(packed: Packed) -> CommandBase | Invalid:
    name = packed[0]
    if not name:
        return Invalid(*packed[1:])
    return from_values(_CLASSES[name], _FIELDS[name], packed[1])


def parse_packed(lines: list[bytes]) -> list[Packed]:
    """Worker side: parse a batch of raw lines."""
    return [pack(parse(line)) for line in lines]


def _ready() -> bool:
    return True


class ParallelParser:
    """Parses batches in a worker process, keeping a few batches in flight.

    Enter it *before* opening databases: the worker is forked on entry, so it
    never inherits an open SQLite or PostgreSQL connection.
    """

    def __init__(self, in_flight: int = 3) -> None:
        self.in_flight = in_flight
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ParallelParser:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                                         initializer=end_with_parent, initargs=(os.getpid(),))
        self._pool.submit(_ready).result()  # fork now, before any connection exists
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, batches: Iterable[list[bytes]]
            ) -> Iterator[tuple[list[bytes], list[CommandBase | Invalid]]]:
        """Yield ``(raw_lines, parsed_items)`` in input order."""
        assert self._pool is not None, "use ParallelParser as a context manager"
        window: deque[tuple[list[bytes], Future[list[Packed]]]] = deque()
        for batch in batches:
            window.append((batch, self._pool.submit(parse_packed, batch)))
            if len(window) >= self.in_flight:
                raw, future = window.popleft()
                yield raw, [unpack(p) for p in future.result()]
        while window:
            raw, future = window.popleft()
            yield raw, [unpack(p) for p in future.result()]
