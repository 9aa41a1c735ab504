"""A process running only followers lowers its CPU priority (services/runtime/priority.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.runtime import priority
from services.runtime.priority import (
    is_followers_only,
    lower_at_start,
    lower_follower_priority,
    serve_services,
)
from services.settings import Settings

KAFKA = {"BONYCHAT_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}


@pytest.fixture(autouse=True)
def _nothing_applied_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority._AT_START, "applied", 0)


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


@pytest.mark.parametrize(("argv", "expected"), [
    (["serve", "--services", "relay"], ["relay"]),
    (["serve", "--services=relay, projections"], ["relay", "projections"]),
    (["--database-url", "serve", "serve", "--services", "projections"], ["projections"]),
    (["serve", "--services", "relay", "--services", "conversation"], ["conversation"]),
    (["serve", "--", "--services", "relay"], None),
    (["serve"], None),                                  # the default services
    (["serve", "--services"], None),                    # argparse refuses it later
    (["import", "--services", "relay"], None),
    ([], None),
])
def test_the_services_of_a_serve_command_line(argv: list[str], expected: list[str] | None
                                             ) -> None:
    assert serve_services(argv) == expected


def test_a_followers_serve_on_kafka_is_lowered_at_start_and_not_twice() -> None:
    nice = FakeNice()
    assert lower_at_start(["serve", "--services", "projections"], KAFKA, nice=nice) == 10
    assert nice.calls == [10]
    assert lower_follower_priority(["projections"], 10, kafka=True, nice=nice) == 10
    assert nice.calls == [10]  # the later call found it done


@pytest.mark.parametrize(("argv", "env"), [
    (["serve", "--services", "conversation,relay"], KAFKA),
    (["serve"], KAFKA),
    (["replay"], KAFKA),
    (["serve", "--services", "relay"], {}),                                   # embedded
    (["serve", "--services", "relay"], {"BONYCHAT_KAFKA_BOOTSTRAP": ""}),     # empty: unset
    (["serve", "--services", "relay"], {**KAFKA, "BONYCHAT_FOLLOWER_NICENESS": "0"}),
    (["serve", "--services", "relay"], {**KAFKA, "BONYCHAT_FOLLOWER_NICENESS": "20"}),
    (["serve", "--services", "relay"], {**KAFKA, "BONYCHAT_FOLLOWER_NICENESS": "ten"}),
])
def test_left_alone_at_start(argv: list[str], env: dict[str, str]) -> None:
    nice = FakeNice()
    assert lower_at_start(argv, env, nice=nice) == 0
    assert nice.calls == []


def test_at_start_the_settings_are_read_as_the_settings_read_them() -> None:
    nice = FakeNice()
    env = {"bonychat_kafka_bootstrap": "k:9092", "Bonychat_Follower_Niceness": "4"}
    assert lower_at_start(["serve", "--services", "relay"], env, nice=nice) == 4
    assert nice.calls == [4]
    assert lower_follower_priority(["relay"], 4, kafka=True, nice=nice) == 4
    assert nice.calls == [4]


def test_not_allowed_at_start_is_left_to_the_later_call(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    assert lower_at_start(["serve", "--services", "relay"], KAFKA,
                          nice=FakeNice(fail=True)) == 0
    assert lower_follower_priority(["relay"], 10, kafka=True, nice=FakeNice(fail=True)) == 0
    assert "could not lower" in caplog.text


def test_the_entry_point_lowers_before_the_command_line_loads() -> None:
    """In a child: ``bonychat``'s entry point applies the niceness, then loads the command
    line (here a stand-in that reports the niceness and whether pydantic was loaded)."""
    code = (
        "import os, sys, types\n"
        "before = os.nice(0)\n"
        "fake = types.ModuleType('services.cli.main')\n"
        "fake.main = lambda: print(os.nice(0) - before, 'pydantic' in sys.modules) or 0\n"
        "sys.modules['services.cli.main'] = fake\n"
        "sys.argv = ['bonychat', 'serve', '--services', 'relay']\n"
        "from services.cli import entry\n"
        "sys.exit(entry.main())\n")
    env = {**os.environ, **KAFKA, "BONYCHAT_FOLLOWER_NICENESS": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.getcwd(), env=env)
    base = os.nice(0)
    assert out.stdout.split() == [str(min(base + 3, 19) - base), "False"]
