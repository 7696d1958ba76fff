// The dashboard in a real browser (Debian's headless Chromium) against a running local stack:
// what a user sees must be what the API says. Run by scripts/e2e-local.sh after sample data is
// processed; standalone:
//   DASHBOARD_URL=http://127.0.0.1:3000/ API_KEY=$(cat .local/api-key) node scripts/browser/dashboard.mjs
// Screenshots (desktop and phone width) go to $SCREENSHOTS (default target/screenshots).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.DASHBOARD_URL || "http://127.0.0.1:3000/";
const key = process.env.API_KEY || "";
const shots = process.env.SCREENSHOTS || "target/screenshots";
const origin = new URL(base).origin;
mkdirSync(shots, { recursive: true });

async function api(path, query = "") {
  const r = await fetch(new URL(path + query, base), { headers: { "x-api-key": key } });
  assert.equal(r.status, 200, `${path}${query}: ${r.status}`);
  return r.json();
}
const fmt = new Intl.NumberFormat("en-US");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // CI runs as root, where Chromium's sandbox cannot start.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let passed = 0;
const check = (what) => { passed += 1; console.log(`browser: ok - ${what}`); };

/// A page that records console errors, uncaught exceptions and any request off this origin.
async function open(context, { expectFailedLoads = false } = {}) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`exception: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // A refused or aborted call is logged by Chromium itself; expected where the test causes it.
    if (expectFailedLoads && /Failed to load resource|net::ERR_/.test(m.text())) return;
    problems.push(`console: ${m.text()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) problems.push(`off-origin request: ${r.url()}`);
  });
  return { page, problems };
}
const state = (page, s) => page.waitForSelector(`body[data-state="${s}"]`, { timeout: 20000 });

