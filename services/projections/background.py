"""The projection in a process of its own, for bulk imports on two cores.

Production runs projections as a separate service that follows the event
store; a bulk ``bonychat import`` does the same on one machine: a forked
process follows the notification log with :meth:`ConversationProjection.catch_up`
(own connection, own tracked position) while the importing process decides and
stores. The result is the one the inline projection builds: same code, same
events, same order.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from types import TracebackType

from eventsourcing.persistence import IntegrityError

from .projector import ConversationProjection

IDLE_SLEEP = 0.02


class ProjectionFailed(Exception):
    """The background projection process died; the event store is unaffected."""


def _follow(open_stores: Callable[[], object], stop: Event) -> None:
    from ..bootstrap import Stores

    stores = open_stores()
    assert isinstance(stores, Stores)
    try:
        projection = ConversationProjection(stores.read_models)
        while True:
            stopping = stop.is_set()  # read before catching up: nothing is missed
            try:
                done = projection.catch_up(stores.events, page=10_000)
            except IntegrityError:  # another process projected first: resume after it
                projection.forget()
                continue
            if done == 0:
                if stopping:
                    return
                time.sleep(IDLE_SLEEP)
    finally:
        stores.close()


class BackgroundProjection:
    """Context manager: fork the follower on entry, drain and join it on exit.

    ``open_stores`` runs in the child, so no connection crosses the fork. Enter
    it before the parent opens its own connections.
    """

    def __init__(self, open_stores: Callable[[], object]) -> None:
        self._open_stores = open_stores
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._process = context.Process(target=_follow, args=(open_stores, self._stop),
                                        name="bonychat-projection", daemon=True)

    def __enter__(self) -> BackgroundProjection:
        self._process.start()
        return self

    def finish(self) -> None:
        """Wait until everything stored so far is projected; raise if the follower failed."""
        self._stop.set()
        self._process.join()
        if self._process.exitcode != 0:
            raise ProjectionFailed(f"projection process failed (exit {self._process.exitcode}); "
                               "run `bonychat replay` to rebuild the read model")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._process.is_alive():
            if kind is None:
                self.finish()
            else:
                self._process.terminate()
                self._process.join()
