"""The short fault-injection run inside ``make test`` (``make test-faults`` runs the full one).

Private Kafka + PostgreSQL, the six service processes under a supervisor, kcat
and HTTP load; one fault of each kind most likely to lose or double something.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .run import PLANS, Run, print_table

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if shutil.which("kcat") is None:
        pytest.skip("kcat is not installed (make deps-test installs it)")
    logs = Path(os.environ.get("BONYCHAT_FAULT_LOGS", tmp_path_factory.mktemp("faults")))
    result = Run(PLANS["quick"], logs).execute()
    print_table(result)
    return result


def test_nothing_is_lost_or_doubled_and_the_topic_has_every_event(report: dict) -> None:
    verdict = report["verdict"]
    assert verdict["lost"] == 0 and verdict["duplicated"] == 0, verdict
    assert verdict["workspaces_differing"] == [], verdict
    assert verdict["stored_events"] == verdict["expected_events"] > 0, verdict
    assert verdict["outcome_counts"] == verdict["expected_outcome_counts"], verdict
    assert verdict["topic_missing"] == 0 and verdict["topic_unique_ids"] >= \
        verdict["stored_events"], verdict


def test_every_fault_was_recovered_from_without_a_manual_step(report: dict) -> None:
    assert report["faults_injected"] == sum(n for _, n in PLANS["quick"].counts)
    for kind, row in report["by_kind"].items():
        assert row["recovered"] == row["injected"], (kind, row)
    restarted = report["restarts"]
    assert restarted["ingest"] >= 1 and restarted["http"] >= 1, restarted


def test_healthz_says_not_ready_while_a_dependency_is_down(report: dict) -> None:
    outages = [f for f in report["faults"] if f["kind"] in ("kafka-kill9", "pg-unreachable")]
    assert outages
    for fault in outages:
        assert fault["detail"]["all_unready"], fault


def test_http_ingest_answers_503_without_hanging_while_kafka_is_down(report: dict) -> None:
    http = report["http"]
    assert http["refused_503"] > 0, http  # the load kept posting through the outage
    # refused at once while the watch knows Kafka is down, else by the produce timeout (5 s)
    assert http["refused_503_max_seconds"] < 7, http
    assert report["verdict"]["lost"] == 0  # and every refused batch arrived on a retry
