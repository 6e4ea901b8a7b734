// ispeed browser client: runs protocol ispeed/1 (spec/protocol.md) in a
// browser and submits the signed receipt to the collector.
//
// Why it looks the way it does:
// - Payload streams are WebSockets (spec §6.4): a browser opens at most six
//   HTTP/1.1 connections per host, fewer than the 8–16 streams the protocol
//   uses; every WebSocket is its own TCP connection, counted by the test
//   point exactly like an HTTP stream.
// - The transfer rules (when to add streams, when the rate is stable) are
//   not re-implemented here: the test point runs the reference controller
//   over its own samples and returns its advice with every `live` poll
//   (§8.1). Loaded-latency settling (§11 step 3) is judged here, on this
//   page's own probe round trips, exactly as the CLI does.
// - Published rates come from the receipt; what this page counts itself is
//   only the client report.
(function () {
  "use strict";
  var VERSION = "web-1";
  var cfgEl = document.getElementById("ispeed-config");
  if (!cfgEl) return;
  var cfg = JSON.parse(cfgEl.textContent);
  var T = cfg.text;
  var $ = function (id) { return document.getElementById(id); };

  // ---- small statistics, mirroring crates/measure -------------------------
  function median(xs) {
    if (!xs.length) return null;
    var s = xs.slice().sort(function (a, b) { return a - b; });
    var m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
  function jitter(xs) {
    if (xs.length < 2) return null;
    var sum = 0;
    for (var i = 1; i < xs.length; i++) sum += Math.abs(xs[i] - xs[i - 1]);
    return sum / (xs.length - 1);
  }
  function trimmedMean(xs, keep) {
    if (!xs.length) return null;
    var s = xs.slice().sort(function (a, b) { return a - b; });
    var n = Math.max(1, Math.ceil(keep * s.length));
    var sum = 0;
    for (var i = 0; i < n; i++) sum += s[i];
    return sum / n;
  }
  // Mean rate (Mbit/s) of a [t ms, bytes] series from `from` ms to its end,
  // the count interpolated linearly between points.
  function rateSince(series, from) {
    if (series.length < 2) return null;
    var end = series[series.length - 1];
    var at = series[0][1];
    for (var i = 1; i < series.length; i++) {
      var a = series[i - 1], b = series[i];
      if (b[0] >= from) {
        at = b[0] === a[0] ? b[1] : a[1] + (b[1] - a[1]) * (from - a[0]) / (b[0] - a[0]);
        break;
      }
    }
    var span = end[0] - from;
    return span > 0 ? (end[1] - at) * 8 / (span * 1000) : null;
  }
  // RPM from HTTP probes only: a browser cannot make bare TCP handshakes (§10.4).
  function rpm(httpMs) {
    var tm = trimmedMean(httpMs, 0.95);
    return tm && tm > 0 ? 60000 / tm : null;
  }
  // WorkingConditions::trend with WorkingConfig::default() (crates/measure/src/working.rs).
  function latencyTrend(probes, t) {
    var W = 1000, GAP = 1000, span = 2 * W + GAP;
    if (t < span) return "unknown";
    var recent = [], before = [];
    probes.forEach(function (p) {
      if (p[0] > t - W && p[0] <= t) recent.push(p[1]);
      if (p[0] > t - span && p[0] <= t - span + W) before.push(p[1]);
    });
    if (recent.length < 5 || before.length < 5) return "unknown";
    var r = median(recent), b = median(before), d = Math.abs(r - b);
    if (d <= 2 || d <= 0.05 * b) return "settled";
    if (r > b * 1.05) return "rising";
    return "unsettled";
  }

  // ---- HTTP helpers ----------------------------------------------------------
  function ApiError(code, message, status) {
    this.code = code; this.message = message; this.status = status;
  }
  function request(url, options, timeoutMs) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, timeoutMs || 5000);
    options = options || {};
    options.signal = controller.signal;
    options.cache = "no-store";
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        clearTimeout(timer);
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (!response.ok) {
          var err = body && body.error ? body.error : { code: "http_" + response.status, message: text };
          throw new ApiError(err.code, err.message, response.status);
        }
        return body;
      });
    }, function (e) { clearTimeout(timer); throw e; });
  }
  function postJSON(url, value, timeoutMs) {
    return request(url, {
      method: "POST",
      // text/plain keeps the request "simple" (no CORS preflight); the
      // servers parse the body as JSON whatever its type.
      headers: { "content-type": "text/plain;charset=UTF-8" },
      body: JSON.stringify(value)
    }, timeoutMs);
  }
  function absolute(base) {
    if (!base || base === "/") return location.origin;
    return base.replace(/\/+$/, "");
  }
  function wsUrl(httpUrl) { return httpUrl.replace(/^http/, "ws"); }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
  function uuid4() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // Random, incompressible upload payload: 4 MiB, sent as 1 MiB messages.
  var UPLOAD_POOL = null;
  function uploadPool() {
    if (UPLOAD_POOL) return UPLOAD_POOL;
    UPLOAD_POOL = new Uint8Array(4 << 20);
    for (var i = 0; i < UPLOAD_POOL.length; i += 65536) {
      crypto.getRandomValues(UPLOAD_POOL.subarray(i, i + 65536));
    }
    return UPLOAD_POOL;
  }
  var UPLOAD_MESSAGE = 1 << 20;
  // Data queued in the browser per upload stream; enough to keep a fast link
  // busy between timer ticks, small enough to stop promptly.
  var UPLOAD_QUEUE = 4 << 20;

  // ---- the engine ---------------------------------------------------------
  // events(kind, data): "phase" {phase}, "progress" {phase, mbps, elapsed},
  // "probe" {phase, rttMs}.
  // A failure before the session exists marks the error `admission`: the
  // next candidate may take the test (spec/registry.md §5).
  function runTest(base, events, token) {
    var root = absolute(base);
    var st = { root: root, sessionPath: null, httpRtts: {}, idle: [] };
    var info, created;
    var session = { client_kind: "web", client_version: VERSION };
    if (token) session.access_token = token;
    return request(root + "/v1/info").then(function (i) {
      info = i;
      if (info.protocol !== "ispeed/1") throw new ApiError("protocol", "unsupported protocol " + info.protocol);
      return postJSON(root + "/v1/sessions", session);
    }).then(null, function (error) {
      if (error && typeof error === "object") error.admission = true;
      throw error;
    }).then(function (c) {
      created = c;
      st.sessionPath = root + "/v1/sessions/" + created.session_id;
      st.maxSeconds = Math.min(7.5, created.limits.max_seconds_per_direction);
      events("phase", { phase: "latency" });
      var v6 = checkIpv6(info.ipv6_url, created.client_addr);
      return idleProbes(st, events).then(function () { return v6; });
    }).then(function (ipv6) {
      st.ipv6 = ipv6;
      return runDirection(st, "download", events);
    }).then(function (down) {
      st.down = down;
      return runDirection(st, "upload", events);
    }).then(function (up) {
      st.up = up;
      var report = {
        download_mbps: st.down.clientMbps,
        upload_mbps: st.up.clientMbps,
        latency_ms: median(st.idle),
        jitter_ms: jitter(st.idle),
        loaded_latency_download_ms: st.down.loadedMs,
        loaded_latency_upload_ms: st.up.loadedMs,
        rpm: rpm(st.down.working.concat(st.up.working)),
        ipv6_capable: st.ipv6
      };
      return postJSON(st.sessionPath + "/finish", { client_report: report }).then(function (finished) {
        if (finished.payload.session_id !== created.session_id) throw new ApiError("receipt", "receipt names another session");
        return { info: info, report: report, receipt: finished.receipt, payload: finished.payload };
      });
    });
  }

  function checkIpv6(ipv6Url, clientAddr) {
    if (clientAddr && clientAddr.charAt(0) === "[") return Promise.resolve(true);
    if (!ipv6Url || (location.protocol === "https:" && /^http:/.test(ipv6Url))) return Promise.resolve(null);
    return request(ipv6Url.replace(/\/+$/, "") + "/v1/info", {}, 2000).then(
      function () { return true; }, function () { return false; });
  }

  function idleProbes(st, events) {
    var i = 0;
    function next() {
      if (i++ >= 12) return Promise.resolve();
      var t0 = performance.now();
      return request(st.sessionPath + "/ping").then(function () {
        var rtt = performance.now() - t0;
        st.idle.push(rtt);
        events("probe", { phase: "latency", rttMs: rtt });
        return next();
      });
    }
    return next();
  }

  function runDirection(st, direction, events) {
    return new Promise(function (resolve, reject) {
      events("phase", { phase: direction });
      var streams = [];
      var clientBytes = 0;
      var started = performance.now();
      var probes = []; // [t ms since phase start, rtt ms]
      var lastAddAt = 0;
      var stableAt = null;
      var after = null;
      var done = false;
      var pumpTimer = null;
      var hardLimitMs = (st.maxSeconds + 2) * 1000;

      var series = [[0, 0]]; // [t ms, bytes] as this page counts them
      // Upload: handed to the sockets minus what still waits in the browser.
      function clientCount() {
        var queued = 0;
        if (direction === "upload") streams.forEach(function (s) { queued += s.ws.bufferedAmount || 0; });
        return Math.max(0, clientBytes - queued);
      }
      // A stream starts when this page sends it a first message (§6.4). The
      // browser opens WebSockets one handshake at a time, so the initial
      // ones are started together once all are open (or after 2 s), and
      // share the link from the same moment as the CLI's streams do.
      var go = false;
      function begin(s) {
        if (s.started || !s.open) return;
        s.started = true;
        s.ws.send("start");
      }
      function beginAll() {
        if (go || done) return;
        go = true;
        streams.forEach(begin);
        if (direction === "upload") pump();
      }
      setTimeout(beginAll, 2000);
      function openStream() {
        var k = streams.length;
        var ws = new WebSocket(wsUrl(st.sessionPath) + "/" + direction + "?stream=" + k);
        ws.binaryType = "arraybuffer";
        var s = { ws: ws, offset: (k * 257 * 1024) % (4 << 20), open: false, started: false };
        ws.onopen = function () {
          s.open = true;
          if (go) begin(s);
          else if (streams.every(function (x) { return x.open; })) beginAll();
        };
        ws.onmessage = function (m) { clientBytes += m.data.byteLength; };
        ws.onclose = function () { s.open = false; s.closed = true; };
        streams.push(s);
      }
      var lastMbps = 0;
      function pump() {
        if (done) return;
        var pool = uploadPool();
        // Keep about 50 ms of data queued per stream at the current rate
        // (at least 64 KiB, at most 4 MiB), in messages no larger than the
        // queue: enough to bridge timer ticks, little enough that a slow
        // link drains it soon after the phase stops.
        var queue = Math.min(UPLOAD_QUEUE, Math.max(64 << 10, lastMbps * 1e6 / 8 * 0.05 / Math.max(1, streams.length)));
        var size = Math.min(UPLOAD_MESSAGE, Math.max(16 << 10, Math.floor(queue / 2)));
        streams.forEach(function (s) {
          if (!s.started) return;
          while (s.ws.bufferedAmount < queue) {
            if (s.offset + size > pool.length) s.offset = 0;
            s.ws.send(pool.subarray(s.offset, s.offset + size));
            s.offset += size;
            clientBytes += size;
          }
        });
        pumpTimer = setTimeout(pump, 1);
      }
      function finish(error) {
        if (done) return;
        done = true;
        clearTimeout(pumpTimer);
        var elapsed = performance.now() - started;
        series.push([elapsed, clientCount()]);
        streams.forEach(function (s) { try { s.ws.close(1000); } catch (e) { /* closed */ } });
        if (error) return reject(error);
        // The next phase starts once these streams are gone (at most 1.5 s),
        // so that the two directions never overlap on the link.
        var waitUntil = performance.now() + 1500;
        function closed() {
          var open = streams.some(function (s) { return !s.closed; });
          if (open && performance.now() < waitUntil) return setTimeout(closed, 20);
          resolveWith();
        }
        closed();
      }
      function resolveWith() {
        var elapsed = series[series.length - 1][0];
        // Working window: the last 1.5 s, not before the last addition (§10.2).
        var from = Math.max(elapsed - 1500, lastAddAt);
        var working = probes.filter(function (p) { return p[0] >= from; }).map(function (p) { return p[1]; });
        // Bytes handed to sockets (upload) or received (download): the
        // client's own figure, only ever reported beside the receipt's.
        // Over the phase's second half, clear of slow start like the
        // receipt's window (an approximation: it only has to be close).
        resolve({
          clientMbps: rateSince(series, elapsed / 2),
          loadedMs: median(working),
          working: working
        });
      }
      for (var i = 0; i < 8; i++) openStream();

      function poll() {
        if (done) return;
        var t0 = performance.now();
        var url = st.sessionPath + "/live?advise=" + direction + (after === null ? "" : "&after=" + after);
        request(url).then(function (live) {
          var now = performance.now();
          var t = now - started;
          probes.push([t, now - t0]);
          series.push([t, clientCount()]);
          events("probe", { phase: direction, rttMs: now - t0 });
          if (live.samples.length) after = live.samples[live.samples.length - 1].seq;
          var advice = live.advice;
          if (advice) {
            lastMbps = advice.mbps;
            events("progress", { phase: direction, mbps: advice.mbps, elapsed: t / 1000 });
            while (streams.length < advice.streams && streams.length < 16) {
              openStream();
              lastAddAt = t;
            }
            if (advice.verdict === "stable" && stableAt === null) stableAt = t;
            if (advice.verdict === "max_duration" || advice.verdict === "stalled") return finish();
          }
          if (stableAt !== null) {
            var trend = latencyTrend(probes, t);
            if (trend === "settled" || (t >= stableAt + 3000 && trend !== "rising")) return finish();
          }
          if (t >= hardLimitMs) return finish();
          var allClosed = streams.every(function (s) { return s.closed; });
          if (allClosed && t > 1000) return finish();
          // Next probe 100 ms after this one started, at once if it took longer.
          setTimeout(poll, Math.max(0, 100 - (now - t0)));
        }, function (error) { finish(error); });
      }
      poll();
    });
  }

  // ---- the page ---------------------------------------------------------------
  var runningTest = false;
  var graph = { download: [], upload: [] };

  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "—";
    var d = digits !== undefined ? digits : (v >= 100 ? 0 : v >= 10 ? 1 : 2);
    return v.toLocaleString(cfg.lang === "vi" ? "vi-VN" : "en-GB", { maximumFractionDigits: d, minimumFractionDigits: d });
  }
  function setField(name, text) {
    var el = document.querySelector('[data-field="' + name + '"]');
    if (el) el.textContent = text;
  }
  function setGauge(mbps) {
    // Log scale from 1 to 10 000 Mbit/s.
    var f = mbps > 1 ? Math.min(1, Math.log10(mbps) / 4) : 0;
    var fill = $("gauge-fill");
    if (fill) fill.setAttribute("stroke-dasharray", (f * 100).toFixed(1) + " 100");
    $("live-mbps").textContent = fmt(mbps);
  }
  function drawGraph() {
    var max = 1;
    ["download", "upload"].forEach(function (d) { graph[d].forEach(function (p) { max = Math.max(max, p[1]); }); });
    ["download", "upload"].forEach(function (d) {
      var pts = graph[d].map(function (p) {
        return (p[0] / 10 * 300).toFixed(1) + "," + (58 - p[1] / max * 55).toFixed(1);
      }).join(" ");
      $(d === "download" ? "graph-down" : "graph-up").setAttribute("points", pts);
    });
  }

  function selectedAccess() {
    var checked = document.querySelector('input[name="access"]:checked');
    var v = checked ? checked.value : "unknown";
    if (v === "mobile") {
      var tech = null;
      var c = navigator.connection;
      if (c && c.effectiveType === "4g") tech = null; // effectiveType is a speed class, not the radio
      return { type: "mobile", tech: tech };
    }
    if (v === "fixed") {
      var medium = null;
      if (navigator.connection && navigator.connection.type === "wifi") medium = "wifi";
      if (navigator.connection && navigator.connection.type === "ethernet") medium = "ethernet";
      return { type: "fixed", medium: medium };
    }
    return { type: "unknown" };
  }

  function prefillAccess() {
    var c = navigator.connection;
    if (!c || !c.type) return;
    var value = c.type === "cellular" ? "mobile" : (c.type === "wifi" || c.type === "ethernet") ? "fixed" : null;
    var input = value && document.querySelector('input[name="access"][value="' + value + '"]');
    if (input) { input.checked = true; $("access-hint").hidden = false; }
  }

  // ---- place: geolocation only after the user asks; else a ward from the list.
  var place = { location: null, wardCode: null, wards: {} };
  function setupPlace() {
    var locate = $("locate");
    if (!locate) return;
    locate.addEventListener("click", function () {
      if (!navigator.geolocation) { $("locate-status").textContent = T.locationDenied; return; }
      navigator.geolocation.getCurrentPosition(function (pos) {
        // The API does not say how it located; a fix within 100 m is satellite-grade.
        var source = pos.coords.accuracy <= 100 ? "gps" : "network";
        place.location = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy_m: pos.coords.accuracy, source: source };
        $("locate-status").textContent = T.locationOk;
      }, function () {
        $("locate-status").textContent = T.locationDenied;
      }, { enableHighAccuracy: false, timeout: 15000, maximumAge: 600000 });
    });
    var province = $("province"), ward = $("ward");
    province.addEventListener("change", function () {
      place.wardCode = null;
      ward.value = "";
      var code = province.value;
      ward.disabled = !code;
      if (!code || !cfg.unitsUrl) return;
      request(cfg.unitsUrl + "?province=" + encodeURIComponent(code)).then(function (body) {
        var list = $("ward-list");
        list.textContent = "";
        place.wards = {};
        (body.wards || []).forEach(function (w) {
          var opt = document.createElement("option");
          opt.value = w.name;
          list.appendChild(opt);
          place.wards[w.name] = w.code;
        });
      });
    });
    ward.addEventListener("input", function () { place.wardCode = place.wards[ward.value] || null; });
  }

  function deviceId() {
    var id = null;
    try { id = localStorage.getItem("ispeed.device"); } catch (e) { /* storage off */ }
    if (!id) {
      id = uuid4();
      try { localStorage.setItem("ispeed.device", id); } catch (e) { /* per page then */ }
    }
    return id;
  }

  // Results not yet acknowledged are kept and resent (same result_id: idempotent).
  function pending() {
    try { return JSON.parse(localStorage.getItem("ispeed.pending") || "[]"); } catch (e) { return []; }
  }
  function savePending(list) {
    try { localStorage.setItem("ispeed.pending", JSON.stringify(list.slice(-20))); } catch (e) { /* ignore */ }
  }
  function submit(body) {
    return postJSON(cfg.submitUrl, body, 15000).then(function (stored) {
      savePending(pending().filter(function (p) { return p.result_id !== body.result_id; }));
      return stored;
    }, function (error) {
      if (error instanceof ApiError && error.status && error.status < 500) {
        savePending(pending().filter(function (p) { return p.result_id !== body.result_id; }));
      }
      throw error;
    });
  }
  function resendPending() {
    if (!cfg.submitUrl) return;
    pending().forEach(function (body) { submit(body).catch(function () { /* next time */ }); });
  }

  // The lowest of three /v1/info round trips to a test point (ms), or Infinity.
  function probe(url) {
    var best = Infinity, i = 0;
    function once() {
      if (i++ >= 3) return Promise.resolve(best);
      var t0 = performance.now();
      return request(absolute(url) + "/v1/info", {}, 1000).then(function () {
        best = Math.min(best, performance.now() - t0);
        return once();
      }, function () { return best; });
    }
    return once();
  }

  // Test points in the order to try them: the collector's locate candidates
  // (with access tokens) ordered by measured RTT, an on-net one of the
  // user's own ISP first when within 20 % of the best (the CLI's rule);
  // without a collector, the page's own list.
  function chooseTestPoints() {
    $("phase").textContent = T.choosing;
    var listed = function () {
      return cfg.testPoints.length ? cfg.testPoints : [{ id: "", url: "", name: location.host }];
    };
    var located = cfg.locateUrl ? request(cfg.locateUrl + (place.location
      ? "?lat=" + place.location.lat + "&lon=" + place.location.lon : "")).then(function (body) {
        return body.candidates.map(function (c) {
          return { id: c.id, url: c.url === "/" ? "" : c.url, name: c.name || c.operator, token: c.token, onNet: c.on_net };
        });
      }, function () { return listed(); }) : Promise.resolve(listed());
    return located.then(function (points) {
      if (points.length === 1) return points;
      return Promise.all(points.map(function (p) { return probe(p.url); })).then(function (rtts) {
        var order = points.map(function (_, i) { return i; });
        order.sort(function (a, b) { return rtts[a] - rtts[b] || a - b; });
        var best = rtts[order[0]];
        for (var k = 0; k < order.length; k++) {
          var i = order[k];
          if (points[i].onNet && isFinite(rtts[i]) && rtts[i] <= best * 1.2) {
            order.splice(k, 1);
            order.unshift(i);
            break;
          }
        }
        return order.map(function (i) { return points[i]; });
      });
    });
  }

  // Runs the test on the first candidate that takes it: admission failures
  // move on, and a test point lost mid-test is retried on the next one once.
  function runOnCandidates(points, events, chosen) {
    var lostOnce = false;
    function attempt(k) {
      var point = points[k];
      chosen(point);
      return runTest(point.url, events, point.token).then(null, function (error) {
        var lost = !error.admission && (!(error instanceof ApiError) || error.status >= 500);
        var retry = k + 1 < points.length && (error.admission || (lost && !lostOnce));
        if (!retry) throw error;
        if (lost) lostOnce = true;
        $("phase").textContent = T.failover;
        return attempt(k + 1);
      });
    }
    return attempt(0);
  }

  function showResult(result, point) {
    var p = result.payload, r = result.report;
    var down = p.download ? p.download.rate_bps / 1e6 : null;
    var up = p.upload ? p.upload.rate_bps / 1e6 : null;
    setField("download", fmt(down));
    setField("upload", fmt(up));
    setField("latency", fmt(r.latency_ms, 1));
    setField("jitter", fmt(r.jitter_ms, 1));
    setField("loaded_download", fmt(r.loaded_latency_download_ms, 1));
    setField("loaded_upload", fmt(r.loaded_latency_upload_ms, 1));
    setField("rpm", fmt(r.rpm, 0));
    setField("ipv6", r.ipv6_capable === true ? T.yes : r.ipv6_capable === false ? T.no : T.unknown);
    setField("test_point", point.name || point.id || location.host);
    setGauge(down || 0);
    $("result").hidden = false;
  }

  function start() {
    if (runningTest) return;
    runningTest = true;
    var button = $("start");
    button.disabled = true;
    button.textContent = T.running;
    $("result").hidden = true;
    graph = { download: [], upload: [] };
    drawGraph();
    setGauge(0);
    var measuredAt = Date.now();
    var point;
    var phaseName = { latency: T.latency, download: T.download, upload: T.upload };
    window.ispeedState = { status: "running" };
    chooseTestPoints().then(function (points) {
      return runOnCandidates(points, function (kind, data) {
        if (kind === "phase") $("phase").textContent = phaseName[data.phase] || "";
        if (kind === "progress") {
          setGauge(data.mbps);
          graph[data.phase].push([data.elapsed, data.mbps]);
          drawGraph();
        }
      }, function (p) { point = p; });
    }).then(function (result) {
      showResult(result, point);
      window.ispeedState = { status: "measured", result: result };
      if (!cfg.submitUrl) return result;
      $("phase").textContent = T.submit;
      var body = {
        result_id: uuid4(),
        device_id: deviceId(),
        measured_at_ms: measuredAt,
        client: { kind: "web", version: VERSION },
        access: selectedAccess(),
        location: place.location,
        ward_code: place.location ? null : place.wardCode,
        metrics: {
          download_mbps: result.report.download_mbps,
          upload_mbps: result.report.upload_mbps,
          latency_ms: result.report.latency_ms,
          jitter_ms: result.report.jitter_ms,
          loaded_latency_download_ms: result.report.loaded_latency_download_ms,
          loaded_latency_upload_ms: result.report.loaded_latency_upload_ms,
          ipv6_capable: result.report.ipv6_capable
        },
        receipt: result.receipt,
        source: cfg.source || null
      };
      var list = pending(); list.push(body); savePending(list);
      return submit(body).then(function (stored) {
        window.ispeedState = { status: "submitted", result: result, stored: stored };
        $("result-status").textContent = stored.counted ? T.saved : T.notCounted;
        setField("isp", stored.isp || T.unknown);
        // The record names the ISP by id; the collector lists the display names.
        request(cfg.submitUrl.replace(/results$/, "isps")).then(function (body) {
          var isp = (body.isps || []).filter(function (i) { return i.id === stored.isp; })[0];
          if (isp) setField("isp", isp.name);
        }, function () { /* the id stays */ });
        if (stored.ward_code && place.wards) {
          var name = Object.keys(place.wards).filter(function (n) { return place.wards[n] === stored.ward_code; })[0];
          setField("ward", name || stored.ward_code);
        }
        var link = location.origin + "/r/" + stored.result_id;
        $("share-link").href = link;
        $("share-link").textContent = link;
        $("share").hidden = false;
        return result;
      }, function (error) {
        var rejected = error instanceof ApiError && error.status && error.status < 500;
        window.ispeedState = { status: rejected ? "rejected" : "pending", result: result, error: error.code || String(error) };
        $("result-status").textContent = rejected ? T.rejected + " (" + error.code + ")" : T.pending;
        return result;
      });
    }).then(function () {
      $("phase").textContent = T.done;
    }, function (error) {
      var busy = error instanceof ApiError && error.code === "over_capacity";
      $("phase").textContent = busy ? T.busy : T.error + (error && error.message ? ": " + error.message : "");
      window.ispeedState = { status: "failed", error: (error && (error.code || error.message)) || String(error) };
    }).then(function () {
      runningTest = false;
      button.disabled = false;
      button.textContent = T.startAgain;
    });
  }

  $("start").addEventListener("click", start);
  var copy = $("copy");
  if (copy) {
    copy.addEventListener("click", function () {
      var text = $("share-link").href;
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () { copy.textContent = T.copied; });
    });
  }
  if ($("details")) {
    $("details").addEventListener("submit", function (e) { e.preventDefault(); });
    prefillAccess();
    setupPlace();
  }
  resendPending();
  window.ispeed = { runTest: runTest, start: start };
  if (cfg.autostart) start();
})();
