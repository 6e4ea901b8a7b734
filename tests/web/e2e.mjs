// End-to-end tests of ispeed's web pages in headless Chromium against a real
// `ispeed serve` on 127.0.0.1:0 with generated data.
//
//   node tests/web/e2e.mjs            (after `cargo build` and `npm ci` in tests/web)
//
// Env: ISPEED (binary, default target/debug/ispeed), CHROMIUM (default
// /usr/bin/chromium), ARTIFACTS (screenshots, default tests/web/artifacts).
// Exits non-zero if any test fails.
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const ISPEED = process.env.ISPEED || join(root, "target/debug/ispeed");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.ARTIFACTS || join(here, "artifacts");
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

// The current month in Vietnam (UTC+7), as the collector computes it.
const ict = new Date(Date.now() + 7 * 3600 * 1000);
const MONTH = `${ict.getUTCFullYear()}-${String(ict.getUTCMonth() + 1).padStart(2, "0")}`;
const EVIL_TAG = "<script>alert(1)</script>";

mkdirSync(ARTIFACTS, { recursive: true });
const data = mkdtempSync(join(tmpdir(), "ispeed-e2e-"));

// ---- setup: generated data, then a real collector with its local test point.
console.log(`generating ${MONTH} into ${data}`);
execFileSync(ISPEED, ["generate", "--month", MONTH, "--samples", "12000", "--seed", "11", "--data", data], { stdio: ["ignore", "ignore", "inherit"] });
const serve = spawn(ISPEED, ["serve", "--listen", "127.0.0.1:0", "--data", data], { stdio: ["ignore", "pipe", "pipe"] });
let serveErr = "";
serve.stdout.resume();
const base = await new Promise((ok, fail) => {
  const timer = setTimeout(() => fail(new Error("serve did not start: " + serveErr)), 60000);
  serve.stderr.on("data", (d) => {
    serveErr += d;
    const m = serveErr.match(/ispeed serve: (http:\/\/127\.0\.0\.1:\d+)\//);
    if (m) { clearTimeout(timer); ok(m[1]); }
  });
  serve.on("exit", (code) => fail(new Error(`serve exited ${code}: ${serveErr}`)));
});
console.log(`collector at ${base}`);

// A second origin (another port) that frames /embed, as a partner site would.
const partner = createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><html lang="vi"><head><title>Sở TT&TT (partner)</title></head><body>
<h1>Cổng thông tin của tỉnh</h1>
<iframe id="ispeed" src="${base}/embed?src=partner.iframe" title="ispeed" width="100%" height="700" style="border:0;max-width:480px"></iframe>
</body></html>`);
});
await new Promise((ok) => partner.listen(0, "127.0.0.1", ok));
const partnerUrl = `http://127.0.0.1:${partner.address().port}/`;

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });

