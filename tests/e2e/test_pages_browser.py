"""The Reports and Dashboard pages in a real headless Chromium (Playwright, system browser).

One ``bonychat serve`` (embedded runtime) holds two weeks of conversations up to
now, posted over HTTP. Every test watches the browser console: any error (a CSP
violation, a script error, a failed request) fails it, except the 401/403 that
the wrong-token test provokes on purpose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .pages_harness import ANALYTICS_TOKEN, CHROMIUM, WS, XSS, Server, history, serve

playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")

pytestmark = pytest.mark.e2e
WAIT_MS = 15_000  # an upper bound for one wait, not a speed target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("pages")) as running:
        answer = running.post(history().events)
        assert answer["invalid"] == 0, answer
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("no Chromium: `make deps-test` installs Debian's chromium")
    with playwright.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched:
    """A page with its console errors, page errors and dialogs recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.allowed: tuple[str, ...] = ()
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


def open_page(browser: Any, **context: Any) -> Iterator[Watched]:
    options = {"viewport": {"width": 1280, "height": 900}, "locale": "en-US",
               "timezone_id": "UTC", "accept_downloads": True, **context}
    ctx = browser.new_context(**options)
    watched = Watched(ctx.new_page())
    try:
        yield watched
    finally:
        ctx.close()
    assert watched.unexpected() == [], watched.errors
    assert watched.dialogs == []


@pytest.fixture
def tab(browser: Any) -> Iterator[Watched]:
    yield from open_page(browser)


def login(tab: Watched, server: Server, path: str, token: str = ANALYTICS_TOKEN,
          workspace: str = WS) -> Any:
    page = tab.page
    if not page.url.endswith(path):
        page.goto(f"{server.base}{path}")
    page.wait_for_selector("#login-form", state="visible")
    page.fill("#login-ws", workspace)
    page.fill("#login-token", token)
    page.press("#login-token", "Enter")
    return page


