"""Acceptance of de-duplication (CONTRACT §1/§2) over an import many batches long:
redeliveries, rejected and invalid events far apart, and a second import of the
same file. ``BONYCHAT_BATCH_SIZE`` is small so the lines cross batch boundaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .contract_client import clean_env, ok_json, run

pytestmark = pytest.mark.e2e

N = 200  # contacts with one closed conversation each; resolution of contact k: k seconds
LATE = 50  # contacts whose first line is invalid and whose valid line comes much later


def line(eid: str, kind: str, contact: str, second: int, **fields: Any) -> str:
    hours, rest = divmod(second, 3600)
    clock = f"{10 + hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return json.dumps({"event_id": eid, "type": kind, "workspace_id": "dd",
                       "contact_id": contact, "occurred_at": f"2026-11-24T{clock}Z", **fields})


def story() -> list[str]:
    sms = {"channel": {"type": "sms"}}
    user = {"actor": {"type": "user", "id": "u1"}}
    first = [line(f"o{k}", "message.received", f"c{k}", k, **sms) for k in range(N)]
    closes = [line(f"x{k}", "conversation.close", f"c{k}", 2 * k, **user) for k in range(N)]
    rejected = [line(f"r{k}", "conversation.close", f"n{k}", 0, **user) for k in range(LATE)]
    invalid = [line(f"l{k}", "message.received", f"l{k}", 0) for k in range(LATE)]
    # redeliveries with other content: a close that would otherwise close nothing new,
    # a message that would open a second conversation, a now-possible open
    again = [line(f"o{k}", "message.received", f"c{k}", 5000, **sms) for k in range(N)]
    again += [line(f"r{k}", "message.received", f"n{k}", 5000, **sms) for k in range(LATE)]
    late = [line(f"l{k}", "message.received", f"l{k}", 6000, **sms) for k in range(LATE)]
    return [*first, *invalid, *rejected, *closes, *again, *late]


def test_dedupe_holds_across_batches_and_imports(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(story()) + "\n")
    env = clean_env(BONYCHAT_DATABASE_URL=str(tmp_path / "dd.db"), BONYCHAT_BATCH_SIZE="20")
    first = ok_json(run(["import", str(source), "--no-progress"], env=env))
    assert first == {"read": 3 * N + 4 * LATE, "accepted": 2 * N + LATE, "duplicate": N + LATE,
                     "rejected": {"no_open_conversation": LATE}, "invalid": LATE}
    second = ok_json(run(["import", str(source), "--no-progress"], env=env))
    assert second == {"read": 3 * N + 4 * LATE, "accepted": 0,
                      "duplicate": 3 * N + 3 * LATE, "rejected": {}, "invalid": LATE}
    metrics = ok_json(run(["metrics", "--workspace", "dd", "--format", "json"], env=env))
    # c0..c199 closed after k seconds (0..199), l0..l49 open: p90 = rank 179.1 of 0..199
    assert metrics["total"] == {"key": None, "opened": N + LATE, "closed": N,
                                "resolution_seconds": {"count": N, "avg": 99.5, "p50": 99.5,
                                                       "p90": 179.1, "min": 0.0,
                                                       "max": 199.0}} | {
        k: v for k, v in metrics["total"].items()
        if k not in ("key", "opened", "closed", "resolution_seconds")}
