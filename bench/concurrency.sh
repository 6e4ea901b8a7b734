#!/usr/bin/env bash
# Many simultaneous tests against one test point on 127.0.0.1.
#
#   bench/concurrency.sh [SESSIONS]      default 1000
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      MAX_SESSIONS=1000 (server's max_sessions)
#      SECONDS_PER_DIRECTION=3 (loadgen --seconds)
#      LOADGEN_TIMEOUT=300 (seconds before the loadgen run is abandoned)
#      RUNS=3 (loadgen runs against the same server; medians are reported)
#      KEEP_LOGS=1 (keep the scratch directory with the JSON and logs)
#
# `ispeed loadgen` starts SESSIONS single-stream tests that download, then
# upload, in lock-step. What matters here is not the speed (the CPU is the
# bottleneck on loopback) but that every session completes, that the server
# shares its capacity evenly (Jain's fairness index over per-session rates,
# 1.0 = perfectly even), that its memory stays bounded while it carries them
# all, and that it forgets every session afterwards (active sessions back to 0).
# The sessions stand for clients on separate machines, so loadgen fixes their
# sockets' buffers (--socket-buffer-kib, 256 KiB): autotuned, a thousand
# client-side receive queues would share the test point's TCP memory pool on
# this one host and push it into memory pressure (receive-queue drops,
# retransmission timeouts on random connections), a condition of the bench's
# topology, not of a test point serving real clients.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

case ${1:-} in -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
N=${1:-1000}
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "SESSIONS must be a positive integer: $N"
MAX_SESSIONS=${MAX_SESSIONS:-1000}
SECS=${SECONDS_PER_DIRECTION:-3}
LOADGEN_TIMEOUT=${LOADGEN_TIMEOUT:-300}

command -v python3 >/dev/null || die "needs python3"

# Each session holds a few sockets at both ends, and the usual soft limit
# (1024) is below 1000 sessions' worth. Set before anything starts so both
# the server and loadgen inherit it. Raising the hard limit needs
# CAP_SYS_RESOURCE, which a container may lack even for root; then settle
# for the hard limit (20000 on the dev machines, enough for 1000 sessions).
if ! ulimit -n 65536 2>/dev/null; then
    log "NOTE: cannot raise open files to 65536 (hard limit $(ulimit -Hn)); using the hard limit"
    ulimit -n "$(ulimit -Hn)"
fi
if (($(ulimit -n) < N * 8)); then
    log "WARNING: open-file limit $(ulimit -n) may be too low for $N sessions"
fi

resolve_ispeed
pick_ports
CFG="$WORK/server.toml"
# line_rate_mbps: the byte budget follows the line rate, and loopback is fast.
printf 'max_sessions = %s\nline_rate_mbps = 200000\n' "$MAX_SESSIONS" >"$CFG"
start_loopback_server "$PORT_A" "$CFG"
RSS_BASE=$(py rss "$SERVER_PID")
log "ispeed server pid $SERVER_PID at $SERVER_URL (RSS ${RSS_BASE} MB, open files $(ulimit -n)); scratch $WORK"

# Sample every 0.2 s in the background for the whole loadgen run: the peak
# is brief (all sessions' buffers at once), a before/after reading misses it.
PEAK_FILE="$WORK/rss-peak"
echo "$RSS_BASE" >"$PEAK_FILE"
bg_start "$WORK/rssmon.log" python3 "$BENCH_PY" rssmon "$SERVER_PID" "$PEAK_FILE" 0.2
RSSMON_PID=$BG_PID

OUTS=()
for run in $(seq "$RUNS"); do
    OUT="$WORK/loadgen-run$run.json"
    log "ispeed loadgen run $run/$RUNS: $N sessions, $SECS s per direction"
    rc=0
    run_fg timeout "$LOADGEN_TIMEOUT" "$ISPEED" loadgen --server "$SERVER_URL" \
        --sessions "$N" --seconds "$SECS" --json >"$OUT" 2>"$WORK/loadgen-run$run.err" || rc=$?
    ((rc == 0)) || log "WARNING: loadgen exited $rc"
    if ((rc == 124)); then
        log "WARNING: loadgen killed after ${LOADGEN_TIMEOUT}s"
    fi
    [[ -s $OUT ]] || { show_log "$WORK/loadgen-run$run.err"; show_log "$WORK/ispeed-server.log"; die "loadgen printed no JSON"; }
    OUTS+=("$OUT")
done

kill_pid "$RSSMON_PID"
bg_wait "$RSSMON_PID" || true
kill -0 "$SERVER_PID" 2>/dev/null || { show_log "$WORK/ispeed-server.log"; die "ispeed server died during the run"; }
RSS_PEAK=$(cat "$PEAK_FILE")

# Sessions that finished normally should be gone at once; anything left is
# a leak unless it disappears by the TTL. Report both the immediate reading
# and how long it took to reach 0 (if it does within 10 s).
ACTIVE_NOW=$(py metric "$SERVER_URL/metrics" ispeed_active_sessions)
ACTIVE_LATER=$ACTIVE_NOW
DRAIN_S=0
while [[ $ACTIVE_LATER != 0 && $ACTIVE_LATER != nan && $DRAIN_S -lt 10 ]]; do
    sleep 1
    DRAIN_S=$((DRAIN_S + 1))
    ACTIVE_LATER=$(py metric "$SERVER_URL/metrics" ispeed_active_sessions)
done
RSS_AFTER=$(py rss "$SERVER_PID")

python3 - "$N" "$RSS_BASE" "$RSS_PEAK" "$RSS_AFTER" "$ACTIVE_NOW" "$ACTIVE_LATER" "$DRAIN_S" \
    "$CONFIG_NOTE" "$MAX_SESSIONS" "$SECS" "${OUTS[@]}" <<'PY'
import json, math, statistics, sys
n, base, peak, after, active_now, active_later, drain_s, note, max_sessions, secs, *outs = sys.argv[1:]
runs = []
for out in outs:
    text = open(out).read()
    runs.append(json.loads(text[text.find("{"):]))
fmt = lambda v, d=3: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"
def med(key):
    values = [x[key] for x in runs if isinstance(x.get(key), (int, float))]
    return statistics.median(values) if values else math.nan
completed = sum(x.get("completed") or 0 for x in runs)
failed = sum(x.get("failed") or 0 for x in runs)
# The per-session figures below are those of the run with the median download fairness.
r = sorted(runs, key=lambda x: x.get("jain_download") or 0)[len(runs) // 2]

print()
print(f"ispeed loadgen on 127.0.0.1: {len(runs)} runs of {n} sessions x {secs} s per direction, "
      f"one stream each; server max_sessions = {max_sessions}")
if note:
    print(f"NOTE: {note}")
per_run = lambda key: " ".join(fmt(x.get(key)) for x in runs)
rows = [
    ("sessions (all runs)", int(n) * len(runs)),
    ("completed", completed),
    ("failed", failed),
    ("Jain download, per run", per_run("jain_download")),
    ("Jain upload, per run", per_run("jain_upload")),
    ("Jain download, median", fmt(med("jain_download"))),
    ("Jain upload, median", fmt(med("jain_upload"))),
    ("aggregate download Mbit/s", fmt(med("total_download_mbps"), 0)),
    ("aggregate upload Mbit/s", fmt(med("total_upload_mbps"), 0)),
    ("loadgen wall time s", fmt(med("wall_s"), 1)),
    ("server RSS before MB", base),
    ("server RSS peak MB", peak),
    ("server RSS after MB", after),
    ("ispeed_active_sessions after", active_now
        + ("" if active_now == active_later else f" (then {active_later} after {drain_s} s)")),
]
for k, v in rows:
    print(f"  {k:<30}{v!s:>14}")
for direction in ("download_mbps", "upload_mbps"):
    v = sorted(x for x in r.get(direction) or [] if x is not None)
    if v:
        print(f"  per-session {direction:<18} min {v[0]:.1f}  median {v[len(v)//2]:.1f}  max {v[-1]:.1f}")
errors = {}
for x in runs:
    for msg, count in (x.get("errors") or {}).items():
        errors[msg] = errors.get(msg, 0) + count
if errors:
    print("  errors:")
    for msg, count in sorted(errors.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {count:>6} x {msg}")
print()
print(f"RESULT: completed {completed}/{int(n) * len(runs)}, Jain (median of {len(runs)}) "
      f"down {fmt(med('jain_download'))} up {fmt(med('jain_upload'))}, peak RSS {peak} MB; "
      f"active sessions after = {active_now}")
PY
