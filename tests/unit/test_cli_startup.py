"""What ``bonychat replay`` loads: the projection side only, not the deciding side.

A replay runs as its own process (``make bench`` times it from the start), so every
module it imports but never runs is start-up time a user pays on each replay.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

#: what only import, serve, retry or sweep run (the deciding side, bulk import, Kafka, HTTP)
NOT_FOR_REPLAY = ("services.in_process.pipeline", "services.bulk_import.parse",
                  "services.bulk_import.writer", "services.conversation.application.processor",
                  "services.dead_letters.application.service", "services.runtime.observability",
                  "aiokafka", "prometheus_client", "services.http")

_RUN = """
import sys, orjson
from services.cli.main import main
status = main(sys.argv[1:])
sys.stdout.flush()
print(orjson.dumps(sorted(sys.modules)).decode(), file=sys.stderr)
sys.exit(status)
"""


def _run(db: Path, *args: str) -> tuple[dict[str, object], set[str]]:
    done = subprocess.run([sys.executable, "-c", _RUN, "--database-url", str(db), *args],
                          capture_output=True, text=True, check=True)
    modules = orjson.loads(done.stderr.strip().splitlines()[-1])
    return orjson.loads(done.stdout), set(modules)


def test_replay_loads_no_deciding_side(tmp_path: Path) -> None:
    db = tmp_path / "bonychat.db"
    _, imported = _run(db, "import", "--no-progress", "/dev/null")
    assert "services.in_process.pipeline" in imported  # the import does need it
    result, loaded = _run(db, "replay", "--no-progress")
    assert result["replayed_events"] == 0
    assert "services.projections.application.projector" in loaded
    assert sorted(m for m in NOT_FOR_REPLAY if m in loaded) == []


def test_serve_collects_again_after_a_failed_start_up(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """serve pauses the collector while it starts (issue 13); whatever way start-up ends,
    the process collects again afterwards."""
    import gc

    from services.cli.main import main

    monkeypatch.delenv("BONYCHAT_KAFKA_BOOTSTRAP", raising=False)  # embedded: no workers
    missing = tmp_path / "no-such-folder" / "serve.db"
    assert gc.isenabled()
    assert main(["serve", "--database-url", str(missing)]) == 1
    assert gc.isenabled()
