#!/usr/bin/env bash
# Durable ingest rate of the collector: group commit vs one transaction per result.
#
#   bench/ingest.sh                                   (embedded SQLite store)
#   bench/ingest.sh --store postgres://user@host/db   (PostgreSQL; needs psql)
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      RUNS=3 (repetitions of each configuration; medians are reported)
#      KEEP_LOGS=1 (keep the scratch directory with every JSON and log)
#      SAMPLES=100000 (results per group-commit run)
#      BASELINE_SAMPLES=20000 (results per baseline run: it is fsync-bound)
#      CONCURRENCY=64 (concurrent submitting clients)
#      LOADERS="keepalive generate" (which load generators to run, see below)
#      HEADLINE=keepalive (the loader whose numbers make the RESULT line)
#      MAX_BATCH=2048 (group-commit batch bound; the baseline uses 1)
#      MONTH=2026-10 SEED=1 (generator parameters; receipts are dated now)
#      GOAL=5000, or 20000 with --store (results/s the headline group-commit
#        median must reach)
#      INGEST_LOAD=path (prebuilt example; default: built with cargo build
#        --release -p ispeed-collector --example ingest_load if missing)
#      INSTANCES="1 2 4" (PostgreSQL only: collector instances sharing the
#        database in each group-commit configuration; the keepalive
#        loader spreads its connections over them)
#
# With --store postgres://..., every run gets a fresh schema (dropped
# afterwards), the baseline is one transaction per result on one instance,
# rows are counted with psql, and the database server's CPU is recorded
# too (it runs on the same machine). PostgreSQL commits durably
# (synchronous_commit on, the server's default): 201 means committed.
#
# Every run gets a fresh data directory and its own `ispeed serve
# --no-test-point`, whose config approves the synthetic test point and sets
# max_batch (MAX_BATCH for group commit, 1 for the baseline: one
# transaction and one WAL fsync per result). 201 means durable: the store
# runs WAL + synchronous=FULL and answers only after the commit.
# Loaders: `generate` is `ispeed generate --collector` (a new TCP connection
# per result, each receipt built and signed inside the timed loop);
# `keepalive` is crates/collector/examples/ingest_load.rs (every submission
# built before the clock starts, sent over CONCURRENCY keep-alive
# connections), which measures the collector rather than the client.
# Each run checks that every submission got 201 and that the store holds
# exactly the submitted number of rows (sqlite3, else the loader's count),
# and records the CPU seconds of the server and of the loader.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

