"""A process running only followers lowers its CPU priority (services/runtime/priority.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.runtime.priority import is_followers_only, lower_follower_priority
from services.settings import Settings


class FakeNice:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def __call__(self, increment: int) -> int:
        if self.fail:
            raise PermissionError(1, "Operation not permitted")
        self.calls.append(increment)
        return increment


@pytest.mark.parametrize(("names", "expected"), [
    (["relay"], True), (["projections"], True), (["relay", "projections"], True),
    (["conversation"], False), (["conversation", "relay"], False),
    (["ingest", "projections"], False), (["http"], False), ([], False),
])
def test_followers_only(names: list[str], expected: bool) -> None:
    assert is_followers_only(names) is expected


def test_a_followers_only_process_on_kafka_is_lowered() -> None:
    nice = FakeNice()
    assert lower_follower_priority(["relay", "projections"], 10, kafka=True, nice=nice) == 10
    assert nice.calls == [10]


@pytest.mark.parametrize(("names", "niceness", "kafka"), [
    (["conversation", "relay"], 10, True),  # the pace-setter keeps its priority
    (["http"], 10, True),                   # the parent of worker processes, API only
    (["projections"], 0, True),             # switched off
    (["projections"], 10, False),           # embedded: one process does everything
])
def test_left_alone(names: list[str], niceness: int, kafka: bool) -> None:
    nice = FakeNice()
    assert lower_follower_priority(names, niceness, kafka=kafka, nice=nice) == 0
    assert nice.calls == []


def test_not_allowed_is_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    assert lower_follower_priority(["relay"], 10, kafka=True, nice=FakeNice(fail=True)) == 0
    assert "could not lower" in caplog.text


def test_the_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BONYCHAT_FOLLOWER_NICENESS", "20")
    with pytest.raises(ValueError, match="follower_niceness"):
        Settings()
    monkeypatch.setenv("BONYCHAT_FOLLOWER_NICENESS", "5")
    assert Settings().follower_niceness == 5
    monkeypatch.delenv("BONYCHAT_FOLLOWER_NICENESS")
    assert Settings().follower_niceness == 10


def test_the_real_call_lowers_the_process() -> None:
    """In a child process: os.nice really moves it by the increment."""
    code = ("import os; from services.runtime.priority import lower_follower_priority; "
            "before = os.nice(0); lower_follower_priority(['relay'], 3, kafka=True); "
            "print(os.nice(0) - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.getcwd())
    base = os.nice(0)  # the child starts at ours; the kernel caps the value at 19
    assert out.stdout.strip() == str(min(base + 3, 19) - base)
