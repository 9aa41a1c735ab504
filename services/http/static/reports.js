/* Reports › Conversations: GET /metrics, drill-down to GET /conversations, timelines. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TIME = new Set(["day", "week", "month"]);
  const PAGE = 25;
  let zone = "UTC", report = null, previous = null, drill = null, timelineId = null;

  // -- dates ---------------------------------------------------------------------------------
  const parse = (text) => { const [y, m, d] = text.split("-").map(Number); return Date.UTC(y, m - 1, d); };
  const iso = (ms) => new Date(ms).toISOString().slice(0, 10);
  const DAY = 86400000;

  function presetRange(preset) {
    const today = parse(BC.today($("tz").value || zone));
    if (preset === "today") return [iso(today), iso(today)];
    if (preset === "yesterday") return [iso(today - DAY), iso(today - DAY)];
    if (preset === "last7") return [iso(today - 6 * DAY), iso(today)];
    if (preset === "last30") return [iso(today - 29 * DAY), iso(today)];
    if (preset === "month") return [iso(today).slice(0, 8) + "01", iso(today)];
    return [$("from").value, $("to").value];
  }

  function params() {
    return { group_by: $("group").value, from: $("from").value, to: $("to").value,
             tz: $("tz").value };
  }

  // -- tiles ---------------------------------------------------------------------------------
  function delta(now, before, days) {
    if (before === null || before === undefined || now === null || now === undefined) {
      return { text: BC.t("rep.noprev"), cls: "" };
    }
    if (now === before) return { text: BC.t("rep.same", { days }), cls: "" };
    if (!before) return { text: BC.t("rep.noprev"), cls: "" };
    const pct = Math.round(((now - before) / before) * 100);
    return { text: BC.t("rep.vs", { delta: `${pct > 0 ? "+" : ""}${pct}%`, days }),
             cls: pct > 0 ? "up" : "down" };
  }

  function tiles() {
    const total = report.total, prev = previous && previous.total;
    const days = $("from").value && $("to").value
      ? Math.round((parse($("to").value) - parse($("from").value)) / DAY) + 1 : null;
    const stat = (t, field, key) => t && t[field] ? t[field][key] : null;
    const defs = [
      ["opened", "rep.opened", total.opened, prev && prev.opened, BC.num],
      ["closed", "rep.closed", total.closed, prev && prev.closed, BC.num],
      ["avg", "rep.avg", stat(total, "resolution_seconds", "avg"), stat(prev, "resolution_seconds", "avg"), BC.dur],
      ["p50", "rep.p50", stat(total, "resolution_seconds", "p50"), stat(prev, "resolution_seconds", "p50"), BC.dur],
      ["p90", "rep.p90", stat(total, "resolution_seconds", "p90"), stat(prev, "resolution_seconds", "p90"), BC.dur],
    ];
    if (total.first_response_seconds) {  // CONTRACT §6, when the server has it
      defs.push(["frt", "rep.frt", stat(total, "first_response_seconds", "p50"),
                 stat(prev, "first_response_seconds", "p50"), BC.dur]);
    }
    if (total.resolution_business_seconds) {
      defs.push(["business", "rep.business", stat(total, "resolution_business_seconds", "p50"),
                 stat(prev, "resolution_business_seconds", "p50"), BC.dur]);
    }
    $("tiles").replaceChildren(...defs.map(([id, label, value, before, fmt]) => {
      const change = days ? delta(value, before, days) : { text: "", cls: "" };
      return BC.el("div", { class: "tile" },
        BC.el("div", { class: "label", text: BC.t(label) }),
        BC.el("div", { class: "value", id: `tile-${id}`, text: fmt(value),
                       data: { value: value === null ? "" : String(value) } }),
        BC.el("div", { class: `delta ${change.cls}`, text: change.text }));
    }));
  }

  // -- table and charts --------------------------------------------------------------------------
  function drillButton(value, measure, key) {
    if (value === null || value === undefined) return BC.el("span", { text: BC.t("none") });
    return BC.el("button", {
      type: "button", class: "link", text: BC.num(value),
      data: { measure, key: key === null ? "" : key, value: String(value) },
      on: { click: () => openDrill(measure, key) } });
  }

  function keyLabel(key) {
    if (key === "unassigned") return BC.t("unassigned");
    return key;
  }

  function cells(row, key) {
    const r = row.resolution_seconds;
    return [
      BC.el("td", { class: "num" }, drillButton(row.opened, "opened", key)),
      BC.el("td", { class: "num" }, drillButton(row.closed, "closed", key)),
      BC.el("td", { class: "num" }, drillButton(r.count, "resolved", key)),
      ...["avg", "p50", "p90", "min", "max"].map((s) =>
        BC.el("td", { class: "num", text: BC.dur(r[s]), data: { stat: s } })),
    ];
  }

  function table() {
    const group = report.group_by;
    $("key-head").textContent = BC.t(`group.${group}`);
    $("report-caption").textContent = BC.t("rep.table", {
      group: BC.t(`group.${group}`).toLowerCase(), from: report.from || "…",
      to: report.to || "…", tz: report.tz });
    $("report-table").tBodies[0].replaceChildren(...report.rows.map((row) =>
      BC.el("tr", { data: { key: row.key } },
        BC.el("th", { scope: "row", class: "text", text: keyLabel(row.key) }),
        ...cells(row, row.key))));
    $("report-table").tFoot.replaceChildren(BC.el("tr", {},
      BC.el("th", { scope: "row", text: BC.t("total") }), ...cells(report.total, null)));
    $("report-empty").hidden = report.rows.length > 0;
  }

  function charts() {
    const rows = report.rows, labels = rows.map((r) => keyLabel(r.key));
    const timeGrouped = TIME.has(report.group_by);
    const volume = [
      { label: BC.t("rep.closed"), data: rows.map((r) => r.closed), backgroundColor: "#2da44e" }];
    if (rows.some((r) => r.opened !== null)) {
      volume.unshift({ label: BC.t("rep.opened"), data: rows.map((r) => r.opened),
                       backgroundColor: "#1f6feb" });
    }
    BC.chart($("volume-chart"), {
      type: "bar", data: { labels, datasets: volume },
      options: { indexAxis: timeGrouped ? "x" : "y",
                 scales: { x: { beginAtZero: true }, y: { beginAtZero: true } } },
    });
    const minutes = (s) => (s === null ? null : Math.round((s / 60) * 10) / 10);
    BC.chart($("resolution-chart"), {
      type: timeGrouped ? "line" : "bar",
      data: { labels, datasets: [
        { label: "p50 (min)", data: rows.map((r) => minutes(r.resolution_seconds.p50)),
          borderColor: "#8250df", backgroundColor: "#8250df", spanGaps: true },
        { label: "p90 (min)", data: rows.map((r) => minutes(r.resolution_seconds.p90)),
          borderColor: "#bf8700", backgroundColor: "#bf8700", spanGaps: true },
      ] },
      options: { scales: { y: { beginAtZero: true } } },
    });
  }

  function render() {
    if (!report) return;
    tiles();
    table();
    charts();
    if (drill) renderDrill();
    if (timelineId && timeline) renderTimeline();
  }

  let latest = 0;

  async function load() {
    const p = params(), mine = ++latest;
    try {
      const wanted = [BC.api("/metrics", p)];
      if (p.from && p.to) {
        const days = Math.round((parse(p.to) - parse(p.from)) / DAY) + 1;
        const prevTo = parse(p.from) - DAY;
        wanted.push(BC.api("/metrics", { ...p, group_by: "month", from: iso(prevTo - (days - 1) * DAY),
                                         to: iso(prevTo) }));
      }
      const [now, before] = await Promise.all(wanted);
      if (mine !== latest) return;  // the controls changed meanwhile: a newer load draws
      report = now;
      previous = before || null;
      document.body.dataset.loaded = `${p.group_by}|${p.from}|${p.to}|${p.tz}`;
      render();
    } catch (_) { /* the message is shown by BC.api */ }
  }

  // -- drill-down --------------------------------------------------------------------------------
  function drillParams() {
    const p = params();
    const query = { measure: drill.measure, from: p.from, to: p.to, tz: p.tz,
                    status: $("f-status").value, channel: $("f-channel").value.trim(),
                    assignee: $("f-assignee").value.trim(), closed_by: $("f-closed-by").value };
    if (drill.key !== null) Object.assign(query, { group_by: drill.group_by, key: drill.key });
    return query;
  }

  async function openDrill(measure, key) {
    drill = { measure, key, group_by: report.group_by, offset: 0, rows: [], total: 0 };
    for (const id of ["f-status", "f-channel", "f-assignee", "f-closed-by"]) $(id).value = "";
    $("drill").hidden = false;
    await loadDrill();
    $("drill-title").focus();
  }

  let latestDrill = 0;

  async function loadDrill() {
    const mine = ++latestDrill;
    try {
      const rows = await BC.api("/conversations", { ...drillParams(), limit: PAGE,
                                                    offset: drill.offset });
      if (mine !== latestDrill || !drill) return;  // a newer list is on its way
      drill.rows = rows;
      drill.total = Number(rows.totalCount || rows.length);
      renderDrill();
    } catch (_) { /* shown */ }
  }

  function renderDrill() {
    const bucket = drill.key === null ? BC.t("drill.all")
      : `${BC.t(`group.${drill.group_by}`)} ${keyLabel(drill.key)}`;
    $("drill-title").textContent = BC.t("drill.title",
      { measure: BC.t(`measure.${drill.measure}`), bucket });
    const tz = $("tz").value || report.tz;
    $("drill-table").tBodies[0].replaceChildren(...drill.rows.map((row) =>
      BC.el("tr", { data: { conversation: row.conversation_id } },
        BC.el("td", { class: "text id", text: row.contact_id }),
        BC.el("td", { text: row.channel || BC.t("none") }),
        BC.el("td", { text: BC.t(`status.${row.status}`) }),
        BC.el("td", { class: "when", text: BC.when(row.opened_at, tz, "short") }),
        BC.el("td", { class: "when", text: BC.when(row.closed_at, tz, "short") }),
        BC.el("td", { text: row.opened_by }),
        BC.el("td", {}, row.closed_by
          ? BC.el("span", { class: `badge ${row.closed_by === "merge" ? "merge" : ""}`,
                            text: row.closed_by }) : BC.t("none")),
        BC.el("td", { class: "text", text: row.assignee_id || BC.t("unassigned") }),
        BC.el("td", { class: "text", text: row.category || BC.t("none") }),
        BC.el("td", { class: "text summary", text: row.summary || BC.t("none") }),
        BC.el("td", { class: "num", text: BC.dur(row.resolution_seconds) }),
        BC.el("td", {}, BC.el("button", { type: "button", class: "link", text: BC.t("tl.show"),
          on: { click: () => openTimeline(row.conversation_id) } })))));
    $("drill-empty").hidden = drill.rows.length > 0;
    const first = drill.total ? drill.offset + 1 : 0;
    $("drill-count").textContent = BC.t("drill.count", {
      first: BC.num(first), last: BC.num(drill.offset + drill.rows.length),
      total: BC.num(drill.total) });
    $("drill-count").dataset.total = String(drill.total);
    $("drill-prev").disabled = drill.offset === 0;
    $("drill-next").disabled = drill.offset + drill.rows.length >= drill.total;
  }

  // -- timeline ----------------------------------------------------------------------------------
  let timeline = null;

  function describe(ev) {
    const parts = [];
    let what;
    switch (ev.event_type) {
      case "ConversationOpened":
        what = BC.t("ev.ConversationOpened", { by: [ev.opened_by, ev.actor_id].filter(Boolean).join(" ") });
        if (ev.channel_type) parts.push(BC.t("ev.channel", { channel: ev.channel_type }));
        break;
      case "MessageSent":
        what = BC.t("ev.MessageSent", { by: [ev.actor_type, ev.actor_id].filter(Boolean).join(" ") });
        break;
      case "ConversationAssigned":
        what = ev.assignee_id ? BC.t("ev.ConversationAssigned", { to: ev.assignee_id }) : BC.t("ev.unassigned");
        if (ev.team_given && ev.team_id) parts.push(BC.t("ev.team", { team: ev.team_id }));
        break;
      case "ConversationClosed":
        what = BC.t("ev.ConversationClosed", { by: [ev.closed_by, ev.closed_by_actor].filter(Boolean).join(" ") });
        if (ev.category) parts.push(BC.t("ev.category", { category: ev.category }));
        if (ev.summary) parts.push(BC.t("ev.summary", { summary: ev.summary }));
        break;
      case "ContactMerged":
        what = BC.t("ev.ContactMerged", { secondary: ev.secondary_contact_id, primary: ev.primary_contact_id });
        break;
      default:
        what = BC.t(`ev.${ev.event_type}`);
    }
    return { what, detail: parts.join(" · ") };
  }

  async function openTimeline(id) {
    try {
      timeline = await BC.api(`/conversations/${encodeURIComponent(id)}/events`);
      timelineId = id;
      renderTimeline();
      $("timeline").hidden = false;
      $("timeline-title").focus();
    } catch (_) { /* shown */ }
  }

  function renderTimeline() {
    const conv = timeline.conversation, tz = $("tz").value || (report && report.tz) || zone;
    $("timeline-title").textContent = BC.t("tl.title", { id: conv.conversation_id });
    $("timeline-sub").textContent = BC.t("tl.sub", { contact: conv.contact_id });
    $("timeline-list").replaceChildren(...timeline.events.map((ev) => {
      const { what, detail } = describe(ev);
      return BC.el("li", { data: { type: ev.event_type } },
        BC.el("time", { datetime: ev.occurred_at, text: BC.when(ev.occurred_at, tz) }),
        BC.el("span", { class: "what", text: what }),
        detail ? BC.el("span", { class: "detail", text: detail }) : null);
    }));
  }

  // -- wiring ------------------------------------------------------------------------------------
  async function workspaceZone() {
    // The zone the server uses without ?tz= (the workspace's, CONTRACT §6.1): an empty query
    // answers it in "tz" without any rows.
    try {
      return (await BC.api("/metrics", { group_by: "month", from: "9999-12-31",
                                         to: "9999-12-31" })).tz || "UTC";
    } catch (_) {
      return "UTC";
    }
  }

  function applyPreset() {
    const [from, to] = presetRange($("preset").value);
    $("from").value = from;
    $("to").value = to;
  }

  async function ready() {
    zone = await workspaceZone();
    applyPreset();
    await load();
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.get("timeline")) openTimeline(hash.get("timeline"));
  }

  document.addEventListener("DOMContentLoaded", () => {
    BC.zoneOptions($("tz"));
    $("preset").addEventListener("change", () => { applyPreset(); load(); });
    for (const id of ["from", "to"]) {
      $(id).addEventListener("change", () => { $("preset").value = "custom"; load(); });
    }
    $("tz").addEventListener("change", () => {
      if ($("preset").value !== "custom") applyPreset();
      load();
    });
    $("group").addEventListener("change", load);
    $("controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("csv").addEventListener("click", () => BC.download("/metrics", params(),
      `metrics-${BC.session().ws}-${$("group").value}.csv`));
    $("drill-filters").addEventListener("submit", (e) => { e.preventDefault(); });
    $("drill-filters").addEventListener("change", () => { drill.offset = 0; loadDrill(); });
    $("drill-prev").addEventListener("click", () => {
      drill.offset = Math.max(0, drill.offset - PAGE); loadDrill(); });
    $("drill-next").addEventListener("click", () => { drill.offset += PAGE; loadDrill(); });
    $("drill-csv").addEventListener("click", () => BC.download("/conversations", drillParams(),
      `conversations-${BC.session().ws}.csv`));
    $("drill-close").addEventListener("click", () => { $("drill").hidden = true; drill = null; });
    $("timeline-close").addEventListener("click", () => {
      $("timeline").hidden = true; timelineId = null; timeline = null; });
    BC.onLanguage(render);
    BC.start(ready);
  });
})();