def canvas_ink(page: Any, selector: str) -> int:
    """How many pixels of a canvas are drawn (not transparent)."""
    return int(page.evaluate("""(sel) => {
        const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
                             selector))


def table_rows(page: Any) -> list[dict[str, Any]]:
    """The report table as the page shows it: key and the three drillable counts."""
    return list(page.evaluate("""() => [...document.querySelectorAll('#report-table tbody tr')]
        .map(tr => ({key: tr.dataset.key,
                     ...Object.fromEntries([...tr.querySelectorAll('button[data-measure]')]
                        .map(b => [b.dataset.measure, Number(b.dataset.value)]))}))"""))


def expected_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in metrics["rows"]:
        shown = {"key": row["key"], "closed": row["closed"],
                 "resolved": row["resolution_seconds"]["count"]}
        if row["opened"] is not None:
            shown["opened"] = row["opened"]
        rows.append(shown)
    return rows


def show_report(page: Any, *, group: str, date_from: str, date_to: str, tz: str) -> None:
    """Set the controls as a user does and wait for that report to be drawn."""
    page.wait_for_selector("body[data-loaded]")
    page.select_option("#tz", tz)
    page.select_option("#group", group)
    page.fill("#from", date_from)
    page.dispatch_event("#from", "change")
    page.fill("#to", date_to)
    page.dispatch_event("#to", "change")
    tz_shown = tz
    page.wait_for_selector(f'body[data-loaded="{group}|{date_from}|{date_to}|{tz_shown}"]',
                           timeout=WAIT_MS)


def choose_preset(page: Any, preset: str) -> None:
    """Pick a range preset and wait until the report of exactly that range is drawn."""
    page.wait_for_selector("body[data-loaded]", timeout=WAIT_MS)
    page.select_option("#preset", preset)
    wanted = f"{page.input_value('#from')}|{page.input_value('#to')}"
    page.wait_for_function("(w) => (document.body.dataset.loaded || '').includes(w)", arg=wanted,
                           timeout=WAIT_MS)


def recent_range(days: int = 10) -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=days)).isoformat(), today.isoformat()


# -- sign-in ----------------------------------------------------------------------------------

def test_wrong_token_gives_a_clear_message_and_the_token_stays_out_of_urls(
        tab: Watched, server: Server) -> None:
    tab.allowed = ("status of 401", "status of 403")
    page = login(tab, server, "/dashboard", token="not-the-token")
    page.wait_for_selector("#message:not([hidden])")
    assert "401" in page.inner_text("#message") and "token" in page.inner_text("#message")
    assert page.is_visible("#login-form") and not page.is_visible("#main")
    login(tab, server, "/dashboard", workspace="someone-else")
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('403')")
    assert "someone-else" in page.inner_text("#message")
    login(tab, server, "/dashboard")
    page.wait_for_selector("#main:not([hidden])")
    page.wait_for_function("() => document.querySelector('#tile-open').dataset.value !== undefined")
    assert page.is_hidden("#message")
    assert ANALYTICS_TOKEN not in page.url
    stored = page.evaluate("() => [sessionStorage.getItem('bonychat.token'),"
                           " JSON.stringify(localStorage)]")
    assert stored[0] == ANALYTICS_TOKEN and ANALYTICS_TOKEN not in stored[1]
    assert ANALYTICS_TOKEN not in server.log_path.read_text()


# -- dashboard ------------------------------------------------------------------------------

def dashboard_shown(page: Any) -> dict[str, Any]:
    page.wait_for_selector("body[data-live=live]", timeout=WAIT_MS)
    page.wait_for_function("() => document.querySelector('#tile-open').dataset.value !== undefined")
    return dict(page.evaluate("""() => ({
        open: Number(document.querySelector('#tile-open').dataset.value),
        unassigned: Number(document.querySelector('#tile-unassigned').dataset.value),
        opened: Number(document.querySelector('#tile-opened').dataset.value),
        closed: Number(document.querySelector('#tile-closed').dataset.value),
        p50: document.querySelector('#tile-p50').dataset.value,
        asOf: document.querySelector('#updated').dataset.asOf,
        load: [...document.querySelectorAll('#load-table tbody tr')].map(tr =>
            [...tr.cells].map(td => td.textContent)),
        waiting: [...document.querySelectorAll('#waiting-table tbody tr')].map(tr =>
            tr.cells[0].textContent)})"""))


def test_dashboard_numbers_equal_the_api(tab: Watched, server: Server) -> None:
    page = login(tab, server, "/dashboard")
    shown = dashboard_shown(page)
    api = server.get("/dashboard", now=shown["asOf"])
    assert shown["open"] == api["open"]["total"] > 0
    assert shown["unassigned"] == api["open"]["unassigned"]
    assert (shown["opened"], shown["closed"]) == (api["today"]["opened"], api["today"]["closed"])
    p50 = api["today"]["resolution_seconds"]["p50"]
    assert (shown["p50"] == "") if p50 is None else float(shown["p50"]) == p50
    assert shown["load"] == [[b["key"], str(b["count"])] for b in api["open"]["by_assignee"]]
    assert shown["waiting"] == [r["contact_id"] for r in api["open"]["longest_waiting"]]
    assert canvas_ink(page, "#hourly-chart") > 500


def test_posting_events_updates_an_open_dashboard_without_reload(
        tab: Watched, server: Server) -> None:
    page = login(tab, server, "/dashboard")
    before = dashboard_shown(page)["open"]
    page.evaluate("() => { window.__sameDocument = true; }")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {"event_id": f"live-{time.time_ns()}", "type": "message.received",
             "workspace_id": WS, "contact_id": f"live-{time.time_ns()}", "occurred_at": now,
             "channel": {"type": "webchat"}}
    started = time.perf_counter()
    assert server.post([event])["accepted"] == 1
    page.wait_for_function(f"() => Number(document.querySelector('#tile-open').dataset.value)"
                           f" === {before + 1}", timeout=WAIT_MS)
    elapsed = time.perf_counter() - started
    assert page.evaluate("() => window.__sameDocument === true")  # no reload happened
    print(f"\nlive dashboard: posted event visible after {elapsed * 1000:.0f} ms")


def test_changing_the_zone_reopens_the_stream_with_that_zone(
        tab: Watched, server: Server) -> None:
    page = login(tab, server, "/dashboard")
    dashboard_shown(page)
    page.select_option("#tz", "Pacific/Kiritimati")
    page.wait_for_function("() => document.querySelector('#today-label').textContent"
                           ".includes('Pacific/Kiritimati')", timeout=WAIT_MS)
    shown = dashboard_shown(page)
    api = server.get("/dashboard", tz="Pacific/Kiritimati", now=shown["asOf"])
    assert (shown["opened"], shown["closed"]) == (api["today"]["opened"], api["today"]["closed"])
    assert api["today"]["key"] in page.inner_text("#today-label")
    assert page.inner_text("#live-state") == "Live"


# -- reports --------------------------------------------------------------------------------

def test_report_numbers_equal_the_api_and_the_cli(tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    date_from, date_to = recent_range()
    show_report(page, group="day", date_from=date_from, date_to=date_to, tz="Europe/Madrid")
    params = {"group_by": "day", "from": date_from, "to": date_to, "tz": "Europe/Madrid"}
    api = server.get("/metrics", **params)
    cli = json.loads(server.cli("metrics", "--workspace", WS, "--format", "json",
                                "--group-by", "day", "--from", date_from, "--to", date_to,
                                "--tz", "Europe/Madrid"))
    assert api == cli
    assert table_rows(page) == expected_rows(api) and len(api["rows"]) >= 5
    total = page.evaluate("() => [...document.querySelectorAll('#report-table tfoot button')]"
                          ".map(b => Number(b.dataset.value))")
    assert total == [api["total"]["opened"], api["total"]["closed"],
                     api["total"]["resolution_seconds"]["count"]]
    assert float(page.get_attribute("#tile-p90", "data-value") or "nan") == \
        api["total"]["resolution_seconds"]["p90"]
    assert int(page.get_attribute("#tile-opened", "data-value") or "-1") == api["total"]["opened"]


def test_range_zone_and_grouping_change_the_table_and_the_charts(
        tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    date_from, date_to = recent_range()
    show_report(page, group="day", date_from=date_from, date_to=date_to, tz="UTC")
    by_day = table_rows(page)
    charts = [page.evaluate(f"() => document.querySelector('{c}').toDataURL()")
              for c in ("#volume-chart", "#resolution-chart")]
    assert all(canvas_ink(page, c) > 500 for c in ("#volume-chart", "#resolution-chart"))

    show_report(page, group="channel", date_from=date_from, date_to=date_to, tz="UTC")
    by_channel = table_rows(page)
    assert {r["key"] for r in by_channel} <= {"whatsapp", "webchat", "facebook", "telegram",
                                              "email"}
    assert by_channel == expected_rows(server.get("/metrics", group_by="channel",
                                                  **{"from": date_from, "to": date_to}))
    assert all(canvas_ink(page, c) > 500 for c in ("#volume-chart", "#resolution-chart"))
    assert charts != [page.evaluate(f"() => document.querySelector('{c}').toDataURL()")
                      for c in ("#volume-chart", "#resolution-chart")]

    show_report(page, group="day", date_from=date_from, date_to=date_to, tz="Pacific/Kiritimati")
    shifted = table_rows(page)
    assert shifted != by_day
    assert shifted == expected_rows(server.get("/metrics", group_by="day", tz="Pacific/Kiritimati",
                                               **{"from": date_from, "to": date_to}))

    page.select_option("#preset", "last7")
    page.wait_for_function("() => document.body.dataset.loaded.split('|')[1] !== "
                           f"'{date_from}'", timeout=WAIT_MS)
    assert len(table_rows(page)) <= 7 < len(shifted)


def test_csv_download_equals_the_cli(tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    date_from, date_to = recent_range(6)
    show_report(page, group="assignee", date_from=date_from, date_to=date_to,
                tz="America/Mexico_City")
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click("#csv")
    downloaded = Path(info.value.path()).read_text(encoding="utf-8")
    expected = server.cli("metrics", "--workspace", WS, "--format", "csv", "--group-by",
                          "assignee", "--from", date_from, "--to", date_to, "--tz",
                          "America/Mexico_City")
    assert downloaded == expected and expected.count("\n") >= 3
    assert info.value.suggested_filename.endswith(".csv")


def open_drill(page: Any, selector: str) -> int:
    """Activate a drill-down number with the keyboard; its count once the list shows."""
    button = page.locator(selector).first
    wanted = int(button.get_attribute("data-value"))
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#drill-count').dataset.total === "
                           f"'{wanted}'", timeout=WAIT_MS)
    assert page.evaluate("() => document.activeElement.id") == "drill-title"
    return wanted


def drill_ids(page: Any) -> list[str]:
    return list(page.evaluate("() => [...document.querySelectorAll('#drill-table tbody tr')]"
                              ".map(tr => tr.dataset.conversation)"))


def test_drill_down_lists_exactly_the_conversations_of_a_bucket(
        tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    date_from, date_to = recent_range()
    show_report(page, group="day", date_from=date_from, date_to=date_to, tz="Asia/Tokyo")
    row = next(r for r in table_rows(page) if r["closed"] >= 3)
    count = open_drill(page, f'#report-table tbody tr[data-key="{row["key"]}"] '
                             'button[data-measure="closed"]')
    assert count == row["closed"]
    expected = [c["conversation_id"] for c in server.get(
        "/conversations", measure="closed", group_by="day", key=row["key"], tz="Asia/Tokyo",
        **{"from": date_from, "to": date_to})]
    assert drill_ids(page) == expected and len(expected) == count
    every = json.loads(server.cli("conversations", "--workspace", WS, "--format", "json"))
    tokyo = {c["conversation_id"] for c in every if c["closed_at"] and datetime.fromisoformat(
        c["closed_at"]).astimezone(_zone("Asia/Tokyo")).date().isoformat() == row["key"]}
    assert set(expected) == tokyo


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo
    return ZoneInfo(name)


def test_drill_down_pages_filters_and_csv(tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    choose_preset(page, "last30")
    total = open_drill(page, '#report-table tfoot button[data-measure="opened"]')
    assert total > 25
    first = drill_ids(page)
    page.click("#drill-next")
    page.wait_for_function(
        "() => document.querySelector('#drill-count').textContent.startsWith('26')")
    assert len(set(first) & set(drill_ids(page))) == 0 and len(first) == 25
    page.select_option("#f-status", "open")
    page.wait_for_function(
        "() => document.querySelector('#drill-count').textContent.startsWith('1')")
    statuses = page.evaluate("() => [...document.querySelectorAll('#drill-table tbody tr')]"
                             ".map(tr => tr.cells[2].textContent)")
    assert statuses and set(statuses) == {"open"}
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click("#drill-csv")
    lines = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("conversation_id,") and len(lines) - 1 == int(
        page.get_attribute("#drill-count", "data-total") or "0")


def test_timeline_shows_a_merge_closing(tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    choose_preset(page, "last30")
    open_drill(page, '#report-table tfoot button[data-measure="closed"]')
    page.select_option("#f-closed-by", "merge")
    page.wait_for_function("() => document.querySelector('#drill-count').dataset.total === '1'")
    row = page.locator("#drill-table tbody tr").first
    assert row.locator("td").first.inner_text() == "dup-secondary"
    row.get_by_role("button").click()
    page.wait_for_selector("#timeline-list li")
    kinds = page.evaluate("() => [...document.querySelectorAll('#timeline-list li')]"
                          ".map(li => li.dataset.type)")
    assert kinds[0] == "ConversationOpened" and kinds[-2:] == ["ConversationClosed",
                                                               "ContactMerged"]
    text = page.inner_text("#timeline-list")
    assert "Closed by merge" in text and "dup-secondary merged into dup-primary" in text
    assert page.evaluate("() => document.activeElement.id") == "timeline-title"


def test_html_from_gateways_is_shown_as_text(tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    choose_preset(page, "last30")
    open_drill(page, '#report-table tfoot button[data-measure="closed"]')
    page.fill("#f-assignee", "ana")
    page.dispatch_event("#f-assignee", "change")
    page.wait_for_function("() => [...document.querySelectorAll('#drill-table td.summary')]"
                           ".some(td => td.textContent.includes('onerror'))", timeout=WAIT_MS)
    cells = page.evaluate("() => [...document.querySelectorAll('#drill-table td.summary')]"
                          ".map(td => td.textContent)")
    assert XSS in cells
    assert page.locator("#drill-table img, #drill-table b").count() == 0
    page.locator("#drill-table tbody tr", has_text="mallory").get_by_role("button").click()
    page.wait_for_selector("#timeline-list li")
    assert f"summary: {XSS}" in page.inner_text("#timeline-list")
    assert page.locator("#timeline img").count() == 0
    page.wait_for_timeout(300)  # give a would-be onerror handler its chance
    assert tab.dialogs == []


# -- language, phone width ------------------------------------------------------------------

def test_language_follows_the_browser_and_can_be_switched(browser: Any, server: Server) -> None:
    for tab in open_page(browser, locale="es-ES"):
        page = login(tab, server, "/dashboard")
        page.wait_for_selector("#main:not([hidden])")
        assert page.inner_text("#main h1") == "Escritorio"
        assert page.get_attribute("html", "lang") == "es"
        assert dashboard_shown(page)["open"] > 0
        page.select_option("#lang", "en")
        assert page.inner_text("#main h1") == "Dashboard"
        assert page.inner_text("#live-state") == "Live"
        page.goto(f"{server.base}/reports")  # the choice is kept
        page.wait_for_selector("#main:not([hidden])")
        assert page.inner_text("#main h1") == "Reports \u203a Conversations"
        page.select_option("#lang", "es")
        page.wait_for_selector("#report-table tbody tr")
        assert page.text_content("#key-head") == "Día"


PHONE = {"width": 390, "height": 844}
#: resolves after two animation frames: what a resize set off has been laid out and drawn
NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
FITS = """() => {
    const root = document.documentElement, width = root.clientWidth, out = [];
    if (root.scrollWidth > width) out.push(`page ${root.scrollWidth}`);
    for (const wrap of document.querySelectorAll('.table-wrap')) {
      if (wrap.offsetParent && wrap.scrollWidth > wrap.clientWidth) {
        out.push(`wrap ${wrap.firstElementChild.id}`);
      }
    }
    for (const table of document.querySelectorAll('table')) {
      if (!table.offsetParent) continue;
      const rows = [...table.tBodies, ...(table.tFoot ? [table.tFoot] : [])]
        .flatMap(group => [...group.rows]);
      for (const row of rows) {
        for (const cell of row.cells) {
          const r = cell.getBoundingClientRect();
          if (r.width <= 0 || r.height <= 0 || r.left < 0 || r.right > width + 0.5) {
            out.push(`${table.id} row ${row.rowIndex} cell ${cell.cellIndex}`);
          }
        }
      }
    }
    return out;
}"""
LABELS = """(id) => { const t = document.getElementById(id);
    return {role: t.getAttribute('role'), tag: t.tagName,
            heads: [...t.tHead.rows[0].cells].map(c => c.textContent.trim()),
            first: [...t.tBodies[0].rows[0].cells].map(c => [c.dataset.label,
                                                              c.getAttribute('role')]),
            display: getComputedStyle(t.tBodies[0].rows[0]).display}; }"""


def stacked(page: Any, table: str) -> None:
    """``table`` is shown as cards: each cell labelled with its column, table roles kept."""
    shown = page.evaluate(LABELS, table)
    assert shown["tag"] == "TABLE" and shown["role"] == "table"
    assert shown["display"] == "grid"  # a card, not a table row
    assert [label for label, _ in shown["first"]] == shown["heads"]
    assert {role for _, role in shown["first"]} <= {"cell", "rowheader"}


def test_pages_fit_a_phone_screen_without_sideways_scrolling(
        browser: Any, server: Server) -> None:
    for tab in open_page(browser, viewport=PHONE):
        page = login(tab, server, "/dashboard")
        dashboard_shown(page)
        page.wait_for_selector("#waiting-table tbody tr")
        assert page.evaluate(FITS) == []
        stacked(page, "waiting-table")
        assert canvas_ink(page, "#hourly-chart") > 200
        page.goto(f"{server.base}/reports")
        choose_preset(page, "last30")
        assert page.evaluate(FITS) == []
        stacked(page, "report-table")
        assert canvas_ink(page, "#volume-chart") > 200
        open_drill(page, '#report-table tfoot button[data-measure="closed"]')  # keyboard
        page.wait_for_selector("#drill-table tbody tr")
        assert page.evaluate(FITS) == []
        stacked(page, "drill-table")
        page.locator("#drill-table tbody tr").first.get_by_role("button").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#timeline-list li")
        assert page.evaluate(FITS) == []


def test_tables_fit_at_desktop_width_and_become_cards_when_the_window_narrows(
        tab: Watched, server: Server) -> None:
    page = login(tab, server, "/reports")
    choose_preset(page, "last30")
    open_drill(page, '#report-table tfoot button[data-measure="closed"]')
    page.wait_for_selector("#drill-table tbody tr")
    assert page.evaluate(FITS) == []  # twelve columns, no sideways scrolling at 1280 px
    for table in ("report-table", "drill-table"):
        assert page.evaluate(LABELS, table)["display"] == "table-row"
    assert page.is_visible("#report-table thead")
    page.set_viewport_size({"width": 800, "height": 900})  # a tablet: too narrow for both
    page.wait_for_function("() => ['#report-table', '#drill-table'].every(t => "
                           "getComputedStyle(document.querySelector(`${t} tbody tr`))"
                           ".display === 'grid')", timeout=WAIT_MS)
    page.evaluate(NEXT_FRAMES)  # the charts redraw at the new width (ResizeObserver, a frame)
    assert page.evaluate(FITS) == []
    stacked(page, "drill-table")
    page.set_viewport_size({"width": 1280, "height": 900})  # and back
    page.wait_for_function("() => getComputedStyle(document.querySelector("
                           "'#drill-table tbody tr')).display === 'table-row'", timeout=WAIT_MS)
