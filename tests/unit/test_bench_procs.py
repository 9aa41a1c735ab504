"""bench.procs.CpuSampler: the watcher of a serve's workers stops once they are all
ready (it reads every process in /proc; left on, it took ~0.27 cores from the serve
it measured), and gives up on a serve that has no workers."""

from __future__ import annotations

import os
import threading

import pytest

from bench import procs

ME = os.getpid()


def sampler(ready: dict[str, bool]) -> procs.CpuSampler:
    """A sampler of one serve (this process) with a conversation worker (this process
    too), whose worker answers ready when ``ready["worker"]`` is set."""
    return procs.CpuSampler({"serve": ME}, worker_ready=lambda pid: ready["worker"])


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counted: list[int] = []

    def children(parents: object) -> dict[str, list[int]]:
        counted.append(1)
        return {"serve:conversation": [ME]}

    monkeypatch.setattr(procs, "_children", children)
    return counted


def test_the_watcher_stops_once_every_worker_is_ready(scans: list[int]) -> None:
    ready = {"worker": False}
    watched = sampler(ready)
    assert watched._watch_workers(watched.worker_ready) is False  # type: ignore[arg-type]
    assert "serve:conversation" not in watched.startup_ticks
    ready["worker"] = True
    watcher = threading.Thread(target=watched._watch_ready, daemon=True)
    watcher.start()
    watcher.join(timeout=5)
    try:
        assert not watcher.is_alive(), "the watcher went on scanning /proc"
    finally:
        watched._stop.set()
    assert "serve:conversation" in watched.startup_ticks
    after = len(scans)
    watched._stop.wait(0.1)
    assert len(scans) == after  # no scan once it stopped


def test_workers_are_watched_until_the_serve_itself_is_ready(scans: list[int]) -> None:
    ready = {"serve": False}
    watched = procs.CpuSampler({"serve": ME}, ready={"serve": lambda: ready["serve"]},
                               worker_ready=lambda pid: True)
    # its one worker so far is ready, but the serve may still launch others
    assert watched._watch_workers(watched.worker_ready) is False  # type: ignore[arg-type]
    assert "serve:conversation" in watched.startup_ticks
    watched.ready.clear()
    assert watched._watch_workers(watched.worker_ready) is True  # type: ignore[arg-type]


def test_a_serve_without_workers_is_not_watched_for_ever(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "_children", lambda parents: {})
    monkeypatch.setattr(procs, "WORKERLESS_S", 0.0)
    watched = procs.CpuSampler({"serve": ME}, ready={"serve": lambda: False},
                               worker_ready=lambda pid: True)
    # the serve itself not ready yet: its workers may still come
    assert watched._watch_workers(watched.worker_ready) is False  # type: ignore[arg-type]
    watched.ready.clear()
    assert watched._watch_workers(watched.worker_ready) is True  # type: ignore[arg-type]
