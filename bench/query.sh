#!/usr/bin/env bash
# Statistics latency from rollups vs an exact computation over raw rows.
#
#   bench/query.sh [SAMPLES...]          (default: 1000000 10000000)
#   bench/query.sh --store postgres://user@host/db [SAMPLES...]
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      RUNS=3 (timed passes per data set; medians of the per-pass p50/p99)
#      KEEP_LOGS=1 (keep the scratch directory with every JSON and log)
#      BENCH_DATA=/work/bench-data (where generated stores are kept and
#        reused: one directory per month/samples/seed; 10 M is ~15 GB)
#      MONTH=2026-10 SEED=1 (what `ispeed generate` writes)
#      REQUESTS=2000 CHILDREN_REQUESTS=400 (timed requests per pass and endpoint)
#      CONCURRENCY=1 (keep-alive connections issuing requests)
#      RANDOM_PROVINCES=5 RANDOM_WARDS=40 (besides nation and provinces 01 79 48)
#      GOAL_P99_MS=50 (the p99 both endpoints must stay under at the largest size)
#      QUERY_BENCH=path (prebuilt example binary; default: built with cargo
#        build --release -p ispeed-collector --example query_bench if missing)
#
# For each size: generate the month directly into a store (reused when the
# directory already holds that exact generation), start `ispeed serve` on
# it, and run the query_bench example, which times GET /api/v1/stats
# (nation, provinces, random wards) and GET /api/v1/stats/children (nation,
# provinces) over keep-alive connections, then answers the same questions
# exactly from the raw rows (Store::counted_values + sort), prints the ratio
# exact/rollup, and checks every API median against the exact one (≤ 1 %).
# Exits non-zero if a request fails, a check fails, or p99 ≥ GOAL_P99_MS at
# the largest size.
#
# With --store postgres://..., each size lives in its own schema
# (bench_q_<samples>_s<seed>_m<month>, reused like the directories; drop it
# with psql when done), `serve` runs with --store, and the exact reference
# is PostgreSQL itself: per question one SQL statement over the raw rows
# with percentile_cont (and percentile_disc, nearest rank, for the
# cross-check), timed alone in the first pass.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

STORE=
SIZES=()
while (($#)); do
    case $1 in
        -h | --help) sed -n '2,39p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --store) STORE=${2:?--store needs a URL}; shift 2 ;;
        *) SIZES+=("$1"); shift ;;
    esac
