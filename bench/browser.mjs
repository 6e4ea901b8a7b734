// One browser speed test in headless Chromium, for bench/browser.sh.
//
//   node bench/browser.mjs URL [--timeout S] [--trace FILE]
//
// Opens URL (a test point's page with ?autostart=1), waits until
// window.ispeedState.status is no longer "running" and prints ONE JSON line:
//   {status, download_mbps, upload_mbps, payload, report, error, elapsed_s, ...}
// download_mbps/upload_mbps are the receipt payload's rate_bps / 1e6 (the
// server-side, signed figures the page publishes). Exit 0 when measured,
// 1 when the page reports a failure or times out, 2 when the browser could
// not be driven at all.
//
// --trace FILE: also records, from inside the page, every WebSocket the page
// opens (open/close times, bytes received, bufferedAmount of the upload
// streams sampled every 10 ms) and writes it to FILE as JSON. This only
// observes: the page's own code is untouched (the WebSocket constructor is
// wrapped before the page's script runs).
//
// playwright-core comes from tests/web/node_modules (cd tests/web && npm ci);
// PLAYWRIGHT_CORE=path overrides, CHROMIUM=path overrides /usr/bin/chromium.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const started = Date.now();
let url = null;
let timeoutS = 90;
let traceFile = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--timeout') timeoutS = Number(argv[++i]);
  else if (argv[i] === '--trace') traceFile = argv[++i];
  else if (!url) url = argv[i];
  else fail(2, `unexpected argument ${argv[i]}`);
}
if (!url || !(timeoutS > 0)) fail(2, 'usage: node bench/browser.mjs URL [--timeout S] [--trace FILE]');

function out(obj) {
  process.stdout.write(JSON.stringify({ ...obj, elapsed_s: (Date.now() - started) / 1000 }) + '\n');
}
function fail(code, error, extra = {}) {
  out({ status: 'error', download_mbps: null, upload_mbps: null, error: String(error), ...extra });
  process.exit(code);
}

// Installed before any page script: records what the page's sockets do.
function traceScript() {
  const Native = window.WebSocket;
  const t0 = performance.now();
  const log = { sockets: [] };
  window.__benchTrace = log;
  const now = () => Math.round((performance.now() - t0) * 10) / 10;
  function Traced(u, p) {
    const ws = p === undefined ? new Native(u) : new Native(u, p);
    const rec = { url: String(u).replace(/^.*\/v1\/sessions\/[^/]+\//, ''), created: now(),
      opened: null, closed: null, closeCode: null, rx: 0, tx: 0, buffered: [] };
    log.sockets.push(rec);
    ws.addEventListener('open', () => { rec.opened = now(); });
    ws.addEventListener('close', (e) => { rec.closed = now(); rec.closeCode = e.code; });
    ws.addEventListener('message', (m) => { rec.rx += m.data.byteLength || m.data.length || 0; });
    const send = ws.send.bind(ws);
    ws.send = (d) => { rec.tx += d.byteLength || d.length || 0; return send(d); };
    if (/\/upload/.test(String(u))) {
      const timer = setInterval(() => {
        if (ws.readyState > 1) { clearInterval(timer); return; }
        rec.buffered.push([now(), ws.bufferedAmount, rec.tx]);
      }, 10);
    }
    return ws;
  }
  Traced.prototype = Native.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Traced[k] = Native[k];
  window.WebSocket = Traced;
}

let chromium;
try {
  const mod = process.env.PLAYWRIGHT_CORE ||
    join(here, '..', 'tests', 'web', 'node_modules', 'playwright-core', 'index.mjs');
  ({ chromium } = await import(pathToFileURL(mod).href));
} catch (e) {
  fail(2, `cannot load playwright-core (cd tests/web && npm ci): ${e.message}`);
}

// On a signal (bench/browser.sh's cleanup, Ctrl-C) exit at once: Playwright's
// exit handler then SIGKILLs Chromium's process group, so no browser is left
// behind (its own graceful SIGTERM handling is turned off below: it closes
// the browser but does not exit, and can leave Chromium running for a while).
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => {
    out({ status: 'error', download_mbps: null, upload_mbps: null, error: `interrupted by ${sig}` });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

let browser;
const hardTimer = setTimeout(() => {
  // Last resort if Playwright itself hangs: report and leave; the shell's
  // timeout and process-group kill clean up Chromium.
  out({ status: 'error', download_mbps: null, upload_mbps: null, error: 'hard timeout' });
  process.exit(1);
}, (timeoutS + 45) * 1000);
hardTimer.unref();

try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
    handleSIGTERM: false,
    handleSIGINT: false,
    handleSIGHUP: false,
  });
} catch (e) {
  fail(2, `cannot launch chromium: ${e.message.split('\n')[0]}`);
}

let code = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`console.${m.type()}: ${m.text()}\n`); });
  page.on('pageerror', (e) => process.stderr.write(`pageerror: ${e.message}\n`));
  if (traceFile) await page.addInitScript(traceScript);
  await page.goto(url, { timeout: 20000, waitUntil: 'load' });
  await page.waitForFunction(
    () => window.ispeedState && window.ispeedState.status !== 'running',
    null, { timeout: timeoutS * 1000, polling: 100 });
  const st = await page.evaluate(() => {
    const s = window.ispeedState;
    const r = s.result || {};
    return { status: s.status, error: s.error || null, payload: r.payload || null, report: r.report || null };
  });
  if (traceFile) {
    const trace = await page.evaluate(() => window.__benchTrace);
    writeFileSync(traceFile, JSON.stringify(trace));
  }
  const rate = (d) => (st.payload && st.payload[d] && typeof st.payload[d].rate_bps === 'number')
    ? st.payload[d].rate_bps / 1e6 : null;
  const measured = st.status !== 'failed' && st.payload !== null;
  out({
    status: st.status,
    download_mbps: rate('download'),
    upload_mbps: rate('upload'),
    error: st.error,
    report: st.report,
    payload: st.payload,
  });
  code = measured ? 0 : 1;
} catch (e) {
  // Timeout or navigation failure: report what the page shows.
  let state = null;
  try { state = await browser.contexts()[0]?.pages()[0]?.evaluate(() => window.ispeedState || null); } catch { /* gone */ }
  out({ status: 'error', download_mbps: null, upload_mbps: null,
    error: `${e.name}: ${e.message.split('\n')[0]}`, page_state: state });
  code = 1;
} finally {
  try { await browser.close(); } catch { /* already gone */ }
}
process.exit(code);
