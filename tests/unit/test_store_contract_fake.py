"""The in-memory fakes (``tests/fakes.py``) pass the store contract SQLite and PostgreSQL pass.

Unit tests run the core on the fakes, so a fake that diverged from the real
stores would let them pass on behaviour production does not have.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FakeEventStore, FakeReadModelStore

from services.composition import Stores
from tests.store_contract import ManyPositionsContract, StoreContract


class TestFakeStores(StoreContract, ManyPositionsContract):
    @pytest.fixture
    def stores(self) -> Iterator[Stores]:
        yield Stores(FakeEventStore(), FakeReadModelStore(), lambda: None)

    def dead_letter_count(self, stores: Stores) -> int:
        events = stores.events
        assert isinstance(events, FakeEventStore)
        return len(events.dead_letters)
