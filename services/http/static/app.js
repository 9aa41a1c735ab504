/* Shared by the Reports and Dashboard pages: language, token, API, formatting, live stream.
 * Everything that came from gateways is written with textContent, never as HTML. */
"use strict";

const BC = (() => {
  const STORE = { ws: "bonychat.workspace", token: "bonychat.token", lang: "bonychat.lang" };
  const T = {
    en: {
      "skip": "Skip to content", "nav.dashboard": "Dashboard",
      "nav.reports": "Reports › Conversations", "lang": "Language",
      "signout": "Change token",
      "login.title": "Sign in with an analytics token",
      "login.help": "The token stays in this browser tab only (session storage) and is sent in the Authorization header, never in a URL.",
      "login.workspace": "Workspace", "login.token": "Analytics token", "login.submit": "Open",
      "auth.401": "The server refused this token (401 Unauthorized). Check the analytics token of this workspace and sign in again.",
      "auth.403": "This token may not read workspace “{ws}” (403 Forbidden). Sign in with the token of that workspace.",
      "error": "The server answered {status}: {detail}",
      "error.network": "Cannot reach the server: {detail}",
      "tz": "Time zone", "tz.workspace": "Workspace default",
      "dash.title": "Dashboard", "dash.sub": "Conversations open now and today's activity",
      "dash.open": "Open now", "dash.unassigned": "Unassigned", "dash.opened": "Opened today",
      "dash.closed": "Closed today", "dash.p50": "Median resolution today",
      "dash.p90": "P90 resolution today", "dash.frt": "Median first response today",
      "dash.hourly": "Opened and closed today, per hour", "dash.load": "Agent load (open)",
      "dash.channels": "Open per channel", "dash.waiting": "Longest waiting",
      "live.connecting": "Connecting…", "live.live": "Live", "live.lost": "Connection lost — reconnecting…",
      "live.updated": "Updated {time}", "live.today": "Today is {day} ({tz})",
      "col.assignee": "Assignee", "col.channel": "Channel", "col.open": "Open",
      "col.contact": "Contact", "col.opened": "Opened", "col.closed": "Closed",
      "col.last": "Last activity", "col.waiting": "Waiting", "col.status": "Status",
      "col.opened_by": "Opened by", "col.closed_by": "Closed by", "col.summary": "Summary",
      "col.resolution": "Resolution", "col.resolved": "Resolved", "col.avg": "Avg",
      "col.p50": "P50", "col.p90": "P90", "col.min": "Min", "col.max": "Max",
      "col.hour": "Hour", "col.category": "Category", "col.timeline": "Timeline",
      "total": "Total", "none": "—", "unassigned": "unassigned",
      "rep.title": "Reports › Conversations",
      "rep.sub": "Opened, closed and resolution time; every number opens its conversations.",
      "rep.range": "Range", "rep.from": "From", "rep.to": "To", "rep.group": "Group by",
      "preset.today": "Today", "preset.yesterday": "Yesterday", "preset.last7": "Last 7 days",
      "preset.last30": "Last 30 days", "preset.month": "This month", "preset.custom": "Custom",
      "group.day": "Day", "group.week": "Week", "group.month": "Month",
      "group.channel": "Channel", "group.opened_by": "Opened by", "group.closed_by": "Closed by",
      "group.assignee": "Assignee", "group.team": "Team",
      "rep.csv": "Download CSV", "rep.opened": "Opened", "rep.closed": "Closed",
      "rep.avg": "Resolution avg", "rep.p50": "Resolution p50", "rep.p90": "Resolution p90",
      "rep.frt": "First response p50", "rep.business": "Resolution p50 (business hours)",
      "rep.volume": "Opened vs closed", "rep.resolution": "Resolution time p50 / p90",
      "rep.table": "Metrics by {group}, {from} to {to}, {tz}",
      "rep.vs": "{delta} vs previous {days} days", "rep.same": "same as previous {days} days",
      "rep.noprev": "no previous data", "rep.empty": "No conversations in this range.",
      "drill.title": "Conversations: {measure} · {bucket}", "drill.all": "whole range",
      "measure.opened": "opened", "measure.closed": "closed", "measure.resolved": "resolved",
      "drill.count": "{first}–{last} of {total}", "drill.prev": "Previous",
      "drill.next": "Next", "drill.csv": "Export CSV", "drill.close": "Close list",
      "drill.any": "Any", "drill.empty": "No conversations match.",
      "status.open": "open", "status.closed": "closed",
      "tl.title": "Timeline of conversation {id}", "tl.sub": "Contact {contact}; domain events straight from the event store, in order.",
      "tl.close": "Close timeline", "tl.show": "Timeline",
      "ev.ConversationOpened": "Opened by {by}", "ev.MessageReceived": "Message received",
      "ev.MessageSent": "Message sent by {by}", "ev.ConversationAssigned": "Assigned to {to}",
      "ev.unassigned": "Unassigned", "ev.ConversationClosed": "Closed by {by}",
      "ev.ContactMerged": "Contact {secondary} merged into {primary}",
      "ev.channel": "channel {channel}", "ev.team": "team {team}",
      "ev.category": "category: {category}", "ev.summary": "summary: {summary}",
    },
    es: {
      "skip": "Saltar al contenido", "nav.dashboard": "Escritorio",
      "nav.reports": "Informes › Conversaciones", "lang": "Idioma",
      "signout": "Cambiar token",
      "login.title": "Entrar con un token de analítica",
      "login.help": "El token solo queda en esta pestaña (session storage) y se envía en la cabecera Authorization, nunca en una URL.",
      "login.workspace": "Espacio de trabajo", "login.token": "Token de analítica",
      "login.submit": "Abrir",
      "auth.401": "El servidor rechazó este token (401 Unauthorized). Revisa el token de analítica de este espacio y vuelve a entrar.",
      "auth.403": "Este token no puede leer el espacio “{ws}” (403 Forbidden). Entra con el token de ese espacio.",
      "error": "El servidor respondió {status}: {detail}",
      "error.network": "No se puede contactar con el servidor: {detail}",
      "tz": "Zona horaria", "tz.workspace": "La del espacio",
      "dash.title": "Escritorio", "dash.sub": "Conversaciones abiertas ahora y actividad de hoy",
      "dash.open": "Abiertas ahora", "dash.unassigned": "Sin asignar",
      "dash.opened": "Abiertas hoy", "dash.closed": "Cerradas hoy",
      "dash.p50": "Resolución mediana hoy", "dash.p90": "Resolución P90 hoy",
      "dash.frt": "Primera respuesta mediana hoy",
      "dash.hourly": "Abiertas y cerradas hoy, por hora", "dash.load": "Carga por agente (abiertas)",
      "dash.channels": "Abiertas por canal", "dash.waiting": "Las que más esperan",
      "live.connecting": "Conectando…", "live.live": "En vivo",
      "live.lost": "Conexión perdida — reconectando…", "live.updated": "Actualizado {time}",
      "live.today": "Hoy es {day} ({tz})",
      "col.assignee": "Asignado a", "col.channel": "Canal", "col.open": "Abiertas",
      "col.contact": "Contacto", "col.opened": "Abierta", "col.closed": "Cerrada",
      "col.last": "Última actividad", "col.waiting": "Esperando", "col.status": "Estado",
      "col.opened_by": "Abierta por", "col.closed_by": "Cerrada por", "col.summary": "Resumen",
      "col.resolution": "Resolución", "col.resolved": "Resueltas", "col.avg": "Media",
      "col.p50": "P50", "col.p90": "P90", "col.min": "Mín", "col.max": "Máx",
      "col.hour": "Hora", "col.category": "Categoría", "col.timeline": "Historial",
      "total": "Total", "none": "—", "unassigned": "sin asignar",
      "rep.title": "Informes › Conversaciones",
      "rep.sub": "Abiertas, cerradas y tiempo de resolución; cada número abre sus conversaciones.",
      "rep.range": "Periodo", "rep.from": "Desde", "rep.to": "Hasta", "rep.group": "Agrupar por",
      "preset.today": "Hoy", "preset.yesterday": "Ayer", "preset.last7": "Últimos 7 días",
      "preset.last30": "Últimos 30 días", "preset.month": "Este mes",
      "preset.custom": "Personalizado",
      "group.day": "Día", "group.week": "Semana", "group.month": "Mes",
      "group.channel": "Canal", "group.opened_by": "Abierta por", "group.closed_by": "Cerrada por",
      "group.assignee": "Agente", "group.team": "Equipo",
      "rep.csv": "Descargar CSV", "rep.opened": "Abiertas", "rep.closed": "Cerradas",
      "rep.avg": "Resolución media", "rep.p50": "Resolución p50", "rep.p90": "Resolución p90",
      "rep.frt": "Primera respuesta p50", "rep.business": "Resolución p50 (horario laboral)",
      "rep.volume": "Abiertas vs cerradas", "rep.resolution": "Tiempo de resolución p50 / p90",
      "rep.table": "Métricas por {group}, {from} a {to}, {tz}",
      "rep.vs": "{delta} frente a los {days} días anteriores",
      "rep.same": "igual que los {days} días anteriores", "rep.noprev": "sin datos previos",
      "rep.empty": "No hay conversaciones en este periodo.",
      "drill.title": "Conversaciones: {measure} · {bucket}", "drill.all": "todo el periodo",
      "measure.opened": "abiertas", "measure.closed": "cerradas", "measure.resolved": "resueltas",
      "drill.count": "{first}–{last} de {total}", "drill.prev": "Anterior",
      "drill.next": "Siguiente", "drill.csv": "Exportar CSV", "drill.close": "Cerrar lista",
      "drill.any": "Cualquiera", "drill.empty": "Ninguna conversación coincide.",
      "status.open": "abierta", "status.closed": "cerrada",
      "tl.title": "Historial de la conversación {id}",
      "tl.sub": "Contacto {contact}; eventos de dominio tal como están en el almacén de eventos, en orden.",
      "tl.close": "Cerrar historial", "tl.show": "Historial",
      "ev.ConversationOpened": "Abierta por {by}", "ev.MessageReceived": "Mensaje recibido",
      "ev.MessageSent": "Mensaje enviado por {by}", "ev.ConversationAssigned": "Asignada a {to}",
      "ev.unassigned": "Desasignada", "ev.ConversationClosed": "Cerrada por {by}",
      "ev.ContactMerged": "Contacto {secondary} fusionado en {primary}",
      "ev.channel": "canal {channel}", "ev.team": "equipo {team}",
      "ev.category": "categoría: {category}", "ev.summary": "resumen: {summary}",
    },
  };
  let lang = "en";
  const listeners = [];

  function pickLanguage() {
    const saved = localStorage.getItem(STORE.lang);
    if (saved && T[saved]) return saved;
    const wanted = (navigator.languages || [navigator.language || "en"]);
    for (const tag of wanted) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (T[base]) return base;
    }
    return "en";
  }

  function t(key, vars) {
    const text = (T[lang] && T[lang][key]) || T.en[key] || key;
    return text.replace(/\{(\w+)\}/g, (_, name) =>
      vars && vars[name] !== undefined && vars[name] !== null ? String(vars[name]) : "");
  }

  function applyI18n() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of document.querySelectorAll("[data-i18n-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    }
    const select = document.getElementById("lang");
    if (select) select.value = lang;
  }

  function setLanguage(next) {
    lang = T[next] ? next : "en";
    localStorage.setItem(STORE.lang, lang);
    applyI18n();
    for (const fn of listeners) fn();
  }

  // -- formatting -------------------------------------------------------------------------
  const num = (value) => value === null || value === undefined ? t("none")
    : new Intl.NumberFormat(lang).format(value);

  /** Seconds as a short duration: 45s, 12m 05s, 3h 05m, 2d 04h (as the CLI prints them). */
  function dur(seconds) {
    if (seconds === null || seconds === undefined) return t("none");
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
    if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
    return `${d}d ${String(h % 24).padStart(2, "0")}h`;
  }

  function when(iso, tz, dateStyle) {
    if (!iso) return t("none");
    const options = { dateStyle: dateStyle || "medium", timeStyle: "short" };
    if (tz) options.timeZone = tz;
    return new Intl.DateTimeFormat(lang, options).format(new Date(iso));
  }

  /** Today's date YYYY-MM-DD in a zone (the browser's when none is given). */
  function today(tz) {
    const options = { year: "numeric", month: "2-digit", day: "2-digit" };
    if (tz) options.timeZone = tz;
    return new Intl.DateTimeFormat("en-CA", options).format(new Date());
  }

  // -- DOM helpers (text only) ----------------------------------------------------------------
  function el(tag, options, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(options || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "data") Object.assign(node.dataset, value);
      else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(id, visible) {
    const node = document.getElementById(id);
    if (node) node.hidden = !visible;
  }

  function message(text, kind) {
    const box = document.getElementById("message");
    if (!box) return;
    box.textContent = text || "";
    box.className = kind === "info" ? "message info" : "message";
    box.hidden = !text;
  }

  function zoneOptions(select) {
    const known = typeof Intl.supportedValuesOf === "function"
      ? Intl.supportedValuesOf("timeZone") : ["Europe/Madrid", "America/New_York"];
    const zones = ["UTC", ...known.filter((z) => z !== "UTC")];
    select.replaceChildren(el("option", { value: "", "data-i18n": "tz.workspace",
                                          text: t("tz.workspace") }),
                           ...zones.map((z) => el("option", { value: z, text: z })));
  }

  // -- session and API ------------------------------------------------------------------------
  class AuthError extends Error {}

  function session() {
    const ws = sessionStorage.getItem(STORE.ws), token = sessionStorage.getItem(STORE.token);
    return ws && token ? { ws, token } : null;
  }

  function signOut(text) {
    sessionStorage.removeItem(STORE.token);
    show("main", false);
    show("login", true);
    const ws = sessionStorage.getItem(STORE.ws);
    if (ws) document.getElementById("login-ws").value = ws;
    document.getElementById("login-token").value = "";
    document.getElementById("login-token").focus();
    if (text) message(text);
  }

  function url(path, params) {
    const s = session();
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") query.set(key, value);
    }
    const qs = query.toString();
    return `/v1/workspaces/${encodeURIComponent(s.ws)}${path}${qs ? `?${qs}` : ""}`;
  }

  async function request(path, params, signal) {
    const s = session();
    if (!s) throw new AuthError("no token");
    let response;
    try {
      response = await fetch(url(path, params), {
        headers: { Authorization: `Bearer ${s.token}` }, signal, cache: "no-store" });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      message(t("error.network", { detail: error.message }));
      throw error;
    }
    if (response.status === 401 || response.status === 403) {
      signOut(t(`auth.${response.status}`, { ws: s.ws }));
      throw new AuthError(String(response.status));
    }
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      message(t("error", { status: response.status, detail }));
      throw new Error(detail);
    }
    return response;
  }

  async function api(path, params) {
    const response = await request(path, params);
    const body = await response.json();
    const box = document.getElementById("message");
    if (box && !box.hidden && box.className === "message") message("");
    return Object.assign(body, { totalCount: response.headers.get("X-Total-Count") });
  }

  /** Fetch a CSV with the token and hand it to the browser as a download. */
  async function download(path, params, filename) {
    const response = await request(path, { ...params, format: "csv" });
    const blob = await response.blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  /** Server-Sent Events read with fetch (EventSource cannot send the token header). */
  function stream(path, params, onEvent, onState) {
    let stopped = false, controller = null;
    async function connect() {
      while (!stopped) {
        controller = new AbortController();
        onState("connecting");
        try {
          const response = await request(path, params, controller.signal);
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          onState("live");
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              let name = "message", data = "";
              for (const line of block.split("\n")) {
                if (line.startsWith("event: ")) name = line.slice(7);
                else if (line.startsWith("data: ")) data += line.slice(6);
              }
              if (!block.startsWith(":")) onEvent(name, data ? JSON.parse(data) : null);
            }
          }
        } catch (error) {
          if (error instanceof AuthError || stopped) return;
        }
        if (stopped) return;
        onState("lost");
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
    connect();
    return () => { stopped = true; if (controller) controller.abort(); };
  }

  // -- tables that become cards when they do not fit ------------------------------------------------
  /** Tables with class "stack" are shown as one card per row (class "cards", pages.css) when
   * they would not fit their card: on a phone, in a narrow window. Each body / footer cell gets
   * data-label = its column's header text (shown above the value in a card), and every part
   * gets its explicit ARIA table role, so screen readers still read a table whose CSS display
   * was changed. Re-run whenever rows, headers, visibility or the window size change. */
  function labelTables() {
    for (const table of document.querySelectorAll("table.stack")) {
      table.setAttribute("role", "table");
      const heads = table.tHead ? [...table.tHead.rows[0].cells].map((th) => th.textContent.trim()) : [];
      for (const group of [table.tHead, ...table.tBodies, table.tFoot]) {
        if (group) group.setAttribute("role", "rowgroup");
      }
      for (const row of table.rows) {
        row.setAttribute("role", "row");
        const header = row.parentElement === table.tHead;
        [...row.cells].forEach((cell, i) => {
          cell.setAttribute("role", header ? "columnheader"
            : cell.tagName === "TH" ? "rowheader" : "cell");
          if (!header && cell.dataset.label !== heads[i]) cell.dataset.label = heads[i] || "";
        });
      }
      const wrap = table.parentElement;
      if (wrap && wrap.offsetParent) {  // shown: measure it as a table, then decide
        table.classList.remove("cards");
        table.classList.toggle("cards", table.offsetWidth > wrap.clientWidth + 1);
      }
    }
  }

  function watchTables() {
    let queued = false;
    const relabel = () => { queued = false; labelTables(); };
    const later = () => { if (!queued) { queued = true; queueMicrotask(relabel); } };
    // of the attributes only "hidden" is watched, so labelling does not wake the observer again
    new MutationObserver(later).observe(document.body, {
      childList: true, subtree: true, characterData: true, attributeFilter: ["hidden"] });
    window.addEventListener("resize", later);
    labelTables();
  }

  // -- charts -----------------------------------------------------------------------------------
  function chart(canvas, config) {
    const old = Chart.getChart(canvas);
    if (old) old.destroy();
    config.options = Object.assign({
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom" } },
    }, config.options || {});
    return new Chart(canvas, config);
  }

  // -- start ------------------------------------------------------------------------------------
  function start(onReady) {
    lang = pickLanguage();
    applyI18n();
    watchTables();
    document.getElementById("lang").addEventListener("change", (e) => setLanguage(e.target.value));
    document.getElementById("signout").addEventListener("click", () => signOut(""));
    document.getElementById("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const ws = document.getElementById("login-ws").value.trim();
      const token = document.getElementById("login-token").value.trim();
      if (!ws || !token) return;
      sessionStorage.setItem(STORE.ws, ws);
      sessionStorage.setItem(STORE.token, token);
      document.getElementById("login-token").value = "";
      message("");
      show("login", false);
      show("main", true);
      onReady();
    });
    if (session()) {
      show("main", true);
      onReady();
    } else {
      signOut("");
    }
  }

  return { t, el, num, dur, when, today, show, message, api, download, stream, chart,
           start, session, zoneOptions, onLanguage: (fn) => listeners.push(fn),
           get lang() { return lang; } };
})();