done
PG=
if [[ -n $STORE ]]; then
    [[ $STORE == postgres://* || $STORE == postgresql://* ]] || die "--store must be postgres://..."
    [[ $STORE != *'?'* ]] || die "give --store without query parameters (each size gets its own schema)"
    command -v psql >/dev/null || die "--store postgres needs psql"
    PG=1
fi

command -v python3 >/dev/null || die "needs python3"
resolve_ispeed

((${#SIZES[@]})) || SIZES=(1000000 10000000)
BENCH_DATA=${BENCH_DATA:-/work/bench-data}
MONTH=${MONTH:-2026-10}
SEED=${SEED:-1}
REQUESTS=${REQUESTS:-2000}
CHILDREN_REQUESTS=${CHILDREN_REQUESTS:-400}
CONCURRENCY=${CONCURRENCY:-1}
RANDOM_PROVINCES=${RANDOM_PROVINCES:-5}
RANDOM_WARDS=${RANDOM_WARDS:-40}
GOAL_P99_MS=${GOAL_P99_MS:-50}

QUERY_BENCH=${QUERY_BENCH:-$REPO_ROOT/target/release/examples/query_bench}
if [[ ! -x $QUERY_BENCH ]]; then
    log "building the query_bench example (cargo build --release -p ispeed-collector --example query_bench)"
    (cd "$REPO_ROOT" && cargo build --release -p ispeed-collector --example query_bench) >&2
fi
[[ -x $QUERY_BENCH ]] || die "no query_bench binary at $QUERY_BENCH"

# ensure_data SAMPLES: sets DATA_DIR to a store holding exactly that
# generation; generates it if needed, recording how long it took.
ensure_data() {
    local n=$1
    DATA_DIR="$BENCH_DATA/query-m$MONTH-n$n-s$SEED"
    STORE_ARGS=()
    if [[ -n $PG ]]; then
        DATA_DIR="$BENCH_DATA/query-pg-m$MONTH-n$n-s$SEED"
        SCHEMA="bench_q_${n}_s${SEED}_m${MONTH//-/}"
        STORE_URL="$STORE?schema=$SCHEMA"
        STORE_ARGS=(--store "$STORE_URL")
        if [[ -s $DATA_DIR/generate.json ]] &&
            [[ $(psql "$STORE" -Atc "SELECT count(*) FROM $SCHEMA.result_ids" 2>/dev/null) == "$n" ]]; then
            log "reusing schema $SCHEMA (generated before: $(tr -d '\n' <"$DATA_DIR/generate.json"))"
            # What `ispeed generate` does at its end (a schema written by
            # an older build lacks it; quick when already done): planner
            # statistics and a vacuum, as after any bulk load.
            local t0=$SECONDS tables
            tables=$(psql "$STORE" -Atc "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ')
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = '$SCHEMA' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")
            psql "$STORE" -qc "VACUUM (ANALYZE) $tables" >/dev/null
            log "vacuumed and analyzed $SCHEMA in $((SECONDS - t0)) s"
            return 0
        fi
        psql "$STORE" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null
    elif [[ -s $DATA_DIR/generate.json && -f $DATA_DIR/ispeed.sqlite3 ]]; then
        log "reusing $DATA_DIR (generated before: $(tr -d '\n' <"$DATA_DIR/generate.json"))"
        return 0
    fi
    rm -rf "$DATA_DIR"
    mkdir -p "$DATA_DIR"
    log "generating $n samples for $MONTH (seed $SEED) into $DATA_DIR"
    local t0=$SECONDS
    run_fg "$ISPEED" generate --month "$MONTH" --samples "$n" --seed "$SEED" --data "$DATA_DIR" "${STORE_ARGS[@]}" \
        >"$DATA_DIR/generate.json.tmp" 2>"$DATA_DIR/generate.log" ||
        { show_log "$DATA_DIR/generate.log"; die "generate failed"; }
    mv "$DATA_DIR/generate.json.tmp" "$DATA_DIR/generate.json"
    log "generated $n samples in $((SECONDS - t0)) s: $(tr -d '\n' <"$DATA_DIR/generate.json")"
}

# start_serve DATA PORT: `ispeed serve` without a test point; sets SERVE_PID, URL.
start_serve() {
    local data=$1 port=$2 slog="$WORK/serve-$(basename "$1").log"
    URL="http://127.0.0.1:$port"
    bg_start "$slog" "$ISPEED" serve --data "$data" "${STORE_ARGS[@]}" --listen "127.0.0.1:$port" --no-test-point
    SERVE_PID=$BG_PID
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        kill -0 "$SERVE_PID" 2>/dev/null || { show_log "$slog"; die "ispeed serve exited"; }
        py healthz "$URL/api/v1/isps" 1 2>/dev/null && return 0
    done
    show_log "$slog"
    die "ispeed serve on port $port not ready after 60 s"
}

TSV="$WORK/results.tsv"
: >"$TSV"
GEN_NOTE=()
log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); scratch $WORK"
for n in "${SIZES[@]}"; do
    ensure_data "$n"
    GEN_NOTE+=("$n in $(fmt "$(py jget "$DATA_DIR/generate.json" seconds)" 0) s ($(py jget "$DATA_DIR/generate.json" counted) counted)")
    port=$(py freeport)
    start_serve "$DATA_DIR" "$port"
    if [[ -n $PG ]]; then
        log "ispeed serve pid $SERVE_PID on $URL over schema $SCHEMA ($(psql "$STORE" -Atc "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = '$SCHEMA' AND c.relkind IN ('r', 'm')"))"
    else
        log "ispeed serve pid $SERVE_PID on $URL over $DATA_DIR ($(du -sh "$DATA_DIR" | cut -f1))"
    fi
    for run in $(seq "$RUNS"); do
        out="$WORK/n$n-run$run.json"
        extra=()
        # The exact reference (a full scan of the month) runs in the first pass only.
        if ((run == 1)) && [[ -n $PG ]]; then
            extra=(--exact-source postgres --store "$STORE_URL")
        elif ((run == 1)); then
            extra=(--exact-source scan)
        else
            extra=(--skip-exact)
        fi
        log "size $n, pass $run/$RUNS (load average $(cut -d' ' -f1 /proc/loadavg))"
        rc=0
        run_fg "$QUERY_BENCH" --url "$URL" --data "$DATA_DIR" --period "$MONTH" \
            --requests "$REQUESTS" --children-requests "$CHILDREN_REQUESTS" \
            --concurrency "$CONCURRENCY" --random-provinces "$RANDOM_PROVINCES" \
            --random-wards "$RANDOM_WARDS" "${extra[@]}" >"$out" 2>"$out.err" || rc=$?
        sed 's/^/    /' "$out.err" >&2
        ((rc == 0)) || die "query_bench failed (exit $rc) for size $n pass $run"
        printf '%s\t%s\t%s\n' "$n" "$run" "$(tr -d '\n' <"$out")" >>"$TSV"
    done
    kill_pid "$SERVE_PID"
    bg_wait "$SERVE_PID" 2>/dev/null || true
done

python3 - "$TSV" "$RUNS" "$GOAL_P99_MS" "$(nproc)" "${GEN_NOTE[@]}" <<'PY'
import collections, json, math, statistics, sys
tsv, runs, goal, cores, gen = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5:]
by = collections.defaultdict(list)
for line in open(tsv):
    n, run, doc = line.rstrip("\n").split("\t", 2)
    by[int(n)].append(json.loads(doc))
med = lambda xs: statistics.median(xs) if xs else math.nan
fmt = lambda v, d=1: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"
print()
print(f"statistics latency, medians of {runs} passes per size ({cores} cores shared); generation: {'; '.join(gen)}")
print(f"{'samples':>10} {'stats p50':>10} {'stats p99':>10} {'child p50':>10} {'child p99':>10}"
      f" {'exact stats':>12} {'exact child':>12} {'ratio s':>9} {'ratio c':>9} {'max rel err':>12}")
ok, summary = True, []
largest = max(by)
for n in sorted(by):
    docs = by[n]
    g = lambda k: med([d[k] for d in docs if k in d])
    ex = next((d for d in docs if "exact_stats_ms" in d), {})
    s50, s99, c50, c99 = g("stats_p50_ms"), g("stats_p99_ms"), g("children_p50_ms"), g("children_p99_ms")
    rs = ex.get("exact_stats_ms", math.nan) / s50
    rc = ex.get("exact_children_ms", math.nan) / c50
    err = ex.get("max_rel_err", math.nan)
    print(f"{n:>10} {fmt(s50,2):>10} {fmt(s99,2):>10} {fmt(c50,2):>10} {fmt(c99,2):>10}"
          f" {fmt(ex.get('exact_stats_ms'),0):>12} {fmt(ex.get('exact_children_ms'),0):>12}"
          f" {fmt(rs,0)+'x':>9} {fmt(rc,0)+'x':>9} {fmt(err*100,3)+' %':>12}")
    slow = ", ".join(f"{s['q']} {s['p99_ms']:.1f}" for s in docs[0].get("slowest", [])[:3])
    print(f"{'':>10} slowest questions (p99 ms, first pass): {slow}")
    if ex and ex.get('exact_source') == 'postgres':
        print(f"{'':>10} exact (PostgreSQL percentile_cont over the raw rows, one statement per question, timed alone); "
              f"{ex['medians_compared']} medians cross-checked, n mismatches {ex['n_mismatch']}")
    elif ex:
        print(f"{'':>10} exact ({ex.get('exact_source', '?')}): {ex['exact_rows']} counted rows read in {ex['exact_scan_s']:.1f} s; "
              f"{ex['medians_compared']} medians cross-checked, n mismatches {ex['n_mismatch']}")
    if n == largest and not (s99 < goal and c99 < goal):
        ok = False
    summary.append(f"{n // 1000000 if n % 1000000 == 0 else n / 1e6:g} M: stats p50/p99 {fmt(s50,2)}/{fmt(s99,2)} ms, "
                   f"children {fmt(c50,2)}/{fmt(c99,2)} ms, exact/rollup {fmt(rs,0)}x/{fmt(rc,0)}x, "
                   f"max median error {fmt(err*100,3)} %")
print()
verdict = "PASS" if ok else f"FAIL (p99 >= {goal:g} ms at {largest})"
print(f"RESULT: query {'; '.join(summary)}; goal p99 < {goal:g} ms at largest size: {verdict}")
sys.exit(0 if ok else 1)
PY
