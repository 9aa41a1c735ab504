"""The Dashboard in headless Chromium on the Kafka runtime: live through PostgreSQL NOTIFY.

``bonychat serve`` runs ingest, conversation and projections against the real
broker and PostgreSQL; an event posted to ``POST /v1/events`` travels through
Kafka, is decided, stored, projected, announced by ``NOTIFY bonychat_projected``
and shows on the open page without a reload.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from e2e.pages_harness import CHROMIUM
from e2e.test_pages_browser import dashboard_shown, login, open_page
from kafka_fixtures import ServeProcess, World, new_world

pytestmark = pytest.mark.integration
WAIT_MS = 60_000  # an upper bound for one wait, not a target


@pytest.fixture
def served(infra: dict[str, str]) -> Iterator[tuple[World, ServeProcess, int]]:
    world = new_world(infra)
    process = world.serve("ingest,conversation,projections", name="pages")
    yield world, process, process.port()
    world.destroy()


def post(port: int, events: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events", data=json.dumps(events).encode(), method="POST",
        headers={"Authorization": "Bearer gw-token", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 202


def message(n: int) -> dict[str, Any]:
    return {"event_id": f"k{n}-{time.time_ns()}", "type": "message.received",
            "workspace_id": "ws_http", "contact_id": f"k-contact-{n}",
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": {"type": "whatsapp"}}


def test_dashboard_updates_live_on_the_kafka_runtime(
        served: tuple[World, ServeProcess, int]) -> None:
    from playwright.sync_api import sync_playwright

    _, _, port = served
    server = SimpleNamespace(base=f"http://127.0.0.1:{port}")
    post(port, [message(0)])
    # the browser lives inside the test: Playwright's sync API holds the thread's event
    # loop, and the Kafka fixtures use asyncio.run() before and after
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            drive(browser, server, port)
        finally:
            browser.close()


def drive(browser: Any, server: Any, port: int) -> None:
    for tab in open_page(browser):
        page = login(tab, server, "/dashboard", token="an-token", workspace="ws_http")  # type: ignore[arg-type]
        page.wait_for_function("() => document.querySelector('#tile-open').dataset.value"
                               " === '1'", timeout=WAIT_MS)
        assert dashboard_shown(page)["open"] == 1
        page.evaluate("() => { window.__sameDocument = true; }")
        for n in (1, 2, 3):
            started = time.perf_counter()
            post(port, [message(n)])
            page.wait_for_function("(n) => document.querySelector('#tile-open').dataset.value"
                                   " === String(n)", arg=n + 1, timeout=WAIT_MS)
            print(f"\nkafka runtime: posted event on the open dashboard after "
                  f"{(time.perf_counter() - started) * 1000:.0f} ms")
        assert page.evaluate("() => window.__sameDocument === true")
        assert page.inner_text("#live-state") == "Live"