STORE=
while (($#)); do
    case $1 in
        -h | --help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --store) STORE=${2:?--store needs a URL}; shift 2 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
PG=
if [[ -n $STORE ]]; then
    [[ $STORE == postgres://* || $STORE == postgresql://* ]] || die "--store must be postgres://..."
    [[ $STORE != *'?'* ]] || die "give --store without query parameters (each run makes its own schema)"
    command -v psql >/dev/null || die "--store postgres needs psql"
    psql "$STORE" -Atc 'SELECT 1' >/dev/null || die "cannot connect to $STORE"
    PG=1
fi

command -v python3 >/dev/null || die "needs python3"
resolve_ispeed

SAMPLES=${SAMPLES:-100000}
BASELINE_SAMPLES=${BASELINE_SAMPLES:-20000}
CONCURRENCY=${CONCURRENCY:-64}
if [[ -n $PG ]]; then LOADERS=${LOADERS:-keepalive}; else LOADERS=${LOADERS:-keepalive generate}; fi
INSTANCES=${INSTANCES:-1 2 4}
[[ -n $PG ]] || INSTANCES=1
HEADLINE=${HEADLINE:-keepalive}
MAX_BATCH=${MAX_BATCH:-2048}
MONTH=${MONTH:-2026-10}
SEED=${SEED:-1}
# The collector issue asks 5,000/s of the embedded store; the PostgreSQL
# issue asks 20,000/s of a deployment (several instances, one database).
if [[ -n $PG ]]; then GOAL=${GOAL:-20000}; else GOAL=${GOAL:-5000}; fi
[[ " $LOADERS " == *" $HEADLINE "* ]] || die "HEADLINE=$HEADLINE is not among LOADERS=$LOADERS"

if [[ " $LOADERS " == *" keepalive "* ]]; then
    INGEST_LOAD=${INGEST_LOAD:-$REPO_ROOT/target/release/examples/ingest_load}
    if [[ ! -x $INGEST_LOAD ]]; then
        log "building the ingest_load example (cargo build --release -p ispeed-collector --example ingest_load)"
        (cd "$REPO_ROOT" && cargo build --release -p ispeed-collector --example ingest_load) >&2
    fi
    [[ -x $INGEST_LOAD ]] || die "no ingest_load binary at $INGEST_LOAD"
fi
HAVE_SQLITE3=$(command -v sqlite3 >/dev/null && echo 1 || echo "")
[[ -n $HAVE_SQLITE3 ]] || log "NOTE: sqlite3 missing: row counts come from the loaders' created counts"

KEY=$("$ISPEED" generate --print-key --seed "$SEED" --month "$MONTH" --samples 1)
[[ -n $KEY ]] || die "ispeed generate --print-key printed nothing"

TSV="$WORK/results.tsv"
: >"$TSV"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TSV"; } # run config metric value

# postgres_cputicks: CPU seconds of every PostgreSQL server process.
postgres_cputicks() {
    local total=0 pid
    for pid in $(pgrep -x postgres || true); do
        total=$(awk -v a="$total" -v b="$(py cputicks "$pid" 2>/dev/null || echo 0)" 'BEGIN { print a + b }')
    done
    echo "$total"
}

# one_run RUN MODE(group|baseline) LOADER [INSTANCES]
one_run() {
    local run=$1 mode=$2 loader=$3 n=${4:-1} batch samples
    if [[ $mode == group ]]; then batch=$MAX_BATCH samples=$SAMPLES; else batch=1 samples=$BASELINE_SAMPLES; fi
    local tag="$mode-$loader" dir="$WORK/data-$mode-$loader-$run" cfg="$WORK/serve-$mode.toml"
    [[ -z $PG ]] || tag="$tag-x$n"
    local slog="$WORK/serve-$tag-$run.log" out="$WORK/load-$tag-$run.json"
    local schema="bench_ingest_$$_${run}_${mode}_${n}" store_args=()
    if [[ -n $PG ]]; then
        store_args=(--store "$STORE?schema=$schema")
        CLEANUP_CMDS+=("psql '$STORE' -qc 'DROP SCHEMA IF EXISTS $schema CASCADE'")
    fi
    cat >"$cfg" <<EOF
[collector]
max_batch = $batch
[[collector.test_points]]
id = "synthetic"
public_key = "$KEY"
url = "synthetic:"
line_rate_mbps = 10000
EOF
    local pids=() urls=() i
    for i in $(seq "$n"); do
        local port
        port=$(py freeport)
        local one="http://127.0.0.1:$port"
        bg_start "$slog.$i" "$ISPEED" serve --config "$cfg" --data "$dir-$i" "${store_args[@]}" \
            --listen "127.0.0.1:$port" --no-test-point
        local pid=$BG_PID deadline=$((SECONDS + 30))
        until py healthz "$one/api/v1/isps" 1 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)) || { show_log "$slog.$i"; die "ispeed serve did not start"; }
        done
        pids+=("$pid")
        urls+=("$one")
    done
    local url
    url=$(IFS=,; echo "${urls[*]}")
    local cpu0=0 cpu1=0 db0=0 db1=0 t0 t1 rc=0 p
    for p in "${pids[@]}"; do cpu0=$(awk -v a="$cpu0" -v b="$(py cputicks "$p")" 'BEGIN { print a + b }'); done
    [[ -z $PG ]] || db0=$(postgres_cputicks)
    t0=$(date +%s.%N)
    case $loader in
        keepalive)
            run_fg "$INGEST_LOAD" --url "$url" --month "$MONTH" --samples "$samples" --seed "$SEED" \
                --concurrency "$CONCURRENCY" >"$out" 2>"$out.err" || rc=$?
            ;;
        generate)
            # The CLI reports no CPU: run it under bash's `times` in a child shell.
            run_fg bash -c '"$@" >"'"$out"'" 2>"'"$out.err"'"; rc=$?; times >"'"$out.times"'"; exit $rc' _ \
                "$ISPEED" generate --month "$MONTH" --samples "$samples" --seed "$SEED" \
                --collector "${urls[0]}" --concurrency "$CONCURRENCY" || rc=$?
            ;;
    esac
    t1=$(date +%s.%N)
    for p in "${pids[@]}"; do cpu1=$(awk -v a="$cpu1" -v b="$(py cputicks "$p")" 'BEGIN { print a + b }'); done
    [[ -z $PG ]] || db1=$(postgres_cputicks)
    local created failed rows wall
    created=$(py jget "$out" created)
    failed=$(py jget "$out" failed)
    if [[ -n $PG ]]; then
        rows=$(psql "$STORE" -Atc "SELECT count(*) FROM $schema.results" 2>/dev/null || echo nan)
    elif [[ -n $HAVE_SQLITE3 ]]; then
        rows=$(sqlite3 "file:$dir-1/ispeed.sqlite3?mode=ro" 'SELECT count(*) FROM results' 2>/dev/null || echo nan)
    else
        rows=$created
    fi
    for p in "${pids[@]}"; do
        kill_pid "$p"
        bg_wait "$p" 2>/dev/null || true
    done
    [[ -z $PG ]] || psql "$STORE" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null || true
    # CPU per wall second over the timed phase the loader reports (the
    # keepalive loader builds its submissions first; the server idles then).
    wall=$(py jget "$out" seconds)
    [[ $wall != nan ]] || wall=$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')
    local rate server_cpu client_cpu
    rate=$(py jget "$out" results_per_s)
    server_cpu=$(awk -v a="$cpu1" -v b="$cpu0" 'BEGIN { print a - b }')
    if [[ $loader == keepalive ]]; then
        client_cpu=$(py jget "$out" client_cpu_s)
    else
        # `times` prints the shell's then its children's user/sys: take the children's line.
        client_cpu=$(awk 'NR == 2 { n = split($0, f, " "); s = 0
            for (i = 1; i <= n; i++) { split(f[i], p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
            print s }' "$out.times" 2>/dev/null || echo nan)
    fi
    local ok=1
    if ((rc != 0)) || [[ $created != "$samples" || $failed != 0 || $rows != "$samples" ]]; then
        ok=0
        log "FAILED: $tag run $run: exit $rc, created $created, failed $failed, rows in store $rows (expected $samples)"
        tail -n 5 "$out.err" >&2 || true
    fi
    record "$run" "$tag" rate "$rate"
    record "$run" "$tag" ok "$ok"
    record "$run" "$tag" server_cpu_per_s "$(div "$server_cpu" "$wall")"
    record "$run" "$tag" client_cpu_per_s "$(div "$client_cpu" "$wall")"
    record "$run" "$tag" server_cpu_us_per_result "$(div "$(awk -v c="$server_cpu" 'BEGIN { print c * 1e6 }')" "$samples")"
    record "$run" "$tag" client_cpu_us_per_result "$(div "$(awk -v c="$client_cpu" 'BEGIN { print c * 1e6 }')" "$samples")"
    record "$run" "$tag" p99_ms "$(py jget "$out" latency_ms_p99)"
    record "$run" "$tag" db_cpu_per_s "$(div "$(awk -v a="$db1" -v b="$db0" 'BEGIN { print a - b }')" "$wall")"
    log "  $tag run $run: $(fmt "$rate" 0) results/s ($created created, $failed failed, $rows rows), server CPU $(fmt "$server_cpu" 1) s, loader CPU $(fmt "$client_cpu" 1) s over $(fmt "$wall" 1) s wall"
    rm -rf "$dir"-*
}

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); scratch $WORK"
log "group commit: $SAMPLES results (max_batch $MAX_BATCH); baseline: $BASELINE_SAMPLES results (max_batch 1); $CONCURRENCY concurrent clients; loaders: $LOADERS"
[[ -z $PG ]] || log "store: PostgreSQL at $STORE ($(psql "$STORE" -Atc 'SHOW server_version'), synchronous_commit $(psql "$STORE" -Atc 'SHOW synchronous_commit'), fsync $(psql "$STORE" -Atc 'SHOW fsync')); instances: $INSTANCES"
for run in $(seq "$RUNS"); do
    for loader in $LOADERS; do
        for n in $INSTANCES; do
            log "run $run/$RUNS, loader $loader: group commit, $n instance(s) (load average $(cut -d' ' -f1 /proc/loadavg))"
            one_run "$run" group "$loader" "$n"
        done
    done
    log "run $run/$RUNS, loader $HEADLINE: baseline, one transaction per result"
    one_run "$run" baseline "$HEADLINE" 1
