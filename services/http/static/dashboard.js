/* The live Dashboard: GET /live?dashboard=1 pushes the summary now and after every change
 * (the server computes it once for every open Dashboard of the workspace and zone). */
"use strict";

(() => {
  let summary = null, stopLive = null;
  const $ = (id) => document.getElementById(id);

  function setValue(id, text, raw) {
    const node = $(id);
    node.textContent = text;
    node.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  function countRows(tbody, items, label) {
    tbody.replaceChildren(...items.map((item) => BC.el("tr", {},
      BC.el("td", { class: "text", text: label(item.key) }),
      BC.el("td", { class: "num", text: BC.num(item.count) }))));
  }

  function render() {
    if (!summary) return;
    const open = summary.open, today = summary.today, res = today.resolution_seconds;
    setValue("tile-open", BC.num(open.total), open.total);
    setValue("tile-unassigned", BC.num(open.unassigned), open.unassigned);
    setValue("tile-opened", BC.num(today.opened), today.opened);
    setValue("tile-closed", BC.num(today.closed), today.closed);
    setValue("tile-p50", BC.dur(res.p50), res.p50);
    setValue("tile-p90", BC.dur(res.p90), res.p90);
    const frt = today.first_response_seconds;  // CONTRACT §6, when the server has it
    $("tile-frt-box").hidden = !frt;
    if (frt) setValue("tile-frt", BC.dur(frt.p50), frt.p50);
    $("today-label").textContent = BC.t("live.today", { day: today.key, tz: summary.tz });
    $("updated").textContent = BC.t("live.updated", { time: BC.when(summary.as_of) });
    $("updated").dataset.asOf = summary.as_of;
    const unassigned = (key) => key === "unassigned" ? BC.t("unassigned") : key;
    countRows($("load-table").tBodies[0], open.by_assignee, unassigned);
    countRows($("channel-table").tBodies[0], open.by_channel, (key) => key);
    $("waiting-table").tBodies[0].replaceChildren(...open.longest_waiting.map((row) =>
      BC.el("tr", {},
        BC.el("td", { class: "text id", text: row.contact_id }),
        BC.el("td", { text: row.channel || BC.t("none") }),
        BC.el("td", { class: "when", text: BC.when(row.opened_at, summary.tz, "short") }),
        BC.el("td", { class: "when", text: BC.when(row.last_activity_at || row.opened_at, summary.tz, "short") }),
        BC.el("td", { class: "text", text: row.assignee_id || BC.t("unassigned") }),
        BC.el("td", { class: "num", text: BC.dur(row.waiting_seconds) }),
        BC.el("td", {}, BC.el("a", {
          href: `/reports#timeline=${encodeURIComponent(row.conversation_id)}`,
          text: BC.t("tl.show") })))));
    const hours = summary.hourly;
    BC.chart($("hourly-chart"), {
      type: "bar",
      data: {
        labels: hours.map((h) => `${String(h.hour).padStart(2, "0")}:00`),
        datasets: [
          { label: BC.t("rep.opened"), data: hours.map((h) => h.opened), backgroundColor: "#1f6feb" },
          { label: BC.t("rep.closed"), data: hours.map((h) => h.closed), backgroundColor: "#2da44e" },
        ],
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }

  function liveState(state) {
    $("live-dot").className = `dot ${state === "live" ? "live" : state === "lost" ? "lost" : ""}`;
    $("live-state").dataset.i18n = `live.${state}`;
    $("live-state").textContent = BC.t(`live.${state}`);
    document.body.dataset.live = state;
  }

  function onEvent(name, data) {
    if (name !== "dashboard") return;
    summary = data;
    BC.message("");
    render();
  }

  /** (Re)open the stream; its first event is the current summary, so nothing is missed
   * while it was closed. */
  function ready() {
    if (stopLive) stopLive();
    stopLive = BC.stream("/live", { dashboard: "1", tz: $("tz").value }, onEvent, liveState);
  }

  document.addEventListener("DOMContentLoaded", () => {
    BC.zoneOptions($("tz"));
    $("tz").addEventListener("change", ready);
    BC.onLanguage(render);
    BC.start(ready);
  });
})();
