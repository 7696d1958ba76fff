// The DataFlow dashboard: reads the same API it is served by (relative URLs, so a stage path in
// front works), refreshes while the tab is visible, and keeps the view (range, types) in the URL
// so it can be shared. The API key lives in this browser only: from the form, or once from the
// URL fragment (#key=…), which browsers never send to a server.
(function () {
  "use strict";

  const REFRESH_MS = 5000;
  const KEY_STORE = "dataflow.apiKey";
  const COLORS = ["#0b5cad", "#e8710a", "#1a7f37", "#a83ca8", "#c62828", "#008b8b",
    "#7d5800", "#5a52d9", "#d63384", "#4f7a28"];
  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat("en-US");
  const charts = {};
  let refreshing = false;
  let refreshes = 0;
  let lastDaily = "";

  // ---- the key -----------------------------------------------------------------------------
  function takeKeyFromFragment() {
    const m = /(?:^|&)key=([^&]*)/.exec(location.hash.slice(1));
    if (!m) return;
    try { localStorage.setItem(KEY_STORE, decodeURIComponent(m[1])); } catch (_) { /* private mode */ }
    // The key leaves the address bar (and history) at once.
    history.replaceState(null, "", location.pathname + location.search);
  }
  function apiKey() {
    try { return localStorage.getItem(KEY_STORE) || ""; } catch (_) { return ""; }
  }

  // ---- the view in the URL -----------------------------------------------------------------
  function viewFromUrl() {
    const q = new URLSearchParams(location.search);
    return {
      from: q.get("from") || "",
      to: q.get("to") || "",
      types: q.getAll("event_type").filter(Boolean),
    };
  }
  function query(view, extra) {
    const q = new URLSearchParams();
    if (view.from) q.set("from", view.from);
    if (view.to) q.set("to", view.to);
    for (const t of view.types) q.append("event_type", t);
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }
  function fillControls(view) {
    $("from").value = view.from;
    $("to").value = view.to;
    $("types").value = view.types.join(", ");
  }
  function controlsView() {
    return {
      from: $("from").value,
      to: $("to").value,
      types: $("types").value.split(",").map((t) => t.trim()).filter(Boolean),
    };
  }

  // ---- calls -------------------------------------------------------------------------------
  // Errors are {"error": code, "message": text}; API Gateway's own refusals {"message": text}.
  class ApiFailure extends Error {
    constructor(status, body) {
      super((body && body.message) || "HTTP " + status);
      this.status = status;
      this.code = body && typeof body.error === "string" ? body.error : null;
    }
  }
  async function call(path) {
    const headers = { accept: "application/json" };
    const key = apiKey();
    // A JWT (AuthMode=JWT) goes as a bearer token; anything else is an API key.
    if (/^[\w-]+\.[\w-]+\.[\w-]*$/.test(key)) headers.authorization = "Bearer " + key;
    else if (key) headers["x-api-key"] = key;
    let res;
    try {
      res = await fetch(path, { headers, cache: "no-store" });
    } catch (e) {
      const err = new Error("the API did not answer");
      err.unreachable = true;
      throw err;
    }
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (!res.ok) throw new ApiFailure(res.status, body);
    return body;
  }
  const settle = (p) => p.then((value) => ({ value }), (error) => ({ error }));

  // ---- states --------------------------------------------------------------------------------
  // Written only when it changes: an alert region re-announces every write.
  function banner(kind, text) {
    const b = $("banner");
    const cls = "banner" + (kind ? " " + (kind === "error" ? "error" : kind === "warn" ? "warn" : "info") : "");
    if (b.className === cls && b.textContent === (text || "")) return;
    b.hidden = !kind;
    b.className = cls;
    b.textContent = kind ? text : "";
  }
  function setState(state) { document.body.dataset.state = state; }

  // ---- rendering ------------------------------------------------------------------------------
  function text(id, v) { const el = $(id); if (el.textContent !== v) el.textContent = v; }
  // Ages from absolute times, so an answer cached by the API still reads right.
  const secondsSince = (iso) => (iso ? Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000)) : null);
  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return duration(s) + " ago";
  }
  function duration(s) {
    if (s == null) return "–";
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return fmt.format(Math.round(s / 86400)) + " d";
  }
  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c && typeof c === "object" && !(c instanceof Node)) {
        if (c.cls) td.className = c.cls;
        if (c.node) td.appendChild(c.node); else td.textContent = c.text;
      } else if (c instanceof Node) td.appendChild(c);
      else td.textContent = c;
      tr.appendChild(td);
    }
    return tr;
  }
  function fillTable(id, rows, emptyText, cols) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = cols; td.className = "empty"; td.textContent = emptyText;
      tr.appendChild(td); body.appendChild(tr);
      return;
    }
    for (const r of rows) body.appendChild(row(r));
  }

  function renderSummary(s) {
    text("kpi-events", fmt.format(s.total_events));
    text("kpi-users", fmt.format(s.unique_users));
    const entries = Object.entries(s.events_by_type).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const total = s.total_events || 1;
    fillTable("top-types", entries.slice(0, 15).map(([t, n]) => {
      const share = (100 * n) / total;
      const bar = document.createElement("span");
      bar.className = "share"; bar.style.width = Math.max(2, share * 0.8) + "px";
      const cell = document.createElement("span");
      cell.append(bar, share.toFixed(1) + " %");
      return [t, { text: fmt.format(n), cls: "num" }, { node: cell, cls: "num" }];
    }), "no events in this range", 3);
    const known = $("known-types");
    if (!known.dataset.filled) {
      known.replaceChildren(...entries.map(([t]) => { const o = document.createElement("option"); o.value = t; return o; }));
      if (entries.length) known.dataset.filled = "1";
    }
  }

  function renderPipeline(p) {
    text("kpi-files", fmt.format(p.totals.files_processed));
    text("kpi-rejected", fmt.format(p.totals.events_rejected));
    text("kpi-last", p.last_processed_at ? ago(p.last_processed_at) : "never");
    $("kpi-last").title = p.last_processed_at || "";
    text("kpi-lag", duration(secondsSince(p.watermark)));
    $("kpi-lag").title = p.watermark ? "newest event: " + p.watermark : "";
    text("pipe-inprogress", fmt.format(p.in_progress));
    text("pipe-attention", fmt.format(p.needs_attention.length));
    text("pipe-dlq", p.dead_letters.depth == null ? "n/a" : fmt.format(p.dead_letters.depth));
    $("pipe-dlq").title = p.dead_letters.error || "";
    text("pipe-idle", duration(secondsSince(p.last_processed_at)));
    const reasons = Object.entries(p.rejected_by_reason).sort((a, b) => b[1] - a[1]);
    fillTable("reasons", reasons.map(([r, n]) => [r, { text: fmt.format(n), cls: "num" }]), "no rejected lines", 2);
    fillTable("recent", p.recent.map((o) => [
      { text: o.object, cls: "obj" },
      { text: o.state.replace("_", " ") + (o.stuck ? " (stuck)" : ""), cls: "state-" + o.state },
      { text: o.accepted == null ? "–" : fmt.format(o.accepted), cls: "num" },
      { text: o.rejected == null ? "–" : fmt.format(o.rejected), cls: "num" },
      { text: o.duration_ms == null ? "–" : fmt.format(o.duration_ms) + " ms", cls: "num" },
      ago(o.updated_at),
    ]), "no objects in the last two days", 6);
    const list = $("attention");
    list.replaceChildren();
    if (!p.needs_attention.length) {
      const li = document.createElement("li"); li.className = "empty"; li.textContent = "nothing stuck or failed";
      list.appendChild(li);
    }
    for (const o of p.needs_attention) {
      const li = document.createElement("li");
      li.textContent = (o.stuck ? "stuck: " : o.state + ": ") + o.object + (o.error ? " — " + o.error : "");
      list.appendChild(li);
    }
  }

  // ---- charts ----------------------------------------------------------------------------------
  function chartWidth(el) { return Math.max(260, el.clientWidth); }
  function draw(id, opts, data) {
    const el = $(id);
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    el.replaceChildren();
    if (!window.uPlot || !data[0].length) {
      const p = document.createElement("p"); p.className = "empty";
      p.textContent = window.uPlot ? "no data in this range" : "charts unavailable";
      el.appendChild(p);
      el.dataset.points = "0";
      return;
    }
    opts.width = chartWidth(el);
    opts.height = 240;
    charts[id] = new window.uPlot(opts, data, el);
    el.dataset.points = String(data[0].length);
  }
  function daySeconds(d) { return Date.parse(d + "T00:00:00Z") / 1000; }
  const DAY = 86400;
  const isoDay = (v) => new Date(v * 1000).toISOString().slice(0, 10);
  // Days are the unit: ticks on whole days (UTC, as the API's dates), never hours.
  const dayAxis = {
    incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY, 91 * DAY, 182 * DAY, 364 * DAY],
    values: (u, splits) => splits.map(isoDay),
    space: 80,
  };
  const countAxis = { values: (u, vals) => vals.map((v) => fmt.format(v)), size: 60 };
  // A day's bar spans most of a day either side of its date.
  const dayScale = { time: true, range: (u, lo, hi) => [lo - DAY * 0.6, hi + DAY * 0.6] };

  function renderDaily(d) {
    // Every day between the first and the last with data: a day without events is a zero, not
    // a line drawn across it.
    // Up to ~10 years of days; a wider span (a far-future event let in by ETL_MAX_FUTURE) is
    // drawn with its days as they come rather than millions of zeros.
    const spanDays = d.days.length > 1 ? (daySeconds(d.days[d.days.length - 1].event_date) - daySeconds(d.days[0].event_date)) / DAY : 0;
    if (d.days.length > 1 && spanDays <= 3660) {
      const byDay = new Map(d.days.map((p) => [p.event_date, p]));
      const filled = [];
      const last = daySeconds(d.days[d.days.length - 1].event_date);
      for (let t = daySeconds(d.days[0].event_date); t <= last; t += DAY) {
        const day = isoDay(t);
        filled.push(byDay.get(day) || { event_date: day, event_count: 0, unique_users: 0, by_type: d.types.map(() => 0), other_count: 0 });
      }
      d = { ...d, days: filled };
    }
    const xs = d.days.map((p) => daySeconds(p.event_date));
    const names = d.types.slice();
    const raw = names.map((_, i) => d.days.map((p) => p.by_type[i]));
    if (d.days.some((p) => p.other_count > 0)) { names.push("other types"); raw.push(d.days.map((p) => p.other_count)); }
    // Stacked: each series is drawn at the running total, filled, topmost first.
    const stacked = [];
    let acc = xs.map(() => 0);
    for (const r of raw) { acc = acc.map((v, i) => v + r[i]); stacked.push(acc); }
    const series = [{ label: "day", value: (u, v) => (v == null ? "–" : isoDay(v)) }];
    const order = names.map((_, i) => names.length - 1 - i);
    const bars = window.uPlot && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 48] }) : undefined;
    for (const i of order) {
      const color = COLORS[i % COLORS.length];
      series.push({
        label: names[i], stroke: color, fill: color, width: 0, paths: bars, points: { show: false },
        value: (u, v, si, idx) => (idx == null ? "–" : fmt.format(raw[i][idx])),
      });
    }
    draw("chart-events", {
      series,
      scales: { x: dayScale },
      axes: [dayAxis, countAxis],
      cursor: { points: { show: false } },
    }, [xs, ...order.map((i) => stacked[i])]);
    draw("chart-users", {
      series: [
        { label: "day", value: (u, v) => (v == null ? "–" : isoDay(v)) },
        { label: "distinct users", stroke: COLORS[2], width: 2, fill: COLORS[2] + "22", value: (u, v) => (v == null ? "–" : fmt.format(v)) },
      ],
      scales: { x: dayScale },
      axes: [dayAxis, countAxis],
    }, [xs, d.days.map((p) => p.unique_users)]);
  }

  // ---- the refresh -------------------------------------------------------------------------------
  let again = false;
  async function refresh() {
    // A refresh asked for while one runs (a new filter, a new key) runs right after it.
    if (refreshing) { again = true; return; }
    refreshing = true;
    const view = viewFromUrl();
    const q = query(view);
    try {
      const [health, summary, daily, pipeline] = await Promise.all([
        settle(call("health")),
        settle(call("analytics/summary" + q)),
        settle(call("analytics/daily" + query(view, { top: "8" }))),
        settle(call("pipeline/status")),
      ]);
      renderHealth(health);
      const failures = [summary, daily, pipeline].map((r) => r.error).filter(Boolean);
      if (pipeline.value) renderPipeline(pipeline.value);
      if (summary.value) renderSummary(summary.value);
      // Charts are redrawn only when their data changed (a redraw drops the hover).
      if (daily.value) {
        const sig = JSON.stringify(daily.value);
        if (sig !== lastDaily) { lastDaily = sig; renderDaily(daily.value); }
      }
      const unreachable = failures.find((e) => e.unreachable) || (health.error && health.error.unreachable && failures.length ? health.error : null);
      const denied = failures.find((e) => e.status === 401 || e.status === 403);
      const notReady = failures.find((e) => e.code === "analytics_not_ready");
      const badRequest = failures.find((e) => e.status === 400);
      if (unreachable) {
        setState("unreachable");
        banner("error", "The API is unreachable: showing the last figures received. Retrying every " + REFRESH_MS / 1000 + " s.");
      } else if (denied) {
        setState("unauthorized");
        banner("error", (apiKey() ? "The API key was refused: " : "An API key is needed: ") + denied.message);
        showKeyForm(true);
      } else if (badRequest) {
        setState("bad-request");
        banner("warn", "This view cannot be shown: " + badRequest.message);
      } else if (notReady) {
        setState("not-ready");
        banner("info", "Analytics not ready yet: " + notReady.message);
      } else if (failures.length) {
        setState("error");
        banner("error", failures[0].message);
      } else if (summary.value && summary.value.total_events === 0) {
        setState("empty");
        banner("info", "No events in this range" + (view.types.length ? " for " + view.types.join(", ") : "") + ".");
      } else {
        setState("ready");
        banner(null);
      }
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      text("updated", "updated " + new Date().toLocaleTimeString());
    } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }
  function renderHealth(h) {
    const pill = $("health");
    const ok = h.value && h.value.status === "ok";
    const degraded = h.value || (h.error && h.error.status === 503);
    const [label, cls] = ok ? ["healthy", "pill ok"] : [degraded ? "degraded" : "unreachable", "pill bad"];
    if (pill.textContent !== label) pill.textContent = label;
    pill.className = cls;
  }

  // ---- search ------------------------------------------------------------------------------------
  // Snippets come HTML-escaped with the query terms in <mark>; only text and <mark> are kept.
  function snippetNode(html) {
    const t = document.createElement("template");
    t.innerHTML = html;
    const out = document.createElement("p");
    out.className = "snippet";
    for (const n of t.content.childNodes) {
      if (n.nodeName === "MARK") { const m = document.createElement("mark"); m.textContent = n.textContent; out.appendChild(m); }
      else out.appendChild(document.createTextNode(n.textContent));
    }
    return out;
  }
  async function search(e) {
    e.preventDefault();
    const q = $("search-input").value.trim();
    const list = $("search-results");
    if (!q) return;
    $("search-status").textContent = "searching…";
    try {
      // Hybrid: by meaning and by words. An index without vectors answers lexically and says why.
      const r = await call("docs/search?" + new URLSearchParams({ q, k: "5", mode: "hybrid" }).toString());
      list.replaceChildren();
      for (const hit of r.results) {
        const li = document.createElement("li");
        const title = document.createElement("div"); title.className = "title"; title.textContent = hit.title || hit.doc;
        const path = document.createElement("div"); path.className = "path";
        path.textContent = [hit.doc, hit.heading].filter(Boolean).join(" › ");
        li.append(title, path, snippetNode(hit.snippet));
        list.appendChild(li);
      }
      $("search-status").textContent = (r.results.length ? r.results.length + " passages" : "no passages match")
        + (r.fallback ? " (" + r.mode + ": " + r.fallback + ")" : " (" + r.mode + ")");
    } catch (err) {
      list.replaceChildren();
      $("search-status").textContent = "search failed: " + err.message;
      if (err.status === 401 || err.status === 403) showKeyForm(true);
    }
  }

  // ---- wiring ------------------------------------------------------------------------------------
  function showKeyForm(show) {
    const form = $("key-form");
    // Focus only when it appears: a refresh must not pull focus from where the user types.
    if (show && form.hidden) { form.hidden = false; $("key-input").focus(); }
    if (!show) form.hidden = true;
  }
  function init() {
    takeKeyFromFragment();
    fillControls(viewFromUrl());
    $("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      const v = controlsView();
      history.pushState(null, "", location.pathname + query(v));
      refresh();
    });
    window.addEventListener("popstate", () => { fillControls(viewFromUrl()); refresh(); });
    $("key-button").addEventListener("click", () => showKeyForm($("key-form").hidden));
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const k = $("key-input").value.trim();
      try { if (k) localStorage.setItem(KEY_STORE, k); } catch (_) { /* private mode */ }
      $("key-input").value = "";
      showKeyForm(false);
      refresh();
    });
    $("key-forget").addEventListener("click", () => {
      try { localStorage.removeItem(KEY_STORE); } catch (_) { /* private mode */ }
      showKeyForm(false);
      refresh();
    });
    $("search-form").addEventListener("submit", search);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") refresh(); });
    setInterval(() => { if (document.visibilityState === "visible") refresh(); }, REFRESH_MS);
    let resizeTimer;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const [id, c] of Object.entries(charts)) c.setSize({ width: chartWidth($(id)), height: 240 });
      }, 150);
    });
    refresh();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