done

python3 - "$TSV" "$RUNS" "$HEADLINE" "$GOAL" "$CONCURRENCY" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "${PG:+postgres}" <<'PY'
import collections, math, statistics, sys
tsv, runs, headline, goal, conc, cores, load, store = sys.argv[1:9]
store = store or "sqlite"
goal = float(goal)
vals = collections.defaultdict(list)
for line in open(tsv):
    _run, tag, metric, v = line.rstrip("\n").split("\t")
    try:
        f = float(v)
    except ValueError:
        f = math.nan
    vals[(tag, metric)].append(f)
def med(tag, metric):
    xs = [x for x in vals[(tag, metric)] if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan
fmt = lambda v, d=0: "-" if math.isnan(v) else f"{v:,.{d}f}"
tags = sorted({t for t, _ in vals}, key=lambda t: (t.startswith("baseline"), t))
print()
print(f"durable ingest over HTTP into {store}, {conc} concurrent clients, medians of {runs} runs ({cores} cores, load average now {load})")
db = store == "postgres"
print(f"{'configuration':<28}{'results/s':>11}{'all ok':>8}{'server CPU':>12}{'loader CPU':>12}" + (f"{'DB CPU':>9}" if db else "") + f"{'server µs':>11}{'loader µs':>11}{'p99 ms':>9}")
print(f"{'':<28}{'':>11}{'':>8}{'(cores)':>12}{'(cores)':>12}" + (f"{'(cores)':>9}" if db else "") + f"{'/result':>11}{'/result':>11}{'':>9}")
for t in tags:
    ok = vals[(t, "ok")]
    print(f"{t:<28}{fmt(med(t, 'rate')):>11}{f'{int(sum(ok))}/{len(ok)}':>8}"
          f"{fmt(med(t, 'server_cpu_per_s'), 2):>12}{fmt(med(t, 'client_cpu_per_s'), 2):>12}"
          + (f"{fmt(med(t, 'db_cpu_per_s'), 2):>9}" if db else "") +
          f"{fmt(med(t, 'server_cpu_us_per_result')):>11}{fmt(med(t, 'client_cpu_us_per_result')):>11}"
          f"{fmt(med(t, 'p99_ms'), 1):>9}")
group_tags = [t for t in tags if t == f"group-{headline}" or t.startswith(f"group-{headline}-x")]
best = max(group_tags, key=lambda t: med(t, "rate") if not math.isnan(med(t, "rate")) else -1)
g = med(best, "rate")
b = med(f"baseline-{headline}" + ("-x1" if db else ""), "rate")
ratio = g / b if b and not math.isnan(b) and not math.isnan(g) else math.nan
all_ok = all(x == 1 for (t, m), xs in vals.items() if m == "ok" for x in xs)
others = [t for t in tags if t.startswith("group-") and t != best]
extra = "".join(f"; {t[6:]}: {fmt(med(t, 'rate'))} results/s" for t in others)
print()
verdict = "PASS" if all_ok and g >= goal else ("FAIL (a run lost or refused results)" if not all_ok else f"FAIL (< {goal:,.0f})")
print(f"RESULT: ingest into {store} {fmt(g)} results/s ({best[6:]}, group commit) vs {fmt(b)} results/s (one transaction per result) = "
      f"{fmt(ratio, 1)}× [{headline} loader{extra}; goal ≥ {goal:,.0f}: {verdict}]")
sys.exit(0 if all_ok and g >= goal else 1)
PY
