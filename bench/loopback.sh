#!/usr/bin/env bash
# Raw efficiency of ispeed on 127.0.0.1, with iperf3 as the yardstick.
#
#   bench/loopback.sh
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      RUNS=3 (repetitions; medians are reported)
#      KEEP_LOGS=1 (keep the scratch directory with every JSON and log)
#
# Loopback has no bottleneck but the CPU, so this measures how close the
# ispeed server+client pair gets to what the kernel can move (iperf3), on one
# connection and on several, and what the test point pays for it: server CPU
# seconds per GB moved. Client and server share this machine's cores with
# each other, exactly as iperf3's do, so the ratio is a fair comparison even
# though the absolute numbers depend on the machine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

case ${1:-} in -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

command -v python3 >/dev/null || die "needs python3"
require_iperf3
resolve_ispeed

pick_ports
ISPEED_PORT=$PORT_A
IPERF_PORT=$PORT_B
TSV="$WORK/results.tsv"
: >"$TSV"

# The default byte budget is derived from the line rate; loopback runs at
# tens of Gbit/s, so a generous line rate keeps the budget from cutting a
# test short and turning a speed into a truncation artefact.
CFG="$WORK/server.toml"
echo 'line_rate_mbps = 200000' >"$CFG"
start_loopback_server "$ISPEED_PORT" "$CFG"
bg_start "$WORK/iperf3-server.log" iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT"
py waitlisten "$IPERF_PORT" 10 || { show_log "$WORK/iperf3-server.log"; die "iperf3 -s did not start"; }
log "ispeed server pid $SERVER_PID at $SERVER_URL; iperf3 -s on port $IPERF_PORT; scratch $WORK"

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TSV"; }

# iperf OUT ARGS...: one 8 s iperf3 run against the local iperf3 -s, JSON to OUT.
iperf() {
    local out=$1
    shift
    if ! run_fg timeout 60 iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t 8 -J "$@" >"$out" 2>&1; then
        log "WARNING: iperf3 $* failed: $(py jget "$out" error)"
        sleep 2 # let iperf3 -s recover from the aborted test
    fi
}

# ispeed_test RUN TAG ARGS...: one `ispeed test --json`, recording the rates
# and the server's CPU seconds per GB moved during it.
ispeed_test() {
    local run=$1 tag=$2 out="$WORK/run$1-$2.json" rc=0
    shift 2
    local cpu0 cpu1
    cpu0=$(py cputicks "$SERVER_PID")
    run_fg timeout 180 "$ISPEED" test --server "$SERVER_URL" --json "$@" >"$out" 2>"$out.err" || rc=$?
    cpu1=$(py cputicks "$SERVER_PID")
    if ((rc != 0)); then
        log "WARNING: ispeed test $* failed (exit $rc):"
        tail -n 5 "$out.err" >&2 || true
    fi
    local down up
    down=$(py jget "$out" download_mbps)
    up=$(py jget "$out" upload_mbps)
    record "$run" "${tag}_down" "$down"
    record "$run" "${tag}_up" "$up"
    record "$run" "${tag}_streams_down" "$(py jget "$out" streams.download)"
    record "$run" "${tag}_streams_up" "$(py jget "$out" streams.upload)"
    # Bytes moved: the receipt's per-direction byte counts are what the server
    # actually sent/received (ramp-up included, which also cost CPU); fall back
    # to rate x duration if the receipt lacks them.
    local gb
    gb=$(python3 - "$out" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("nan"); sys.exit()
total = 0.0
for d in ("download", "upload"):
    b = ((r.get("receipt_payload") or {}).get(d) or {}).get("bytes")
    if b is None:
        mbps, dur = r.get(f"{d}_mbps"), (r.get("duration_s") or {}).get(d)
        b = mbps * 1e6 / 8 * dur if mbps is not None and dur is not None else 0
    total += b
print(total / 1e9 if total > 0 else "nan")
PY
    )
    record "$run" "${tag}_gb" "$gb"
    record "$run" "${tag}_cpu_s_per_gb" "$(div "$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN{print a-b}')" "$gb")"
}

