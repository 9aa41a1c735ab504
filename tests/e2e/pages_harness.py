"""A real ``bonychat serve`` (embedded runtime) with a story, for browser tests and screenshots.

``python -m tests.e2e.pages_harness --screenshots docs/screenshots`` writes the
README's screenshots (desktop 1280 px and phone 390 px) of both pages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
BONYCHAT = Path(sys.executable).with_name("bonychat")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WS = "acme"
GATEWAY_TOKEN = "gw-acme-7Q2x"
ANALYTICS_TOKEN = "an-acme-9Zt4"
XSS = "<img src=x onerror=alert(1)>"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    database: str
    log_path: Path

    def post(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base}/v1/events", data=json.dumps(events).encode(), method="POST",
            headers={"Authorization": f"Bearer {GATEWAY_TOKEN}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            result: dict[str, Any] = json.loads(answer.read())
        return result

    def get(self, path: str, **params: str) -> Any:
        query = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in params.items() if v)
        request = urllib.request.Request(
            f"{self.base}/v1/workspaces/{WS}{path}{'?' + query if query else ''}",
            headers={"Authorization": f"Bearer {ANALYTICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if answer.headers.get_content_type() == "application/json" \
            else body.decode()

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(BONYCHAT), *args, "--database-url", self.database],
                              capture_output=True, text=True, check=True, timeout=60)
        return done.stdout


@contextmanager
def serve(folder: Path) -> Iterator[Server]:
    """``bonychat serve`` on the embedded store in ``folder``, on a free port."""
    database = str(folder / "pages.db")
    handle, log_name = tempfile.mkstemp(prefix="bonychat-pages-", suffix=".log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BONYCHAT_")}
    env.update({"BONYCHAT_DATABASE_URL": database, "BONYCHAT_HTTP_PORT": "0",
                "BONYCHAT_HTTP_HOST": "127.0.0.1",
                "BONYCHAT_GATEWAY_TOKENS": f"{WS}={GATEWAY_TOKEN}",
                "BONYCHAT_ANALYTICS_TOKENS": f"{WS}={ANALYTICS_TOKEN}"})
    process = subprocess.Popen([str(BONYCHAT), "serve"], env=env, stdout=subprocess.DEVNULL,
                               stderr=handle, cwd=ROOT)
    os.close(handle)
    log_path = Path(log_name)
    try:
        deadline = time.monotonic() + 60
        while True:
            found = re.search(r"listening on (http://[^\"\s]+)", log_path.read_text())
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bonychat serve did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield Server(process, found.group(1), database, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log_path.unlink(missing_ok=True)


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Story:
    """Envelopes with unique ids."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, contact: str, at: datetime, **fields: Any) -> None:
        body: dict[str, Any] = {"event_id": f"p{len(self.events) + 1}", "type": kind,
                                "workspace_id": WS, "contact_id": contact,
                                "occurred_at": _at(at)}
        body.update(fields)
        self.events.append(body)

    def conversation(self, contact: str, opened: datetime, channel: str, *,
                     assignee: str | None = None, team: str | None = None,
                     closed_after: timedelta | None = None, closer: str = "user",
                     summary: str | None = None, category: str | None = None) -> None:
        self.add("message.received", contact, opened, channel={"type": channel})
        if assignee is not None:
            data: dict[str, Any] = {"assignee_id": assignee}
            if team is not None:
                data["team_id"] = team
            self.add("conversation.assign", contact, opened + timedelta(minutes=1),
                     actor={"type": "automation"}, data=data)
        self.add("message.sent", contact, opened + timedelta(minutes=3),
                 actor={"type": "user", "id": assignee or "bot"})
        if closed_after is not None:
            data = {k: v for k, v in (("summary", summary), ("category", category)) if v}
            self.add("conversation.close", contact, opened + closed_after,
                     actor={"type": closer, "id": assignee if closer == "user" else None},
                     data=data)


AGENTS = ("ana", "bruno", "carla", "diego")
CHANNELS = ("whatsapp", "webchat", "facebook", "telegram", "email")


