#!/usr/bin/env bash
# `ispeed migrate` round trip at scale: an embedded store of SAMPLES
# generated results copied into PostgreSQL, then every statistics and report
# answer compared byte for byte between the two stores.
#
#   bench/migrate.sh --store postgres://user@host/db      (needs psql)
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      SAMPLES=1000000 MONTH=2026-10 SEED=1 (the generation; reused from
#        BENCH_DATA like bench/query.sh)
#      BENCH_DATA=/work/bench-data
#      KEEP_LOGS=1 (keep the scratch directory)
#
# Steps: generate (or reuse) the SQLite store; `ispeed migrate` into a fresh
# schema (which also verifies counts per month and every rollup cell
# rebuilt from the copied rows); start `ispeed serve` on each store and
# fetch the same questions from both: stats and children for the nation
# and every province, ward stats for the province of HCMC (79), timeseries,
# and the national and HCMC CSV reports. Exits non-zero on any difference.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

STORE=
while (($#)); do
    case $1 in
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --store) STORE=${2:?--store needs a URL}; shift 2 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $STORE == postgres://* || $STORE == postgresql://* ]] || die "give --store postgres://..."
[[ $STORE != *'?'* ]] || die "give --store without query parameters"
command -v psql >/dev/null || die "needs psql"
command -v python3 >/dev/null || die "needs python3"
resolve_ispeed

SAMPLES=${SAMPLES:-1000000}
MONTH=${MONTH:-2026-10}
SEED=${SEED:-1}
BENCH_DATA=${BENCH_DATA:-/work/bench-data}
DATA="$BENCH_DATA/query-m$MONTH-n$SAMPLES-s$SEED"
SCHEMA="bench_migrate_$$"
CLEANUP_CMDS+=("psql '$STORE' -qc 'DROP SCHEMA IF EXISTS $SCHEMA CASCADE'")

log "machine: $(nproc) cores; scratch $WORK"
if [[ -s $DATA/generate.json && -f $DATA/ispeed.sqlite3 ]]; then
    log "reusing $DATA ($(tr -d '\n' <"$DATA/generate.json"))"
else
    rm -rf "$DATA"
    mkdir -p "$DATA"
    log "generating $SAMPLES samples into $DATA"
    run_fg "$ISPEED" generate --month "$MONTH" --samples "$SAMPLES" --seed "$SEED" --data "$DATA" \
        >"$DATA/generate.json.tmp" 2>"$DATA/generate.log" || { show_log "$DATA/generate.log"; die "generate failed"; }
    mv "$DATA/generate.json.tmp" "$DATA/generate.json"
fi

log "migrating into schema $SCHEMA"
t0=$SECONDS
run_fg "$ISPEED" migrate --from "sqlite:$DATA" --to "$STORE?schema=$SCHEMA" \
    >"$WORK/migrate.json" 2>"$WORK/migrate.log" || { show_log "$WORK/migrate.log"; die "migrate failed"; }
log "migrate took $((SECONDS - t0)) s: $(cat "$WORK/migrate.json")"

# answers NAME STORE_ARGS...: fetch every question into $WORK/NAME/.
answers() {
    local name=$1 port
    shift
    port=$(py freeport)
    bg_start "$WORK/serve-$name.log" "$ISPEED" serve --data "$DATA" "$@" --listen "127.0.0.1:$port" --no-test-point
    local pid=$BG_PID deadline=$((SECONDS + 60))
    until py healthz "http://127.0.0.1:$port/api/v1/isps" 1 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)) || { show_log "$WORK/serve-$name.log"; die "serve ($name) did not start"; }
    done
    mkdir -p "$WORK/$name"
    python3 - "http://127.0.0.1:$port" "$WORK/$name" "$MONTH" <<'PY'
import sys, urllib.request
base, out, month = sys.argv[1:4]
provinces = [p["code"] for p in __import__("json").load(urllib.request.urlopen(f"{base}/api/v1/units"))["provinces"]]
qs = [f"/api/v1/stats?level=nation&period={month}", f"/api/v1/stats/children?level=nation&period={month}",
      f"/api/v1/stats/children?level=nation&period={month}&access=mobile",
      f"/api/v1/stats/timeseries?level=nation&period={month}",
      f"/api/v1/reports?month={month}&format=csv", f"/api/v1/reports?month={month}&province=79&format=csv"]
for p in provinces:
    qs += [f"/api/v1/stats?level=province&code={p}&period={month}",
           f"/api/v1/stats/children?level=province&code={p}&period={month}"]
for i, q in enumerate(qs):
    with urllib.request.urlopen(base + q, timeout=120) as r:
        open(f"{out}/{i:04d}", "wb").write(r.read())
open(f"{out}/questions", "w").write("\n".join(qs) + "\n")
PY
    kill_pid "$pid"
    bg_wait "$pid" 2>/dev/null || true
}
answers sqlite
answers postgres --store "$STORE?schema=$SCHEMA"
n=$(wc -l <"$WORK/sqlite/questions")
if diff -r "$WORK/sqlite" "$WORK/postgres" >"$WORK/diff.txt"; then
    verdict=PASS
else
    verdict="FAIL ($(grep -c '^diff\|^Files' "$WORK/diff.txt") answers differ; see $WORK/diff.txt)"
fi
python3 - "$WORK/migrate.json" "$n" "$verdict" "$SAMPLES" <<'PY'
import json, sys
m, n, verdict, samples = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], int(sys.argv[4])
rate = m["results"] / m["copy_seconds"]
print(f"RESULT: migrate {m['results']:,} results ({m['cells']:,} cells rebuilt and matched) in "
      f"{m['copy_seconds']:.0f} s copy ({rate:,.0f} results/s) + {m['verify_seconds']:.0f} s verify; "
      f"{n} statistics/report answers identical on both stores: {verdict}")
sys.exit(0 if verdict == "PASS" and m["verified"] and m["results"] == samples else 1)
PY
