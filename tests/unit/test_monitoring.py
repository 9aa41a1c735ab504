"""Operations files: the exposition passes promtool, alert rules pass and fire, and the
Grafana dashboard and the rules only name metrics the services export.

promtool comes from Debian's ``prometheus`` package, installed by ``make test``
(infra/deps.sh).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import FakeReadModelStore
from prometheus_client import CollectorRegistry, generate_latest
from sink_fakes import RecordingSink

from services.http.app import create_app
from services.http.telemetry import ReadinessCollector
from services.projections.domain.rows import ConversationRow
from services.runtime.observability import Health, RuntimeMetrics
from services.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
RULES = INFRA / "prometheus" / "alerts.yml"
RULE_TESTS = INFRA / "prometheus" / "alerts-test.yml"
DASHBOARD = INFRA / "grafana" / "bonychat-dashboard.json"
#: metrics Prometheus itself provides for every scrape target
PROMETHEUS_OWN = {"up"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"),
             "gauge": ("",), "summary": ("", "_sum", "_count", "_created")}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing: `make deps-test` installs Debian's prometheus")
    return found


def service_registry() -> tuple[CollectorRegistry, RuntimeMetrics]:
    """The registry of one ``bonychat serve`` process: runtime and HTTP metrics."""
    metrics = RuntimeMetrics()
    health = Health()
    health.expect("stores")
    health.set_ready("stores")
    create_app(settings=Settings(gateway_tokens="", analytics_tokens="",
                                 gateway_tokens_file=None, analytics_tokens_file=None),
               sink=RecordingSink(), read_models=FakeReadModelStore(),
               registry=metrics.registry, health=health)
    return metrics.registry, metrics


def exported_names() -> set[str]:
    """Every sample name the services can expose."""
    registry, _ = service_registry()
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(bonychat_[a-z0-9_]+)", expr))


def test_exposition_with_every_instrument_used_passes_promtool() -> None:
    tool = promtool()
    registry, m = service_registry()
    m.events.labels("ingest", "message.received", "forwarded").inc()
    m.dead_letters.labels("ingest", "kafka").inc()
    m.domain_events.labels("relay").inc()
    m.batch_size.labels("ingest").observe(5)
    m.batch_seconds.labels("conversation").observe(0.1)
    m.consumer_lag.labels("ingest", "bonychat.gateway.events.v1", "0").set(3)
    m.undecodable.labels("ingest", "bonychat.gateway.events.v1").inc()
    m.projection_lag.labels("projections").set(1)
    closed = ConversationRow(conversation_id="x", workspace_id="ws1", contact_id="c1",
                             channel="sms", opened_us=0, opened_by="contact",
                             closed_us=90_000_000, closed_by="user")
    m.count_closed_rows([closed])
    text = generate_latest(registry)
    assert b"bonychat_conversation_resolution_seconds_count{channel=\"sms\"} 1.0" in text
    assert b"bonychat_ready 1.0" in text
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = text + b"# TYPE bonychat_bad counter\nbonychat_bad 1\n"  # promtool does object
    assert subprocess.run([tool, "check", "metrics"], input=broken,
                          capture_output=True, check=False).returncode != 0


def test_closed_by_merge_is_counted_but_not_a_resolution() -> None:
    _, m = service_registry()
    row = ConversationRow(conversation_id="x", workspace_id="ws1", contact_id="c1",
                          channel=None, opened_us=0, opened_by="contact",
                          closed_us=5_000_000, closed_by="merge")
    m.count_closed_rows([row])
    assert m.closed.labels("merge")._value.get() == 1
    assert b"resolution_seconds_count" not in generate_latest(m.registry)


def test_closed_conversations_are_counted_per_label_every_time() -> None:
    _, m = service_registry()
    for n, (by, channel) in enumerate([("user", "sms"), ("user", None), ("inactivity", "sms"),
                                       ("user", "sms"), ("merge", "sms")]):
        m.count_closed_rows([ConversationRow(
            conversation_id=f"x{n}", workspace_id="ws1", contact_id="c1", channel=channel,
            opened_us=0, opened_by="contact", closed_us=(n + 1) * 1_000_000, closed_by=by)])
    assert {by: m.closed.labels(by)._value.get() for by in ("user", "inactivity", "merge")} == {
        "user": 3, "inactivity": 1, "merge": 1}
    text = generate_latest(m.registry)
    assert b'resolution_seconds_count{channel="sms"} 3.0' in text
    assert b'resolution_seconds_sum{channel="sms"} 8.0' in text  # 1 + 3 + 4 s; the merge not
    assert b'resolution_seconds_count{channel="none"} 1.0' in text


def test_a_pages_closed_rows_are_counted_as_one_row_at_a_time() -> None:
    """``count_closed_rows`` (one ``inc`` per label and bucket) exposes exactly what
    ``observe`` per row does: bucket bounds hit exactly, beyond the last, merges."""
    import random

    rng = random.Random(7)
    seconds = [60, 300, 59.5, 60.5, 7 * 86400, 7 * 86400 + 1, 10**9, 0, 0.25, *(
        rng.randrange(0, 4 * 86400 * 4) / 4 for _ in range(500))]
    rows = [ConversationRow(conversation_id=f"x{n}", workspace_id="ws1", contact_id="c1",
                            channel=rng.choice(("sms", "viber", None)), opened_us=10**12,
                            opened_by="contact", closed_us=10**12 + int(s * 1_000_000),
                            closed_by=rng.choice(("user", "inactivity", "merge", None)))
            for n, s in enumerate(seconds)]
    _, one_by_one = service_registry()
    for row in rows:  # the per-row way of before
        closed_by = row.closed_by or "unknown"
        one_by_one.closed.labels(closed_by).inc()
        if closed_by != "merge" and row.resolution_seconds is not None:
            one_by_one.resolution.labels(row.channel or "none").observe(row.resolution_seconds)
    _, batched = service_registry()
    batched.count_closed_rows(rows[:200])
    batched.count_closed_rows(rows[200:])
    expected = generate_latest(one_by_one.registry).splitlines()
    got = generate_latest(batched.registry).splitlines()
    assert [line for line in got if b"_created" not in line] == [
        line for line in expected if b"_created" not in line]
    assert b'resolution_seconds_bucket{channel="sms",le="+Inf"}' in b"\n".join(got)


def test_readiness_gauge_follows_the_health_check() -> None:
    health = Health()
    health.expect("conversation")
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(health))
    assert registry.get_sample_value("bonychat_ready") == 0.0
    assert registry.get_sample_value("bonychat_component_ready",
                                     {"component": "conversation"}) == 0.0
    health.set_ready("conversation")
    assert registry.get_sample_value("bonychat_ready") == 1.0
    health.set_failed("conversation", "boom")
    assert registry.get_sample_value("bonychat_ready") == 0.0


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([tool, "test", "rules", str(RULE_TESTS.name)],
                            cwd=RULE_TESTS.parent, capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_to_fire_and_to_stay_silent() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in rules():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name} is never tested to fire"
        assert any(not c["exp_alerts"] for c in mine), f"{name} is never tested silent"
    wanted = {"consumer lag": "BonychatConsumerLagHigh", "DLQ": "BonychatDeadLetterRateHigh",
              "not ready": "BonychatNotReady", "projection": "BonychatProjectionBehind"}
    assert set(wanted.values()) <= {r["alert"] for r in rules()}


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    exported = exported_names()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    for expr in [*exprs, *(rule["expr"] for rule in rules())]:
        names = metric_names(expr)
        assert names or set(re.findall(r"\b[a-z_]+\b", expr)) & PROMETHEUS_OWN, expr
        assert names <= exported, f"{sorted(names - exported)} are not exported: {expr}"
    covered = set().union(*(metric_names(e) for e in exprs))
    for family in ("bonychat_events_total", "bonychat_consumer_lag",
                   "bonychat_http_request_duration_seconds_bucket",
                   "bonychat_dead_letters_total",
                   "bonychat_conversation_resolution_seconds_bucket"):
        assert family in covered, f"the dashboard shows nothing of {family}"


def test_a_misspelt_metric_would_be_caught() -> None:
    assert metric_names("rate(bonychat_event_total[5m])") - exported_names() == {
        "bonychat_event_total"}


def test_projection_reports_each_closed_row_once_after_saving() -> None:
    from services.conversation.application.ports import Position
    from services.conversation.domain.contact import aggregate_id
    from services.projections.application.projector import (
        EVENT_STORE_POSITION,
        ConversationProjection,
    )

    from .harness import World, ev

    world = World()
    world.send(ev("message.received", "c1", 0), ev("conversation.close", "c1", 2),
               ev("message.received", "c2", 3))
    events = [*world.events.load(aggregate_id("ws1", "c1")),
              *world.events.load(aggregate_id("ws1", "c2"))]
    closed: list[ConversationRow] = []
    projection = ConversationProjection(FakeReadModelStore(), on_closed=closed.extend)
    projection.apply(events[:1], Position(EVENT_STORE_POSITION, 1))
    assert closed == []
    projection.apply(events[1:], Position(EVENT_STORE_POSITION, len(events)))
    assert [(r.contact_id, r.closed_by, r.resolution_seconds) for r in closed] == [
        ("c1", "user", 120.0)]