try {
  const summary = await api("analytics/summary");
  const status = await api("pipeline/status");
  const daily = await api("analytics/daily", "?top=8");
  assert.ok(summary.total_events > 0, "the stack has no data yet");

  // ---- a bad key: a clear error and the key form, no exception ----
  {
    const ctx = await browser.newContext();
    const { page, problems } = await open(ctx, { expectFailedLoads: true });
    await page.goto(base + "#key=dfk_" + "0".repeat(64));
    await state(page, "unauthorized");
    assert.match(await page.textContent("#banner"), /API key was refused/);
    assert.equal(await page.isVisible("#key-form"), true);
    assert.deepEqual(problems, []);
    await ctx.close();
    check("a bad key shows an error and asks for a key");
  }

  // ---- the key from the fragment; KPIs equal the API's numbers; charts drawn ----
  const desktop = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const { page, problems } = await open(desktop);
  const started = Date.now();
  await page.goto(base + "#key=" + encodeURIComponent(key));
  await state(page, "ready");
  const readyMs = Date.now() - started;
  const weight = await page.evaluate(() => {
    const all = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
    return { kb: Math.round(all.reduce((s, e) => s + (e.encodedBodySize || 0), 0) / 1024), requests: all.length };
  });
  console.log(`browser: page with data in ${readyMs} ms; ${weight.requests} requests, ${weight.kb} KB`);
  assert.equal(await page.evaluate(() => location.hash), "", "the key stays in the address bar");
  assert.equal(await page.evaluate(() => localStorage.getItem("dataflow.apiKey")), key);
  const kpi = async (id) => (await page.textContent(id)).trim();
  assert.equal(await kpi("#kpi-events"), fmt.format(summary.total_events));
  assert.equal(await kpi("#kpi-users"), fmt.format(summary.unique_users));
  assert.equal(await kpi("#kpi-files"), fmt.format(status.totals.files_processed));
  assert.equal(await kpi("#kpi-rejected"), fmt.format(status.totals.events_rejected));
  assert.match(await kpi("#kpi-last"), /ago$/);
  assert.match(await kpi("#kpi-lag"), /^[\d,]+ (s|min|h|d)$/);
  check(`KPIs equal the API (${summary.total_events} events, ${summary.unique_users} users, ${status.totals.files_processed} files, ${status.totals.events_rejected} rejected)`);

  // Every day from the first to the last with data (days without any are zeros).
  const dayOf = (d) => Date.parse(d + "T00:00:00Z") / 86400000;
  const gapless = daily.days.length ? dayOf(daily.days.at(-1).event_date) - dayOf(daily.days[0].event_date) + 1 : 0;
  const span = gapless <= 3661 ? gapless : daily.days.length;
  // Drawn means the series' own colours are on the canvas (grid and labels are grey): the
  // first type's bars, the users line.
  for (const [id, rgb] of [["chart-events", [11, 92, 173]], ["chart-users", [26, 127, 55]]]) {
    const drawn = await page.evaluate(([id, rgb]) => {
      const el = document.getElementById(id);
      const c = el.querySelector("canvas");
      if (!c) return { points: el.dataset.points, series: 0 };
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let series = 0;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] > 200 && Math.abs(px[i] - rgb[0]) < 8 && Math.abs(px[i + 1] - rgb[1]) < 8 && Math.abs(px[i + 2] - rgb[2]) < 8) series += 1;
      }
      return { points: el.dataset.points, series };
    }, [id, rgb]);
    assert.equal(drawn.points, String(span), id);
    assert.ok(drawn.series > 200, `${id}: ${drawn.series} pixels in the series colour`);
  }
  // Hover: the legend shows the day's values.
  const box = await page.locator("#chart-events .u-over").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  const legend = await page.locator("#chart-events .u-legend .u-value").allTextContents();
  assert.match(legend[0], /^\d{4}-\d{2}-\d{2}$/, `legend: ${legend}`);
  assert.ok(legend.slice(1).some((v) => /^[\d,]+$/.test(v)), `legend: ${legend}`);
  check(`both charts drew ${span} days (${daily.days.length} with data); hovering shows the values (${legend.slice(0, 3).join(" | ")})`);

  const rows = await page.locator("#top-types tbody tr").allTextContents();
  const top = Object.entries(summary.events_by_type).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  assert.equal(rows.length, Math.min(15, top.length));
  assert.ok(rows[0].startsWith(top[0][0] + fmt.format(top[0][1])), rows[0]);
  const recent = await page.locator("#recent tbody tr").count();
  assert.equal(recent, Math.max(1, status.recent.length));
  const reasons = await page.locator("#reasons tbody tr").allTextContents();
  assert.equal(reasons.length, Math.max(1, Object.keys(status.rejected_by_reason).length));
  check(`top types (${top[0][0]} first), ${recent} recent objects and rejected reasons listed`);

  // ---- docs search: titles, heading paths, highlighted snippets ----
  await page.fill("#search-input", "reprocess an object");
  await page.press("#search-input", "Enter");
  await page.waitForSelector("#search-results li");
  const hits = await page.locator("#search-results li").count();
  const marks = await page.locator("#search-results mark").allTextContents();
  assert.ok(hits >= 1 && marks.length >= 1, `${hits} hits, marks ${marks}`);
  assert.ok(marks.every((m) => /reprocess|object/i.test(m)), marks.join(","));
  assert.ok((await page.textContent("#search-results .title")).trim().length > 0);
  const searchStatus = await page.textContent("#search-status");
  assert.ok(searchStatus.includes("(hybrid)"), searchStatus);
  check(`search shows ${hits} passages with ${marks.length} highlighted terms, ${searchStatus}`);

  await page.screenshot({ path: `${shots}/dashboard-desktop.png`, fullPage: true });

  // ---- the view in the URL: filter by the top type ----
  await page.fill("#types", top[0][0]);
  await page.click("#filters button[type=submit]");
  await page.waitForFunction((t) => location.search.includes("event_type=" + encodeURIComponent(t)), top[0][0]);
  const filtered = await api("analytics/summary", "?event_type=" + encodeURIComponent(top[0][0]));
  await page.waitForFunction((n) => document.getElementById("kpi-events").textContent === n, fmt.format(filtered.total_events));
  check(`filtering by ${top[0][0]} puts it in the URL and shows ${filtered.total_events} events`);

  // ---- an empty range ----
  await page.goto(base + "?from=2030-01-01&to=2030-01-02");
  await state(page, "empty");
  assert.match(await page.textContent("#banner"), /No events in this range/);
  assert.equal(await kpi("#kpi-events"), "0");
  check("an empty range says so");
  assert.deepEqual(problems, [], "console errors or off-origin requests");
  check("no console errors, no request off the page's origin");
  await desktop.close();

  // ---- analytics not ready, and an unreachable backend ----
  {
    const ctx = await browser.newContext();
    const { page, problems } = await open(ctx, { expectFailedLoads: true });
    await page.goto(base);
    await page.evaluate((k) => localStorage.setItem("dataflow.apiKey", k), key);
    await page.route("**/analytics/**", (r) => r.fulfill({
      status: 503, contentType: "application/json",
      body: JSON.stringify({ error: "analytics_not_ready", message: "no aggregates yet: run the ETL first" }),
    }));
    await page.reload();
    await state(page, "not-ready");
    assert.match(await page.textContent("#banner"), /Analytics not ready yet/);
    await page.unroute("**/analytics/**");
    await page.route("**/*", (r) => (r.request().resourceType() === "fetch" ? r.abort("connectionrefused") : r.continue()));
    await state(page, "unreachable");
    assert.match(await page.textContent("#banner"), /unreachable/);
    assert.equal(await page.textContent("#health"), "unreachable");
    assert.deepEqual(problems, []);
    await ctx.close();
    check("'analytics not ready' and an unreachable backend each have their own state");
  }

  // ---- phone width: no sideways scrolling, everything reachable ----
  {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const { page, problems } = await open(ctx);
    await page.goto(base + "#key=" + encodeURIComponent(key));
    await state(page, "ready");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than the phone`);
    const chartWidth = await page.evaluate(() => document.querySelector("#chart-events canvas").getBoundingClientRect().width);
    assert.ok(chartWidth <= 390, `chart ${chartWidth}px wide`);
    await page.screenshot({ path: `${shots}/dashboard-phone.png` });
    assert.deepEqual(problems, []);
    await ctx.close();
    check("phone width (390 px): no sideways scroll, charts fit");
  }
  console.log(`browser: ${passed} checks passed; screenshots in ${shots}/`);
} finally {
  await browser.close();
}
