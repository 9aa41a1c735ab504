"""Fault injection under load: ``python -m tests.faults.run --plan quick|full``.

Starts a private Kafka + PostgreSQL, the six service processes under a
supervisor, ``kcat`` and HTTP load, then injects the plan's faults one after
another at random moments, measuring after each how long until a new event
(a *canary*, sent through ``kcat`` and through ``POST /v1/events`` once the
fault is over) is stored, projected and relayed with every process ready.
At the end everything is compared with ``bonychat import`` of the same input
(:mod:`.verify`). Results: ``tests/faults/results/latest-<plan>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from services.conversation.domain.contact import aggregate_id
from services.projections.entrypoints.relay import relay_position_name
from services.runtime.topics import Topics

from .cluster import ROLES, Cluster, service_env
from .infra import PrivateInfra, free_port
from .load import (
    CANARY_WS,
    HTTP_CANARY_WS,
    HttpPublisher,
    KcatPublisher,
    SentLog,
    canary,
    http_tokens,
)
from .verify import Reference, Verdict, verify, wait_settled

RESULTS = Path(__file__).resolve().parent / "results"
KILLED = ("ingest", "conversation", "relay", "projections", "http")  # conversation: a or b


@dataclass(frozen=True)
class Plan:
    name: str
    rate: int  # kcat events/s
    http_rate: int  # POST /v1/events events/s
    counts: tuple[tuple[str, int], ...]  # fault kind -> how many
    kafka_down_seconds: float  # a stopped/killed broker stays down this long
    outage_seconds: float  # pg-down (stopped) and pg-unreachable (SIGSTOP) last this long
    seed: int = 7
    only: tuple[str, ...] = ()

    def faults(self) -> list[str]:
        kinds = [kind for kind, count in self.counts for _ in range(count)]
        random.Random(self.seed).shuffle(kinds)
        return [k for k in kinds if k in self.only] if self.only else kinds


def _kills(each: int) -> tuple[tuple[str, int], ...]:
    return tuple((f"kill9-{role}", each) for role in KILLED)


PLANS = {
    # inside `make test`: the kinds most likely to break, once each, small load
    "quick": Plan("quick", rate=200, http_rate=30, counts=(
        ("kill9-ingest", 1), ("kill9-conversation", 1), ("kill9-http", 1),
        ("kill9-rebalance", 1), ("kafka-kill9", 1), ("pg-restart", 1), ("pg-unreachable", 1)),
        kafka_down_seconds=3, outage_seconds=5),
    # `make test-faults`: 20 kills per service, broker and PostgreSQL faults, 30 s outages
    "full": Plan("full", rate=1200, http_rate=120, counts=(
        *_kills(20), ("kill9-rebalance", 20), ("kafka-stop", 2), ("kafka-kill9", 2),
        ("pg-restart", 3), ("pg-down", 1), ("pg-unreachable", 1)),
        kafka_down_seconds=10, outage_seconds=30),
}


@dataclass
class FaultResult:
    kind: str
    injected_at: float
    recovered_seconds: float | None
    detail: dict[str, Any] = field(default_factory=dict)


class Run:
    def __init__(self, plan: Plan, log_dir: Path) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.infra = PrivateInfra()
        self.topics = Topics()
        self.relay_name = relay_position_name(self.topics.events)
        self.log_dir = log_dir
        self.results: list[FaultResult] = []
        self.canaries = 0
        self.cluster: Cluster | None = None
        self.kcat: KcatPublisher | None = None
        self.http: HttpPublisher | None = None

    # --- helpers -------------------------------------------------------------------------

    def _pg(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.infra.database_url, autocommit=True, connect_timeout=5)

    def _canary_done(self, n: int) -> bool:
        return self._canary_state(n) == {}

    def _canary_state(self, n: int) -> dict[str, Any]:
        """What canary ``n`` still lacks (empty once stored, projected and relayed)."""
        ids = [aggregate_id(CANARY_WS, f"k{n}"), aggregate_id(HTTP_CANARY_WS, f"k{n}")]
        try:
            with self._pg() as conn:
                newest = conn.execute("SELECT count(DISTINCT originator_id), "
                                      "max(notification_id) FROM stored_events "
                                      "WHERE originator_id = ANY(%s)", (ids,)).fetchone()
                rows = conn.execute(
                    "SELECT count(*) FROM conversations WHERE (workspace_id, contact_id) IN "
                    "((%s, %s), (%s, %s))",
                    (CANARY_WS, f"k{n}", HTTP_CANARY_WS, f"k{n}")).fetchone()
                relayed = conn.execute("SELECT notification_id FROM projection_tracking "
                                       "WHERE application_name = %s",
                                       (self.relay_name,)).fetchone()
        except psycopg.Error as exc:
            return {"postgresql": str(exc)[:200]}
        lacking: dict[str, Any] = {}
        if newest is None or newest[0] != 2:
            lacking["stored_aggregates"] = 0 if newest is None else newest[0]
        if rows is None or rows[0] != 2:
            lacking["projected_rows"] = 0 if rows is None else rows[0]
        if not lacking and (relayed is None or relayed[0] < newest[1]):
            lacking["relayed_up_to"] = None if relayed is None else relayed[0]
        return lacking

    def _stuck(self, n: int) -> dict[str, Any]:
        """After a recovery timed out: what the canary lacks, who is not ready and why."""
        assert self.cluster is not None
        unready = {}
        for role in ROLES:
            info = self.cluster.health(role)
            if info is None or not info.get("ready"):
                unready[role] = None if info is None else {
                    k: info[k] for k in ("components", "down", "retrying", "failed") if k in info}
        return {"canary": n, "lacking": self._canary_state(n), "unready": unready}

    def recover(self, since: float, timeout: float = 240,
                detail: dict[str, Any] | None = None) -> float | None:
        """Send canaries now; seconds from ``since`` until they are through and all ready.

        On a timeout ``detail["stuck"]`` says what was missing.
        """
        assert self.cluster is not None and self.kcat is not None and self.http is not None
        self.canaries += 1
        n = self.canaries
        self.kcat.inject(f"{CANARY_WS}:k{n}".encode(), canary(CANARY_WS, n))
        http = self.http
        threading.Thread(target=http.deliver, args=(HTTP_CANARY_WS, [canary(HTTP_CANARY_WS, n)]),
                         daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._canary_done(n) and self.cluster.all_ready():
                return time.monotonic() - since
            time.sleep(0.2)
        if detail is not None:
            detail["stuck"] = self._stuck(n)
        return None

    def _watch_unready(self, seconds: float) -> dict[str, Any]:
        """Sample /healthz of every process during an outage; who said not ready."""
        assert self.cluster is not None
        said: dict[str, bool] = dict.fromkeys(ROLES, False)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for role in ROLES:
                info = self.cluster.health(role)
                if info is not None and info.get("ready") is False:
                    said[role] = True
            time.sleep(0.5)
        return {"unready_seen": said, "all_unready": all(said.values())}


    # --- faults --------------------------------------------------------------------------

    def inject(self, kind: str) -> FaultResult:
        assert self.cluster is not None
        cluster, infra = self.cluster, self.infra
        detail: dict[str, Any] = {}
        if kind == "kill9-rebalance":
            return self._kill_during_rebalance()
        if kind.startswith("kill9-"):
            role = kind.removeprefix("kill9-")
            if role == "conversation":
                role = self.rng.choice(("conversation-a", "conversation-b"))
            t0 = cluster.kill9(role)
            return FaultResult(kind, t0, self.recover(t0, detail=detail), detail)
        if kind.startswith("kafka-"):
            assert self.http is not None
            refused = self.http.stats.refused_503
            (infra.kafka_stop if kind == "kafka-stop" else infra.kafka_kill9)()
            down = time.monotonic()
            detail.update(self._watch_unready(max(0.0, self.plan.kafka_down_seconds
                                                   - (time.monotonic() - down))))
            detail["http_503_while_down"] = self.http.stats.refused_503 - refused
            infra.kafka_start()
            t0 = time.monotonic()
            detail["down_seconds"] = round(t0 - down, 2)
            return FaultResult(kind, t0, self.recover(t0, detail=detail), detail)
        if kind == "pg-restart":
            infra.pg_restart_immediate()
            t0 = time.monotonic()
            return FaultResult(kind, t0, self.recover(t0, detail=detail), detail)
        if kind == "pg-down":
            infra.pg_stop()
            down = time.monotonic()
            detail.update(self._watch_unready(self.plan.outage_seconds))
            infra.pg_start()
            t0 = time.monotonic()
            detail["down_seconds"] = round(t0 - down, 2)
            return FaultResult(kind, t0, self.recover(t0, detail=detail), detail)
        if kind == "pg-unreachable":
            pids = infra.pg_freeze()
            down = time.monotonic()
            try:
                detail.update(self._watch_unready(self.plan.outage_seconds))
            finally:
                infra.pg_thaw(pids)
            t0 = time.monotonic()
            detail["down_seconds"] = round(t0 - down, 2)
            return FaultResult(kind, t0, self.recover(t0, detail=detail), detail)
        raise ValueError(kind)

    def _kill_during_rebalance(self) -> FaultResult:
        """Kill copy b; when its restart joins the group, kill copy a mid-rebalance."""
        assert self.cluster is not None
        cluster = self.cluster
        before = cluster.log_text("conversation-b").count("conversation service started")
        cluster.kill9("conversation-b")
        deadline = time.monotonic() + 60
        while (cluster.log_text("conversation-b").count("conversation service started")
               <= before and time.monotonic() < deadline):
            time.sleep(0.05)
        assigned = cluster.log_text("conversation-b").count("partitions assigned")
        time.sleep(self.rng.uniform(0.0, 0.3))  # b is joining: the group is rebalancing
        in_progress = cluster.log_text("conversation-b").count("partitions assigned") == assigned
        t0 = cluster.kill9("conversation-a")
        detail: dict[str, Any] = {"rebalance_in_progress": in_progress}
        return FaultResult("kill9-rebalance", t0, self.recover(t0, detail=detail), detail)

    # --- the run -------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        shutil.rmtree(self.log_dir, ignore_errors=True)  # logs and inputs of an earlier run
        self.infra.up()
        try:
            return self._execute(started)
        finally:
            if self.cluster is not None:
                self.cluster.stop()
            self.infra.down()

    def _execute(self, started: float) -> dict[str, Any]:
        plan = self.plan
        env = service_env(self.infra.bootstrap, self.infra.database_url, "")
        env.pop("BONYCHAT_TOPIC_SUFFIX")
        env["BONYCHAT_GATEWAY_TOKENS"] = http_tokens()
        ports = {role: free_port() for role in ROLES}
        self.cluster = Cluster(env, self.log_dir, ports)
        self.cluster.start()
        self.cluster.wait_ready()
        self.kcat = KcatPublisher(self.infra.bootstrap, self.topics.gateway, plan.rate, plan.seed,
                                  SentLog(self.log_dir / "sent-kcat.jsonl"),
                                  stderr_path=self.log_dir / "kcat.log")
        self.http = HttpPublisher(ports["http"], plan.http_rate, plan.seed,
                                  SentLog(self.log_dir / "sent-http.jsonl"))
        self.kcat.start()
        self.http.start()
        time.sleep(3)
        baseline = self.recover(time.monotonic())
        faults = plan.faults()
        for index, kind in enumerate(faults, 1):
            time.sleep(self.rng.uniform(0.5, 3.0))
            result = self.inject(kind)
            self.results.append(result)
            print(f"[faults] {index}/{len(faults)} {kind}: recovered in "
                  f"{_secs(result.recovered_seconds)} {json.dumps(result.detail)}", flush=True)
        self.http.stop()
        kcat_status = self.kcat.stop()
        self.kcat.sent.close()
        self.http.sent.close()
        expected = Reference([self.kcat.sent.path, self.http.sent.path])
        try:
            wait_settled(self.infra.database_url, "public", self.relay_name, expected)
            verdict = verify(expected, url=self.infra.database_url, schema="public",
                             bootstrap=self.infra.bootstrap, events_topic=self.topics.events,
                             relay_name=self.relay_name)
        finally:
            expected.close()
        restarts = {role: m.restarts for role, m in self.cluster.members.items()}
        return self._report(started, baseline, verdict, restarts=restarts,
                            kcat_status=kcat_status,
                            events=self.kcat.sent.count + self.http.sent.count)

    def _report(self, started: float, baseline: float | None, verdict: Verdict, *,
                restarts: dict[str, int], kcat_status: int, events: int) -> dict[str, Any]:
        assert self.kcat is not None and self.http is not None
        kinds: dict[str, list[FaultResult]] = {}
        for result in self.results:
            kinds.setdefault(result.kind, []).append(result)
        summary = {kind: _stats(results) for kind, results in sorted(kinds.items())}
        return {
            "plan": asdict(self.plan), "commit": _commit(), "finished_at": _now(),
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "seconds": round(time.monotonic() - started, 1),
            "events": events, "kcat_events": self.kcat.sent.count,
            "http_events": self.http.sent.count, "kcat_status": kcat_status,
            "kcat_stderr": self.kcat.errors(),
            "http": asdict(self.http.stats), "baseline_seconds": baseline,
            "faults_injected": len(self.results), "by_kind": summary,
            "restarts": restarts, "verdict": {**asdict(verdict), "ok": verdict.ok},
            "faults": [asdict(r) for r in self.results],
        }


def _commit() -> str | None:
    """The commit the run tested (with ``+dirty`` if the work tree had changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "services", "schemas",
                                "tests/faults"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _secs(value: float | None) -> str:
    return "NEVER" if value is None else f"{value:.1f}s"


def _stats(results: list[FaultResult]) -> dict[str, Any]:
    times = [r.recovered_seconds for r in results if r.recovered_seconds is not None]
    return {"injected": len(results), "recovered": len(times),
            "p50_seconds": round(statistics.median(times), 2) if times else None,
            "max_seconds": round(max(times), 2) if times else None}


def print_table(report: dict[str, Any], out: Callable[[str], None] = print) -> None:
    verdict = report["verdict"]
    out(f"events {report['events']} (kcat {report['kcat_events']}, HTTP "
        f"{report['http_events']}), faults {report['faults_injected']}, "
        f"lost {verdict['lost']}, duplicated {verdict['duplicated']}, ok {verdict['ok']}")
    out(f"{'fault':<24} {'injected':>8} {'recovered':>9} {'p50 s':>7} {'max s':>7}")
    for kind, row in report["by_kind"].items():
        out(f"{kind:<24} {row['injected']:>8} {row['recovered']:>9} "
            f"{row['p50_seconds'] if row['p50_seconds'] is not None else '-':>7} "
            f"{row['max_seconds'] if row['max_seconds'] is not None else '-':>7}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # SIGTERM, and SIGINT even when started in the background (where it is
    # ignored), end the run through its clean-up: services stopped, the private
    # Kafka and PostgreSQL deleted.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="quick")
    parser.add_argument("--logs", default=None, help="folder for the services' logs")
    parser.add_argument("--only", default="", help="comma-separated fault kinds to keep")
    parser.add_argument("--kills", type=int, help="kill -9 per service (and rebalance kills)")
    parser.add_argument("--rate", type=int, help="kcat events/s (HTTP gets a tenth of it)")
    args = parser.parse_args(argv)
    plan = PLANS[args.plan]
    if args.kills is not None:
        plan = dataclasses.replace(plan, counts=tuple(
            (kind, args.kills if kind.startswith("kill9-") else count)
            for kind, count in plan.counts))
    if args.rate is not None:
        plan = dataclasses.replace(plan, rate=args.rate, http_rate=max(1, args.rate // 10))
    if args.only:
        plan = dataclasses.replace(plan, only=tuple(args.only.split(",")))
    logs = Path(args.logs) if args.logs else RESULTS / f"logs-{plan.name}"
    report = Run(plan, logs).execute()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"latest-{plan.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    print_table(report)
    return 0 if report["verdict"]["ok"] and all(
        row["recovered"] == row["injected"] for row in report["by_kind"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
