#!/usr/bin/env bash
# Accuracy of the browser test (headless Chromium) against `ispeed test` and iperf3.
#
#   bench/browser.sh [RATES...]     tbf-shaped links at each rate (Mbit/s), default 50 300,
#                                   then a loopback case (127.0.0.1, informative, no budget)
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      RUNS=3 (repetitions; medians are reported)
#      KEEP_LOGS=1 (keep the scratch directory with every JSON and log)
#      IPERF_STREAMS=8 (iperf3 -P; the protocol starts with 8 streams)
#      BUDGET=0.03 (largest |browser/iperf3 - 1| a shaped link may show)
#      LOOPBACK=0 (skip the loopback case)
#      BROWSER_TRACE=1 (bench/browser.mjs --trace: per-WebSocket timings and
#                       upload bufferedAmount samples, kept in the scratch dir)
#
# The link is the one bench/accuracy.sh builds: two network namespaces
# joined by a veth pair, both ends shaped with tbf (burst 4 ms of the rate,
# queue 50 ms). The test point (`ispeed server`, which also serves the test
# page) and iperf3 -s run in the server namespace; iperf3, `ispeed test` and
# Chromium (bench/browser.mjs, Node + playwright-core from tests/web) run in
# the client namespace, so all three cross the shaped veth. In every
# repetition each tool runs once, in an order rotated from one repetition to
# the next, so that a slow drift of the machine does not favour one tool.
#
# References: iperf3's receiver-side goodput (end.sum_received, -P
# IPERF_STREAMS, 10 s each way); the CLI's and the browser's figures are the
# receipt payload's rate_bps (server-side counted, signed). A shaped link
# PASSes when the browser's median download and upload are both within
# BUDGET of iperf3's; the script exits non-zero if one does not.
# Needs root, iproute2, iperf3, python3, node, /usr/bin/chromium and
# tests/web/node_modules (cd tests/web && npm ci; done here if missing).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

RATES=()
for arg in "$@"; do
    case $arg in
        -h | --help) usage 0 ;;
        -*) usage 2 ;;
        *) [[ $arg =~ ^[0-9]+$ && $arg -gt 0 ]] || die "rate must be a positive integer Mbit/s: $arg"; RATES+=("$arg") ;;
    esac
