"""bench.broker_jit: the broker's threads grouped by what they do, CPU between readings."""

from __future__ import annotations

import os
import threading

from bench.broker_jit import group_of, thread_seconds, thread_ticks


def test_thread_names_are_grouped_as_the_jvm_and_kafka_name_them() -> None:
    # /proc/<pid>/task/<tid>/comm keeps 15 characters; digits become N before grouping
    assert group_of("CN CompilerThre") == "jit"
    assert group_of("data-plane-kafk") == "requests"
    assert group_of("GC Thread#N") == "gc"
    assert group_of("GN Conc#N") == "gc"
    assert group_of("GN Refine#N") == "gc"
    assert group_of("kafka-N-raft-io") == "other"
    assert group_of("ExpirationReape") == "other"


def test_cpu_is_the_difference_per_group_and_new_threads_count_from_zero() -> None:
    before = {"1": ("C2 CompilerThre", 100), "2": ("data-plane-kafk", 50)}
    after = {"1": ("C2 CompilerThre", 350), "2": ("data-plane-kafk", 60),
             "3": ("data-plane-kafk", 40), "4": ("GC Thread#0", 0)}
    tick = os.sysconf("SC_CLK_TCK")
    used = thread_seconds(before, after)
    assert used == {"gc": 0.0, "jit": round(250 / tick, 2), "requests": round(50 / tick, 2)}


def test_threads_of_a_live_process_are_read_with_their_names() -> None:
    ready, stop = threading.Event(), threading.Event()

    def spin() -> None:
        ready.set()
        stop.wait(5)

    worker = threading.Thread(target=spin, name="probe-thread")
    worker.start()
    ready.wait(5)
    try:
        ticks = thread_ticks(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert str(os.getpid()) in ticks  # the main thread's id is the pid
    assert len(ticks) >= 2
    assert all(isinstance(t, int) and t >= 0 for _, t in ticks.values())