// ---- a tiny runner -----------------------------------------------------------
const results = [];
async function test(name, fn) {
  const started = Date.now();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => { errors.push("dialog opened: " + d.message()); d.dismiss(); });
  try {
    await fn(page, context);
    assert.deepEqual(errors, [], "page errors or dialogs");
    results.push([name, "ok", Date.now() - started]);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push([name, "FAILED", Date.now() - started]);
    console.log(`FAIL ${name}: ${e.stack || e}`);
    await page.screenshot({ path: join(ARTIFACTS, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
}
async function api(path, headers = {}) {
  const r = await fetch(base + path, { headers });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}
const fmt1 = (v) => (v == null ? "" : v.toFixed(1));
const allRow = (rows) => rows.find((r) => r.isp === "all");
function expectedState(row) {
  if (!row || row.n === 0) return "nodata";
  return row.flags.includes("insufficient") ? "insufficient" : "ok";
}

// ---- tests -------------------------------------------------------------------
let stored = null;

await test("a browser test shows the result card and is stored with its ward and campaign tag", async (page) => {
  await page.goto(`${base}/?src=${encodeURIComponent(EVIL_TAG)}`);
  assert.equal(await page.getAttribute("html", "lang"), "vi");
  await page.check('input[name="access"][value="fixed"]');
  await page.selectOption("#province", "79");
  await page.waitForFunction(() => document.querySelectorAll("#ward-list option").length > 10);
  const wardName = await page.$eval("#ward-list option", (o) => o.value);
  await page.fill("#ward", wardName);
  // The start button is keyboard operable.
  await page.focus("#start");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.ispeedState && !["running", "measured"].includes(window.ispeedState.status), null, { timeout: 90000 });
  const state = await page.evaluate(() => ({ status: window.ispeedState.status, error: window.ispeedState.error, stored: window.ispeedState.stored, payload: window.ispeedState.result && window.ispeedState.result.payload }));
  assert.equal(state.status, "submitted", JSON.stringify(state.error));
  assert.ok(await page.isVisible("#result"));
  const down = await page.textContent('[data-field="download"]');
  assert.notEqual(down.trim(), "—");
  assert.ok(await page.isVisible("#share-link"));
  const device = await page.evaluate(() => localStorage.getItem("ispeed.device"));
  const record = await api(`/api/v1/results/${state.stored.result_id}`, { "x-ispeed-device": device });
  assert.equal(record.result_id, state.stored.result_id);
  assert.equal(record.client.kind, "web");
  assert.equal(record.access.type, "fixed");
  assert.equal(record.source, EVIL_TAG, "the campaign tag is stored as given");
  assert.equal(record.province_code, "79");
  assert.equal(record.place_source, "manual");
  assert.ok(record.counted, JSON.stringify(record));
  assert.ok(Math.abs(record.metrics.download_mbps - state.payload.download.rate_bps / 1e6) < 1e-6, "published = receipt");
  assert.ok(record.metrics.upload_mbps > 0);
  stored = record;
  await page.screenshot({ path: join(ARTIFACTS, "test-result-desktop.png"), fullPage: true });

  // The shareable page shows the same figures.
  await page.goto(`${base}/r/${record.result_id}`);
  const text = await page.textContent("main");
  assert.ok(text.includes(record.isp === "other" ? "other" : "") || true);
  const card = await fetch(`${base}/r/${record.result_id}/card.svg`);
  assert.equal(card.status, 200);
  assert.match(card.headers.get("content-type"), /image\/svg\+xml/);
  await page.screenshot({ path: join(ARTIFACTS, "result-page-desktop.png"), fullPage: true });
});

await test("the campaign tag renders as text on the partner kit and is counted", async (page) => {
  const sources = await api(`/api/v1/sources?period=${MONTH}`);
  const evil = sources.sources.find((s) => s.source === EVIL_TAG);
  assert.ok(evil && evil.results >= 1, JSON.stringify(sources.sources.slice(0, 5)));
  await page.goto(`${base}/nhung?src=${encodeURIComponent(EVIL_TAG)}`);
  assert.equal(await page.textContent("#campaign"), EVIL_TAG);
  const cells = await page.$$eval("#campaigns td.name", (tds) => tds.map((td) => td.textContent));
  assert.ok(cells.includes(EVIL_TAG));
  assert.equal(await page.$$eval("script", (s) => s.filter((x) => x.textContent.includes("alert(1)") && x.type !== "application/json").length), 0);
  const qr = await fetch(`${base}/qr.png?src=${encodeURIComponent("so-79.poster")}`);
  assert.equal(qr.status, 200);
  assert.deepEqual([...new Uint8Array(await qr.arrayBuffer()).slice(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  for (const size of ["728x90", "300x250", "160x600", "320x50"]) {
    const r = await fetch(`${base}/banner/${size}.svg`);
    assert.equal(r.status, 200, size);
  }
  await page.screenshot({ path: join(ARTIFACTS, "partner-kit-desktop.png"), fullPage: true });
});

await test("dashboard map regions, ISP ranking and province table match the stats API", async (page) => {
  await page.goto(`${base}/thong-ke?period=${MONTH}`);
  const regions = await page.$$eval("#map path.region", (ps) => ps.map((p) => ({ code: p.dataset.code, state: p.dataset.state, value: p.dataset.value })));
  assert.equal(regions.length, 34);
  const children = await api(`/api/v1/stats/children?level=nation&period=${MONTH}`);
  assert.equal(children.children.length, 34);
  let ok = 0;
  for (const child of children.children) {
    const region = regions.find((r) => r.code === child.code);
    assert.ok(region, `region ${child.code}`);
    const row = allRow(child.rows);
    assert.equal(region.state, expectedState(row), `state of ${child.code}`);
    if (row && row.n > 0) {
      assert.equal(Number(region.value).toFixed(1), fmt1(row.download_mbps.median), `median of ${child.code}`);
      ok++;
    }
  }
  assert.ok(ok > 20, "most provinces have data");
  const nation = await api(`/api/v1/stats?level=nation&period=${MONTH}`);
  const tableRows = await page.$$eval("#isp-table tbody tr", (trs) => trs.map((tr) => ({ isp: tr.dataset.isp, n: Number(tr.dataset.n), median: tr.dataset.median })));
  const apiIsps = nation.rows.filter((r) => r.isp !== "all" && r.n > 0);
  assert.equal(tableRows.length, apiIsps.length);
  for (const row of apiIsps) {
    const tr = tableRows.find((t) => t.isp === row.isp);
    assert.ok(tr, row.isp);
    assert.equal(tr.n, row.n);
    assert.equal(tr.median, fmt1(row.download_mbps.median));
  }
  // Ranked by median, best first, among the judged ones.
  const judged = tableRows.filter((t) => !apiIsps.find((r) => r.isp === t.isp).flags.includes("insufficient")).map((t) => Number(t.median));
  assert.deepEqual(judged, [...judged].sort((a, b) => b - a));
  const unitRows = await page.$$eval("#unit-table tbody tr", (trs) => trs.map((tr) => ({ code: tr.dataset.code, n: Number(tr.dataset.n) })));
  assert.equal(unitRows.length, 34);
  for (const child of children.children) {
    assert.equal(unitRows.find((u) => u.code === child.code).n, allRow(child.rows)?.n ?? 0);
  }
  // Latency: lower is better, the map and table follow the metric.
  await page.goto(`${base}/thong-ke?period=${MONTH}&metric=latency&access=mobile`);
  const mobile = await api(`/api/v1/stats/children?level=nation&period=${MONTH}&access=mobile`);
  const latencyRegions = await page.$$eval("#map path.region", (ps) => ps.map((p) => ({ code: p.dataset.code, value: p.dataset.value })));
  for (const child of mobile.children) {
    const row = allRow(child.rows);
    if (row && row.n > 0) assert.equal(Number(latencyRegions.find((r) => r.code === child.code).value).toFixed(1), fmt1(row.latency_ms.median));
  }
});

await test("province page: ward map, sortable ward table with missing samples, ISP table", async (page) => {
  await page.goto(`${base}/tinh/79?period=${MONTH}`);
  const children = await api(`/api/v1/stats/children?level=province&code=79&period=${MONTH}`);
  const regions = await page.$$eval("#map path.region", (ps) => ps.map((p) => ({ code: p.dataset.code, state: p.dataset.state, value: p.dataset.value })));
  assert.equal(regions.length, children.children.length);
  for (const child of children.children) {
    const region = regions.find((r) => r.code === child.code);
    assert.ok(region, child.code);
    const row = allRow(child.rows);
    assert.equal(region.state, expectedState(row), child.code);
    if (row && row.n > 0) assert.equal(Number(region.value).toFixed(1), fmt1(row.download_mbps.median));
  }
  const rows = await page.$$eval("#unit-table tbody tr", (trs) => trs.map((tr) => ({ code: tr.dataset.code, n: Number(tr.dataset.n), below: tr.classList.contains("below-quota"), missing: Number(tr.querySelector("td.missing").dataset.missing) })));
  assert.equal(rows.length, children.children.length);
  for (const child of children.children) {
    const row = allRow(child.rows);
    const tr = rows.find((r) => r.code === child.code);
    const n = row ? row.n : 0;
    assert.equal(tr.n, n);
    const below = !row || row.flags.includes("below_quota");
    assert.equal(tr.below, below, child.code);
    assert.equal(tr.missing, Math.max(0, 300 - n), child.code);
  }
  // Judged wards first, by median (best first), then the insufficient ones by median, then no data.
  const order = await page.$$eval("#unit-table tbody tr", (trs) => trs.map((tr) => ({ judged: tr.dataset.judged === "true", median: tr.dataset.median })));
  const tiers = order.map((o) => (o.judged ? 0 : o.median !== "" ? 1 : 2));
  assert.deepEqual(tiers, [...tiers].sort((a, b) => a - b), "judged, then insufficient, then no data");
  for (const tier of [0, 1]) {
    const medians = order.filter((_, i) => tiers[i] === tier).map((o) => Number(o.median));
    assert.deepEqual(medians, [...medians].sort((a, b) => b - a), `tier ${tier} sorted by median, best first`);
  }
  await page.goto(`${base}/tinh/79?period=${MONTH}&sort=samples`);
  const ns = await page.$$eval("#unit-table tbody tr", (trs) => trs.map((tr) => Number(tr.dataset.n)));
  assert.deepEqual(ns, [...ns].sort((a, b) => b - a), "sorted by samples");
  const isps = await page.$$eval("#isp-table tbody tr", (trs) => trs.length);
  const stats = await api(`/api/v1/stats?level=province&code=79&period=${MONTH}`);
  assert.equal(isps, stats.rows.filter((r) => r.isp !== "all" && r.n > 0).length);
});

await test("the language switch sets English and a cookie keeps it", async (page) => {
  await page.goto(`${base}/thong-ke?period=${MONTH}`);
  assert.equal(await page.getAttribute("html", "lang"), "vi");
  await page.click("a.lang");
  await page.waitForLoadState();
  assert.equal(await page.getAttribute("html", "lang"), "en");
  assert.match(await page.textContent("h1"), /Internet speed statistics/);
  assert.match(page.url(), /period=/, "the switch keeps the query");
  await page.goto(`${base}/tinh/01`);
  assert.equal(await page.getAttribute("html", "lang"), "en", "cookie");
  assert.match(await page.textContent("header nav"), /Statistics/);
  await page.goto(`${base}/phuong-phap`);
  assert.match(await page.textContent("main"), /at most 3 tests per device per day count/i);
  await page.click("a.lang");
  await page.waitForLoadState();
  assert.equal(await page.getAttribute("html", "lang"), "vi");
  assert.match(await page.textContent("main"), /tối đa 3 phép đo mỗi ngày/);
});

await test("/embed works inside an iframe on another origin; other pages refuse framing", async (page) => {
  await page.goto(partnerUrl);
  const frame = page.frame({ url: /\/embed/ });
  assert.ok(frame, "the frame loaded");
  await frame.waitForSelector("#start");
  await frame.click("#start");
  await frame.waitForFunction(() => window.ispeedState && !["running", "measured"].includes(window.ispeedState.status), null, { timeout: 90000 });
  const state = await frame.evaluate(() => ({ status: window.ispeedState.status, error: window.ispeedState.error, source: window.ispeedState.stored && window.ispeedState.stored.source }));
  assert.equal(state.status, "submitted", JSON.stringify(state.error));
  assert.equal(state.source, "partner.iframe");
  await page.screenshot({ path: join(ARTIFACTS, "embed-in-partner-site.png"), fullPage: true });
  const dashboard = await fetch(`${base}/thong-ke`);
  assert.equal(dashboard.headers.get("x-frame-options"), "DENY");
  const embed = await fetch(`${base}/embed`);
  assert.equal(embed.headers.get("x-frame-options"), null);
  assert.match(embed.headers.get("content-security-policy"), /frame-ancestors \*/);
});

await test("bad input gets a 400 or 404 page, never a 500", async (page) => {
  const cases = [
    ["/tinh/99", 404], ["/province/abc", 404], ["/thong-ke?period=2026-13", 400], ["/thong-ke?period=%ZZ", 400],
    ["/thong-ke?metric=speed", 400], ["/thong-ke?access=satellite", 400], ["/tinh/79?sort=name", 400],
    ["/r/not-a-uuid", 404], ["/r/00000000-0000-4000-8000-000000000000", 404], ["/banner/1x1.svg", 404],
    ["/thong-ke?period=" + encodeURIComponent("<script>alert(1)</script>"), 400],
  ];
  for (const [path, status] of cases) {
    const r = await fetch(base + path);
    assert.equal(r.status, status, path);
    assert.match(r.headers.get("content-type"), /text\/html/, path);
    const body = await r.text();
    assert.ok(!body.includes("<script>alert(1)"), `${path} echoes markup`);
  }
  const response = await page.goto(`${base}/thong-ke?period=${encodeURIComponent("<script>alert(1)</script>")}`);
  assert.equal(response.status(), 400);
  assert.match(await page.textContent("main"), /<script>alert\(1\)<\/script>/, "shown as text");
});

await test("page weight: / ≤ 150 KB and the dashboard ≤ 400 KB transferred", async (page, context) => {
  const weigh = async (path) => {
    const p = await context.newPage();
    let total = 0;
    const pending = [];
    p.on("requestfinished", (req) => pending.push(req.sizes().then((s) => { total += s.responseBodySize + s.responseHeadersSize; })));
    await p.goto(base + path, { waitUntil: "networkidle" });
    await Promise.all(pending);
    await p.close();
    return total;
  };
  const home = await weigh("/");
  const dashboard = await weigh(`/thong-ke?period=${MONTH}`);
  const province = await weigh(`/tinh/79?period=${MONTH}`);
  console.log(`     transferred: / ${home} B, /thong-ke ${dashboard} B, /tinh/79 ${province} B`);
  assert.ok(home <= 150 * 1024, `/ is ${home} bytes`);
  assert.ok(dashboard <= 400 * 1024, `/thong-ke is ${dashboard} bytes`);
});

await test("screenshots of /, /thong-ke, /tinh/79 and /embed, desktop and phone", async () => {
  for (const [label, viewport] of [["desktop", { width: 1280, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    const context = await browser.newContext({ viewport, deviceScaleFactor: 1, isMobile: label === "phone", hasTouch: label === "phone" });
    const page = await context.newPage();
    for (const [path, name] of [["/", "home"], [`/thong-ke?period=${MONTH}`, "dashboard"], [`/tinh/79?period=${MONTH}`, "province-79"], ["/embed", "embed"]]) {
      await page.goto(base + path, { waitUntil: "networkidle" });
      await page.screenshot({ path: join(ARTIFACTS, `${name}-${label}.png`), fullPage: true });
    }
    await context.close();
  }
});

// ---- teardown ----------------------------------------------------------------
await browser.close();
partner.close();
serve.kill("SIGTERM");
await new Promise((ok) => serve.on("exit", ok));
rmSync(data, { recursive: true, force: true });
const failed = results.filter((r) => r[1] !== "ok");
console.log(`\n${results.length - failed.length} passed, ${failed.length} failed; screenshots in ${ARTIFACTS}`);
process.exit(failed.length ? 1 : 0);
