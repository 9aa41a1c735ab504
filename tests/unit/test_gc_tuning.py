"""``tune_gc``: the one collector setting of import, replay and serve."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.runtime.gc_tuning import THRESHOLDS, time_gc_pauses, tune_gc
from services.runtime.observability import RuntimeMetrics
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


def _pauses(metrics: RuntimeMetrics, generation: str) -> tuple[float, float]:
    count = metrics.registry.get_sample_value(
        "bonychat_gc_pause_seconds_count", {"generation": generation})
    total = metrics.registry.get_sample_value(
        "bonychat_gc_pause_seconds_sum", {"generation": generation})
    return count or 0.0, total or 0.0


def test_gc_pauses_are_timed_by_generation_and_a_second_timer_replaces_the_first() -> None:
    first, second = RuntimeMetrics(), RuntimeMetrics()
    try:
        time_gc_pauses(first)
        gc.collect(2)
        gc.collect(0)
        assert _pauses(first, "2")[0] == 1
        assert _pauses(first, "0")[0] >= 1
        assert _pauses(first, "2")[1] > 0
        cpu = first.registry.get_sample_value("bonychat_gc_cpu_seconds_total",
                                              {"generation": "2"})
        assert cpu is not None and cpu > 0
        time_gc_pauses(second)  # replaces: one timer per process
        gc.collect(1)
        assert _pauses(second, "1")[0] == 1
        assert _pauses(first, "1")[0] == 0
        assert sum(1 for c in gc.callbacks if type(c).__name__ == "_PauseTimer") == 1
    finally:
        gc.callbacks[:] = [c for c in gc.callbacks if type(c).__name__ != "_PauseTimer"]
