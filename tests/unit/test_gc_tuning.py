"""``tune_gc``: the one collector setting of import, replay and serve."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.runtime.gc_tuning import THRESHOLDS, tune_gc
from services.settings import Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_gc_freezes_start_up_objects_and_raises_thresholds(
        restored_gc: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BONYCHAT_GC_TUNING", raising=False)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert tune_gc(Settings()) is True
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 1000  # everything imported so far is frozen


def test_the_young_threshold_is_a_setting(restored_gc: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BONYCHAT_GC_TUNING", raising=False)
    monkeypatch.setenv("BONYCHAT_GC_YOUNG_THRESHOLD", "200000")
    gc.unfreeze()
    assert tune_gc(Settings()) is True
    assert gc.get_threshold() == (200_000, *THRESHOLDS[1:])
    assert THRESHOLDS[0] == 1_000_000  # the default


@pytest.mark.parametrize("value", ["0", "false", "No"])
def test_tune_gc_can_be_switched_off(restored_gc: None, monkeypatch: pytest.MonkeyPatch,
                                     value: str) -> None:
    monkeypatch.setenv("BONYCHAT_GC_TUNING", value)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert tune_gc(Settings()) is False
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