for run in $(seq "$RUNS"); do
    f="$WORK/run$run"
    log "run $run/$RUNS: iperf3 -P 1 download / upload"
    iperf "$f-ip1-down.json" -P 1 -R
    iperf "$f-ip1-up.json" -P 1
    record "$run" ip1_down "$(iperf_mbps "$f-ip1-down.json")"
    record "$run" ip1_up "$(iperf_mbps "$f-ip1-up.json")"
    log "run $run/$RUNS: ispeed test --streams 1"
    ispeed_test "$run" is1 --streams 1
    log "run $run/$RUNS: iperf3 -P 4 download / upload"
    iperf "$f-ip4-down.json" -P 4 -R
    iperf "$f-ip4-up.json" -P 4
    record "$run" ip4_down "$(iperf_mbps "$f-ip4-down.json")"
    record "$run" ip4_up "$(iperf_mbps "$f-ip4-up.json")"
    log "run $run/$RUNS: ispeed test (adaptive streams)"
    ispeed_test "$run" isA
done

python3 - "$TSV" "$RUNS" "$CONFIG_NOTE" <<'PY'
import collections, math, statistics, sys
tsv, runs, note = sys.argv[1], sys.argv[2], sys.argv[3]
vals = collections.defaultdict(list)
for line in open(tsv):
    _run, name, v = line.rstrip("\n").split("\t")
    try:
        f = float(v)
    except ValueError:
        continue
    if not math.isnan(f):
        vals[name].append(f)
med = lambda n: statistics.median(vals[n]) if vals[n] else math.nan
fmt = lambda v, d=0: "-" if math.isnan(v) else f"{v:.{d}f}"
ratio = lambda a, b: a / b if not (math.isnan(a) or math.isnan(b) or b == 0) else math.nan

print()
print(f"loopback 127.0.0.1, medians of {runs} runs (Mbit/s of payload, receiver side)")
if note:
    print(f"NOTE: {note}")
print(f"{'':<34}{'download':>12}{'upload':>12}")
def row(label, d, u, dec=0, suffix=""):
    print(f"{label:<34}{fmt(d, dec) + suffix:>12}{fmt(u, dec) + suffix:>12}")
row("iperf3 -P 1", med("ip1_down"), med("ip1_up"))
row("ispeed --streams 1", med("is1_down"), med("is1_up"))
r1 = (ratio(med("is1_down"), med("ip1_down")), ratio(med("is1_up"), med("ip1_up")))
row("  ispeed / iperf3", *r1, dec=2, suffix="x")
row("iperf3 -P 4", med("ip4_down"), med("ip4_up"))
sd, su = med("isA_streams_down"), med("isA_streams_up")
row(f"ispeed adaptive ({fmt(sd)}/{fmt(su)} streams)", med("isA_down"), med("isA_up"))
rA = (ratio(med("isA_down"), med("ip4_down")), ratio(med("isA_up"), med("ip4_up")))
row("  ispeed / iperf3 -P 4", *rA, dec=2, suffix="x")
print()
cpu1, cpuA = med("is1_cpu_s_per_gb"), med("isA_cpu_s_per_gb")
cpu_all = statistics.median(vals["is1_cpu_s_per_gb"] + vals["isA_cpu_s_per_gb"]) \
    if vals["is1_cpu_s_per_gb"] + vals["isA_cpu_s_per_gb"] else math.nan
print(f"ispeed server CPU (user+sys) per GB moved: --streams 1 {fmt(cpu1, 3)} s/GB, "
      f"adaptive {fmt(cpuA, 3)} s/GB (GB per test: {fmt(med('is1_gb'), 1)} / {fmt(med('isA_gb'), 1)})")
print()
print(f"RESULT: single-connection download {fmt(r1[0], 2)}x iperf3, upload {fmt(r1[1], 2)}x iperf3; "
      f"multi-stream download {fmt(rA[0], 2)}x iperf3 -P4, upload {fmt(rA[1], 2)}x iperf3 -P4; "
      f"CPU s/GB = {fmt(cpu_all, 3)}")
PY