def history(days: int = 14, per_day: int = 9, end: datetime | None = None) -> Story:
    """``days`` of closed and open conversations up to ``end`` (default: now), a merge
    that closes one, and a closing summary that looks like HTML."""
    story = Story()
    end = end or datetime.now(UTC)
    start = (end - timedelta(days=days)).replace(hour=6, minute=0, second=0, microsecond=0)
    n = 0
    for day in range(days + 1):
        for i in range(per_day):
            opened = start + timedelta(days=day, hours=1 + i * 1.4 + (day % 3) * 0.3)
            if opened > end - timedelta(minutes=30):
                continue
            n += 1
            contact = f"contact-{n:03d}"
            agent = AGENTS[(n + day) % len(AGENTS)] if n % 5 else None
            still_open = opened > end - timedelta(hours=3) or n % 11 == 0
            resolution = timedelta(minutes=8 + (n * 37) % 170)
            story.conversation(contact, opened, CHANNELS[(n * 3 + day) % len(CHANNELS)],
                               assignee=agent, team="support" if agent else None,
                               closed_after=None if still_open else resolution,
                               closer="automation" if n % 7 == 0 else "user",
                               category=("billing", "shipping", "other")[n % 3])
    first = start + timedelta(days=1, hours=2)
    story.conversation("mallory", first, "webchat", assignee="ana", team="support",
                       closed_after=timedelta(minutes=42), summary=XSS, category="<b>bold</b>")
    story.conversation("dup-secondary", first + timedelta(hours=1), "whatsapp")
    story.conversation("dup-primary", first + timedelta(hours=1, minutes=5), "whatsapp",
                       assignee="bruno", closed_after=timedelta(hours=2))
    story.add("contact.merge", "dup-primary", first + timedelta(hours=1, minutes=30),
              data={"secondary_contact_id": "dup-secondary"})
    story.events.sort(key=lambda e: e["occurred_at"])
    return story


#: zones a screenshot's Dashboard may be shown in, one every few hours around the globe
SCREENSHOT_ZONES = ("Pacific/Honolulu", "America/Los_Angeles", "America/New_York",
                    "America/Sao_Paulo", "UTC", "Europe/Madrid", "Asia/Kolkata", "Asia/Tokyo")


def afternoon_zone(now: datetime) -> str:
    """The zone of :data:`SCREENSHOT_ZONES` where it is closest to 17:00 at ``now``.

    The story opens its conversations between 07:00 and 19:30 UTC; a local day that
    has run 17 hours always holds some of them, so the Dashboard's "today" tiles and
    hourly chart show activity at whatever hour the screenshots are taken.
    """
    def distance(zone: str) -> float:
        local = now.astimezone(ZoneInfo(zone))
        return abs(local.hour + local.minute / 60 - 17)

    return min(SCREENSHOT_ZONES, key=distance)


def screenshots(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder)) as server, \
            sync_playwright() as pw:
        server.post(history().events)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
            context = browser.new_context(viewport={"width": width, "height": height},
                                          device_scale_factor=1, locale="en-US",
                                          timezone_id="UTC")
            page = context.new_page()
            page.goto(f"{server.base}/dashboard")
            page.fill("#login-ws", WS)
            page.fill("#login-token", ANALYTICS_TOKEN)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("body[data-live=live]")
            page.wait_for_function("document.querySelector('#tile-open').dataset.value")
            zone = afternoon_zone(datetime.now(UTC))
            page.select_option("#tz", zone)
            page.wait_for_function("([zone]) => document.querySelector('#today-label')"
                                   ".textContent.includes(zone)", arg=[zone])
            page.wait_for_function("document.querySelector('#tile-opened').dataset.value > 0")
            page.screenshot(path=str(out / f"dashboard-{name}.png"), full_page=True)
            page.goto(f"{server.base}/reports")
            page.select_option("#preset", "last30")
            page.wait_for_selector("#report-table tbody tr")
            page.locator("#report-table tfoot button[data-measure=closed]").click()
            page.wait_for_selector("#drill-table tbody tr")
            merged = page.locator("#drill-table tbody tr", has_text="dup-secondary")
            merged.get_by_role("button").click()
            page.wait_for_selector("#timeline-list li")
            page.evaluate("() => document.querySelectorAll('.table-wrap')"
                          ".forEach(w => { w.scrollLeft = 0; })")
            page.screenshot(path=str(out / f"reports-{name}.png"), full_page=True)
            context.close()
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--screenshots", type=Path, default=ROOT / "docs" / "screenshots")
    screenshots(parser.parse_args().screenshots)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