done
[[ ${#RATES[@]} -gt 0 ]] || RATES=(50 300)
IPERF_STREAMS=${IPERF_STREAMS:-8}
BUDGET=${BUDGET:-0.03}
LOOPBACK=${LOOPBACK:-1}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

[[ $EUID -eq 0 ]] || die "needs root (network namespaces and tc)"
{ command -v ip && command -v tc; } >/dev/null || die "needs iproute2 (ip, tc)"
command -v python3 >/dev/null || die "needs python3"
command -v node >/dev/null || die "needs node"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] || die "no chromium at $CHROMIUM"
export CHROMIUM
require_iperf3
resolve_ispeed
if [[ ! -e $REPO_ROOT/tests/web/node_modules/playwright-core/index.mjs ]]; then
    log "playwright-core missing, running npm ci in tests/web"
    (cd "$REPO_ROOT/tests/web" && npm ci --no-audit --no-fund) >&2 || die "cannot install playwright-core"
fi

# Names carry our PID (see accuracy.sh); the addresses exist only inside
# our namespaces. 10.201.X.0/24 keeps clear of accuracy.sh's 10.200.X.0/24.
SRV=isp-bsrv-$$
CLI=isp-bcli-$$
X=$(($$ % 254 + 1))
SRV4=10.201.$X.1
CLI4=10.201.$X.2
SIF=isp-s # server-side veth end (egress = download direction)
CIF=isp-c # client-side veth end (egress = upload direction)
NS_ISPEED_PORT=8080
NS_IPERF_PORT=5201
MANIFEST="$WORK/manifest.tsv" # case, run, tool, file
: >"$MANIFEST"
IN_SRV=(ip netns exec "$SRV")
IN_CLI=(ip netns exec "$CLI")

setup_netns() {
    # Registered before creation so a failure half-way still removes them.
    # Deleting a namespace removes its veth end and the tbf on it.
    CLEANUP_CMDS+=("ip netns pids $SRV | xargs -r kill -9; ip netns del $SRV")
    CLEANUP_CMDS+=("ip netns pids $CLI | xargs -r kill -9; ip netns del $CLI")
    ip netns add "$SRV"
    ip netns add "$CLI"
    ip -n "$SRV" link add "$SIF" type veth peer name "$CIF" netns "$CLI"
    ip -n "$SRV" addr add "$SRV4/24" dev "$SIF"
    ip -n "$CLI" addr add "$CLI4/24" dev "$CIF"
    ip -n "$SRV" link set lo up
    ip -n "$CLI" link set lo up
    ip -n "$SRV" link set "$SIF" up
    ip -n "$CLI" link set "$CIF" up
}

# shape RATE_MBIT: tbf on the egress of both veth ends, exactly as
# accuracy.sh does (burst 4 ms of the rate, at least 15000 B; 50 ms queue).
shape() {
    local rate=$1 latency=50ms burst
    burst=$((rate * 1000000 / 8 / 250))
    if ((burst < 15000)); then burst=15000; fi
    "${IN_SRV[@]}" tc qdisc replace dev "$SIF" root tbf rate "${rate}mbit" burst "$burst" latency "$latency"
    "${IN_CLI[@]}" tc qdisc replace dev "$CIF" root tbf rate "${rate}mbit" burst "$burst" latency "$latency"
    log "shaped both directions: tbf rate ${rate}mbit burst ${burst}B latency $latency"
}

# qdisc_stats CASE RUN TAG: tbf counters of both ends (sent, dropped,
# overlimits), for the post-mortem of a run.
qdisc_stats() {
    {
        echo "== $1 run $2 $3"
        "${IN_SRV[@]}" tc -s qdisc show dev "$SIF"
        "${IN_CLI[@]}" tc -s qdisc show dev "$CIF"
    } >>"$WORK/qdisc-stats.txt" 2>&1 || true
}

# Per case: how to reach the servers. CASE_PREFIX runs a client command in
# the right place (the client namespace, or nothing on loopback).
CASE_PREFIX=()
IPERF_HOST=""
IPERF_PORT=""
TEST_URL=""

start_ns_servers() {
    bg_start "$WORK/ns-iperf3-server.log" "${IN_SRV[@]}" iperf3 -s -p "$NS_IPERF_PORT"
    "${IN_SRV[@]}" python3 "$BENCH_PY" waitlisten "$NS_IPERF_PORT" 10 ||
        { show_log "$WORK/ns-iperf3-server.log"; die "iperf3 -s did not start"; }
    bg_start "$WORK/ns-ispeed-server.log" "${IN_SRV[@]}" "$ISPEED" server \
        --listen "$SRV4:$NS_ISPEED_PORT" --key "$WORK/server.key"
    # Polled from the client namespace, so this also proves the path works.
    "${IN_CLI[@]}" python3 "$BENCH_PY" healthz "http://$SRV4:$NS_ISPEED_PORT/healthz" 20 ||
        { show_log "$WORK/ns-ispeed-server.log"; die "ispeed server not healthy"; }
    # The page itself must be served too (an old binary has no page).
    "${IN_CLI[@]}" python3 - "http://$SRV4:$NS_ISPEED_PORT/?autostart=1" <<'PY' ||
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
sys.exit(0 if "ispeed-config" in body else 1)
PY
        die "the test point at $SRV4:$NS_ISPEED_PORT serves no test page (binary too old? ISPEED=$ISPEED)"
}

start_loopback_servers() {
    pick_ports
    # Loopback runs at Gbit/s: a generous line rate keeps the byte budget
    # from cutting a test short (see loopback.sh).
    echo 'line_rate_mbps = 200000' >"$WORK/loopback.toml"
    start_loopback_server "$PORT_A" "$WORK/loopback.toml"
    bg_start "$WORK/lo-iperf3-server.log" iperf3 -s -B 127.0.0.1 -p "$PORT_B"
    py waitlisten "$PORT_B" 10 || { show_log "$WORK/lo-iperf3-server.log"; die "iperf3 -s (loopback) did not start"; }
}

# run_iperf CASE RUN: download (-R) then upload, 10 s each.
run_iperf() {
    local c=$1 run=$2 dir args out
    for dir in down up; do
        args=()
        [[ $dir == down ]] && args=(-R)
        out="$WORK/$c-run$run-iperf-$dir.json"
        log "[$c] run $run/$RUNS: iperf3 -P $IPERF_STREAMS ${dir}load"
        if ! run_fg "${CASE_PREFIX[@]}" timeout 60 iperf3 -c "$IPERF_HOST" -p "$IPERF_PORT" \
            -P "$IPERF_STREAMS" -t 10 "${args[@]}" -J >"$out" 2>&1; then
            log "WARNING: iperf3 ${args[*]:-} failed: $(py jget "$out" error)"
            sleep 2 # a failed run can leave iperf3 -s busy for a moment
        fi
        printf '%s\t%s\tiperf_%s\t%s\n' "$c" "$run" "$dir" "$out" >>"$MANIFEST"
    done
}

run_cli() {
    local c=$1 run=$2 out="$WORK/$c-run$2-cli.json" rc=0
    log "[$c] run $run/$RUNS: ispeed test"
    run_fg "${CASE_PREFIX[@]}" timeout 120 "$ISPEED" test --server "$TEST_URL" --json >"$out" 2>"$out.err" || rc=$?
    if ((rc != 0)); then
        log "WARNING: ispeed test failed (exit $rc); stderr:"
        tail -n 5 "$out.err" >&2 || true
    fi
    printf '%s\t%s\tcli\t%s\n' "$c" "$run" "$out" >>"$MANIFEST"
}

run_browser() {
    local c=$1 run=$2 out="$WORK/$c-run$2-browser.json" rc=0 trace=()
    [[ -n ${BROWSER_TRACE:-} ]] && trace=(--trace "$WORK/$c-run$run-browser-trace.json")
    log "[$c] run $run/$RUNS: browser (headless Chromium)"
    # The browser's own timeout is 90 s; `timeout` is the backstop (Chromium
    # is Node's child and dies with it; the namespace kill catches strays).
    run_fg "${CASE_PREFIX[@]}" timeout -k 5 150 node "$BENCH_DIR/browser.mjs" \
        "$TEST_URL/?autostart=1" --timeout 90 "${trace[@]}" >"$out" 2>"$out.err" || rc=$?
    if ((rc != 0)); then
        log "WARNING: browser test failed (exit $rc): $(head -c 400 "$out" 2>/dev/null)"
        tail -n 5 "$out.err" >&2 || true
    fi
    printf '%s\t%s\tbrowser\t%s\n' "$c" "$run" "$out" >>"$MANIFEST"
}

# run_case CASE: RUNS repetitions of the three tools, order rotated per run.
run_case() {
    local c=$1 run k order tools=(iperf cli browser)
    for run in $(seq "$RUNS"); do
        order=()
        for k in 0 1 2; do order+=("${tools[$(((k + run - 1) % 3))]}"); done
        for k in "${order[@]}"; do
            "run_$k" "$c" "$run"
            [[ $c == loopback ]] || qdisc_stats "$c" "$run" "$k"
        done
    done
}

setup_netns
start_ns_servers
log "namespaces $SRV ($SRV4) <-> $CLI ($CLI4); scratch $WORK"
CASE_PREFIX=("${IN_CLI[@]}")
IPERF_HOST=$SRV4
IPERF_PORT=$NS_IPERF_PORT
TEST_URL="http://$SRV4:$NS_ISPEED_PORT"
for rate in "${RATES[@]}"; do
    shape "$rate"
    run_case "$rate"
done

if [[ $LOOPBACK != 0 ]]; then
    start_loopback_servers
    log "loopback: ispeed server $SERVER_URL, iperf3 -s on port $PORT_B"
    CASE_PREFIX=()
    IPERF_HOST=127.0.0.1
    IPERF_PORT=$PORT_B
    TEST_URL=$SERVER_URL
    run_case loopback
fi

python3 - "$MANIFEST" "$RUNS" "$BUDGET" "$IPERF_STREAMS" <<'PY'
import collections, json, math, statistics, sys
manifest, runs, budget, pstreams = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
nan = math.nan

def load(path):
    try:
        text = open(path).read().strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # browser.mjs prints one line; take the last JSON line if there is noise.
        for line in reversed(text.splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None

def num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else nan

def dir_info(payload, d):
    """rate (Mbit/s), streams, stable, window s, phase s of a receipt direction."""
    r = (payload or {}).get(d) or {}
    rate = num(r.get("rate_bps")) / 1e6
    w = (num(r.get("window_end_ms")) - num(r.get("window_start_ms"))) / 1000
    return {"mbps": rate, "streams": r.get("streams"), "stable": r.get("stable"),
            "window_s": w, "dur_s": num(r.get("duration_ms")) / 1000}

cases, runs_seen = [], collections.defaultdict(dict)
for line in open(manifest):
    c, run, tool, path = line.rstrip("\n").split("\t")
    if c not in cases:
        cases.append(c)
    j = load(path)
    rec = runs_seen[(c, int(run))]
    if tool.startswith("iperf_"):
        b = num((((j or {}).get("end") or {}).get("sum_received") or {}).get("bits_per_second"))
        rec[tool] = b / 1e6
    elif tool == "cli":
        p = (j or {}).get("receipt_payload")
        rec["cli_down"], rec["cli_up"] = dir_info(p, "download"), dir_info(p, "upload")
    else:
        p = (j or {}).get("payload")
        rec["br_down"], rec["br_up"] = dir_info(p, "download"), dir_info(p, "upload")
        rec["br_err"] = (j or {}).get("error") if (j or {}).get("status") not in ("measured", "submitted") else None
        if j is None:
            rec["br_err"] = "no output"

fmt = lambda v, d=1: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"
def ratio(a, b):
    return a / b if not (math.isnan(a) or math.isnan(b) or b == 0) else nan
def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else nan
def det(i):
    if not i or math.isnan(i["mbps"]):
        return "-"
    st = {True: "S", False: "u"}.get(i["stable"], "?")
    return f"{i['mbps']:.1f} ({i['streams']}{st} {fmt(i['window_s'])}/{fmt(i['dur_s'])}s)"

print()
print("individual runs (Mbit/s; ispeed: rate (streams, S=stable/u=unstable, window s/phase s))")
hdr = f"{'link':>8} {'run':>3} {'iperf dn':>9} {'iperf up':>9}  {'cli dn':>24} {'cli up':>24}  {'browser dn':>24} {'browser up':>24}"
print(hdr)
for c in cases:
    for run in range(1, runs + 1):
        r = runs_seen.get((c, run), {})
        print(f"{c:>8} {run:>3} {fmt(r.get('iperf_down', nan)):>9} {fmt(r.get('iperf_up', nan)):>9}  "
              f"{det(r.get('cli_down')):>24} {det(r.get('cli_up')):>24}  "
              f"{det(r.get('br_down')):>24} {det(r.get('br_up')):>24}"
              + (f"  browser error: {r['br_err']}" if r.get("br_err") else ""))

print()
print(f"medians of {runs} runs (Mbit/s); iperf3 -P {pstreams} receiver goodput, ispeed receipt rate_bps; "
      f"budget |browser/iperf3 - 1| <= {budget:.0%} on shaped links")
hdr = ("link", "iperf3 dn", "cli dn", "browser dn", "iperf3 up", "cli up", "browser up",
       "br/ip dn", "br/ip up", "cli/ip dn", "cli/ip up", "verdict")
print("  ".join(f"{h:>10}" for h in hdr))
failed, lo = [], None
for c in cases:
    rs = [runs_seen.get((c, run), {}) for run in range(1, runs + 1)]
    m = {k: med([r.get(k, nan) for r in rs]) for k in ("iperf_down", "iperf_up")}
    for k in ("cli_down", "cli_up", "br_down", "br_up"):
        m[k] = med([(r.get(k) or {}).get("mbps", nan) for r in rs])
    rb = (ratio(m["br_down"], m["iperf_down"]), ratio(m["br_up"], m["iperf_up"]))
    rc = (ratio(m["cli_down"], m["iperf_down"]), ratio(m["cli_up"], m["iperf_up"]))
    if c == "loopback":
        verdict, lo = "info", m
    else:
        ok = all(not math.isnan(x) and abs(x - 1) <= budget + 1e-12 for x in rb)
        verdict = "PASS" if ok else "FAIL"
        if not ok:
            failed.append(c)
    label = c if c == "loopback" else f"{c} Mbit"
    row = (label, fmt(m["iperf_down"]), fmt(m["cli_down"]), fmt(m["br_down"]),
           fmt(m["iperf_up"]), fmt(m["cli_up"]), fmt(m["br_up"]),
           fmt(rb[0], 3), fmt(rb[1], 3), fmt(rc[0], 3), fmt(rc[1], 3), verdict)
    print("  ".join(f"{x:>10}" for x in row))
print()
if lo is not None:
    print(f"browser loopback maximum (median): download {fmt(lo['br_down'], 0)} Mbit/s, "
          f"upload {fmt(lo['br_up'], 0)} Mbit/s (CLI {fmt(lo['cli_down'], 0)} / {fmt(lo['cli_up'], 0)}, "
          f"iperf3 {fmt(lo['iperf_down'], 0)} / {fmt(lo['iperf_up'], 0)})")
shaped = [c for c in cases if c != "loopback"]
print(f"RESULT: browser within {budget:.0%} of iperf3 on {len(shaped) - len(failed)}/{len(shaped)} shaped links"
      + (f"; FAIL: {', '.join(failed)} Mbit/s" if failed else ""))
sys.exit(1 if failed else 0)
PY
