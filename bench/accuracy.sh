#!/usr/bin/env bash
# Accuracy of ispeed against iperf3 on a rate-limited link.
#
#   bench/accuracy.sh [RATES...]        throughput accuracy at each rate (Mbit/s), default 10 50 200
#   bench/accuracy.sh --bufferbloat     loaded-latency accuracy on a 20 Mbit/s link with 500 ms of buffer
#
# Env: ISPEED=path (default target/release/ispeed, relative to the repo root)
#      RUNS=3 (repetitions; medians are reported)
#      ISPEED_SKIP=1 (measure only the iperf3/tcp-connect reference side)
#      KEEP_LOGS=1 (keep the scratch directory with every JSON and log)
#      BB_CC=reno (congestion control inside the namespaces in --bufferbloat mode)
#
# Two network namespaces joined by one veth pair form a private "link" whose
# addresses (10.200.X.0/24, fd00:200::/64) exist only inside those namespaces,
# so nothing here touches the host's network. Both veth ends are shaped with
# tbf, giving a symmetric bottleneck whose queue sits where a real access
# link's does: in front of the slow hop, on the sender's side.
#
# The reference is iperf3's receiver-side goodput (end.sum_received): the
# payload that actually arrived, which is what ispeed claims to measure.
# Needs root (namespaces, tc), iproute2, iperf3, python3.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

MODE=accuracy
RATES=()
for arg in "$@"; do
    case $arg in
        --bufferbloat) MODE=bufferbloat ;;
        -h | --help) usage 0 ;;
        -*) usage 2 ;;
        *) [[ $arg =~ ^[0-9]+$ ]] || die "rate must be an integer Mbit/s: $arg"; RATES+=("$arg") ;;
    esac
done
[[ ${#RATES[@]} -gt 0 ]] || RATES=(10 50 200)

[[ $EUID -eq 0 ]] || die "needs root (network namespaces and tc)"
{ command -v ip && command -v tc; } >/dev/null || die "needs iproute2 (ip, tc)"
command -v python3 >/dev/null || die "needs python3"
require_iperf3
SKIP=${ISPEED_SKIP:-0}
[[ $SKIP == 1 ]] || resolve_ispeed

# Names carry our PID so concurrent runs (or a leftover from a killed run)
# never collide. The addresses are private to our namespaces, so X only has
# to be a valid octet.
SRV=isp-srv-$$
CLI=isp-cli-$$
X=$(($$ % 254 + 1))
SRV4=10.200.$X.1
CLI4=10.200.$X.2
SRV6=fd00:200::1
CLI6=fd00:200::2
SIF=isp-s # server-side veth end (egress = download direction)
CIF=isp-c # client-side veth end (egress = upload direction)
ISPEED_PORT=8080
IPERF_PORT=5201
PING_PORT=9009
ISPEED_URL="http://$SRV4:$ISPEED_PORT"
TSV="$WORK/results.tsv"
: >"$TSV"

# Arrays, not functions: bg_start/run_fg need the PID of the real program.
IN_SRV=(ip netns exec "$SRV")
IN_CLI=(ip netns exec "$CLI")

setup_netns() {
    # Registered before creation so a failure half-way still removes them.
    # Anything still running inside our namespaces was started by us.
    CLEANUP_CMDS+=("ip netns pids $SRV | xargs -r kill -9; ip netns del $SRV")
    CLEANUP_CMDS+=("ip netns pids $CLI | xargs -r kill -9; ip netns del $CLI")
    ip netns add "$SRV"
    ip netns add "$CLI"
    # Created directly inside the namespaces: the veth never appears on the host.
    ip -n "$SRV" link add "$SIF" type veth peer name "$CIF" netns "$CLI"
    ip -n "$SRV" addr add "$SRV4/24" dev "$SIF"
    ip -n "$CLI" addr add "$CLI4/24" dev "$CIF"
    # nodad: otherwise the addresses stay "tentative" (unbindable) for ~2 s.
    ip -n "$SRV" -6 addr add "$SRV6/64" dev "$SIF" nodad
    ip -n "$CLI" -6 addr add "$CLI6/64" dev "$CIF" nodad
    local ns
    for ns in "$SRV" "$CLI"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$SRV" link set "$SIF" up
    ip -n "$CLI" link set "$CIF" up
}

# Congestion control is a per-namespace sysctl; a new namespace inherits the
# host's (bbr on this machine), which keeps queues short and would hide the
# bloat the --bufferbloat mode is meant to create. A non-initial namespace may
# only pick an algorithm from net.ipv4.tcp_allowed_congestion_control (cubic
# usually is not, and widening that list would change the host), so the
# default is reno: loss-based like cubic, it fills the buffer until tbf drops.
set_cc() {
    local ns
    for ns in "$SRV" "$CLI"; do
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_congestion_control="$1" ||
            die "cannot use congestion control '$1' in a namespace (allowed: $(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control))"
    done
}

# shape RATE_MBIT LATENCY: tbf on the egress of both veth ends.
# Burst: tbf needs the bucket to hold at least one MTU-sized packet, and at
# high rates enough tokens to cover timer/scheduling jitter, else the shaped
# rate falls short of the configured one. 4 ms worth of the rate
# (R*1e6/8/250 bytes) with a 15000-byte floor (10 full frames) satisfies
# both from 5 Mbit/s (15 kB) to 500 Mbit/s (250 kB); over a 10 s test a
# 4 ms burst can inflate the mean by at most 0.04%.
# LATENCY sets the queue length (limit = rate*latency + burst).
shape() {
    local rate=$1 latency=$2 burst
    burst=$((rate * 1000000 / 8 / 250))
    if ((burst < 15000)); then burst=15000; fi
    "${IN_SRV[@]}" tc qdisc replace dev "$SIF" root tbf rate "${rate}mbit" burst "$burst" latency "$latency"
    "${IN_CLI[@]}" tc qdisc replace dev "$CIF" root tbf rate "${rate}mbit" burst "$burst" latency "$latency"
    log "shaped both directions: tbf rate ${rate}mbit burst ${burst}B latency $latency"
}

start_servers() {
    bg_start "$WORK/iperf3-server.log" "${IN_SRV[@]}" iperf3 -s -p "$IPERF_PORT"
    # Target for the tcp-connect pinger: the RTT it measures is the kernel's
    # SYN/SYN-ACK exchange, identical for any listening port on the server
    # host, so a separate listener keeps it independent of ispeed (and
    # usable with ISPEED_SKIP=1).
    bg_start "$WORK/ping-listener.log" "${IN_SRV[@]}" python3 "$BENCH_PY" listen :: "$PING_PORT"
    "${IN_SRV[@]}" python3 "$BENCH_PY" waitlisten "$IPERF_PORT" 10 || { show_log "$WORK/iperf3-server.log"; die "iperf3 -s did not start"; }
    "${IN_SRV[@]}" python3 "$BENCH_PY" waitlisten "$PING_PORT" 10 || die "ping listener did not start"
    if [[ $SKIP != 1 ]]; then
        # --key: keep the generated signing key in the scratch dir, not the cwd.
        bg_start "$WORK/ispeed-server.log" "${IN_SRV[@]}" "$ISPEED" server \
            --listen "$SRV4:$ISPEED_PORT" --listen "[$SRV6]:$ISPEED_PORT" --key "$WORK/server.key"
        # Polled from the client namespace, so this also proves the path works.
        "${IN_CLI[@]}" python3 "$BENCH_PY" healthz "$ISPEED_URL/healthz" 20 ||
            { show_log "$WORK/ispeed-server.log"; die "ispeed server not healthy"; }
        "${IN_CLI[@]}" python3 "$BENCH_PY" healthz "http://[$SRV6]:$ISPEED_PORT/healthz" 5 ||
            log "WARNING: ispeed server not reachable over IPv6 at [$SRV6]:$ISPEED_PORT"
    fi
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TSV"; }

# iperf_run OUT ARGS... : runs iperf3 from the client namespace, JSON to OUT.
iperf_run() {
    local out=$1
    shift
    if ! run_fg "${IN_CLI[@]}" timeout 90 iperf3 -c "$SRV4" -p "$IPERF_PORT" "$@" -J >"$out" 2>&1; then
        log "WARNING: iperf3 $* failed: $(py jget "$out" error)"
        # A failed run can leave iperf3 -s busy for a moment.
        sleep 2
    fi
}

# ispeed_run OUT : runs `ispeed test --json` from the client.
ispeed_run() {
    local out=$1
    local rc=0
    run_fg "${IN_CLI[@]}" timeout 180 "$ISPEED" test --server "$ISPEED_URL" --json >"$out" 2>"$out.err" || rc=$?
    if ((rc != 0)); then
        log "WARNING: ispeed test failed (exit $rc); stderr:"
        tail -n 5 "$out.err" >&2 || true
    fi
}

# jfield OUT PATH: a field of ispeed's JSON; warns (once per field) if absent,
# listing the keys that are there, so a schema change is obvious.
jfield() {
    local v
    v=$(py jget "$1" "$2")
    if [[ $v == nan && ! -e "$WORK/.warned-$2" ]]; then
        : >"$WORK/.warned-$2"
        log "WARNING: field '$2' missing or null in ispeed JSON $1; top-level keys: $(py keys "$1")"
    fi
    echo "$v"
}

run_accuracy() {
    local rate run f
    for rate in "${RATES[@]}"; do
        shape "$rate" 50ms
        for run in $(seq "$RUNS"); do
            f="$WORK/r${rate}-run${run}"
            log "rate $rate Mbit/s, run $run/$RUNS: iperf3 download"
            iperf_run "$f-iperf-down.json" -t 10 -R
            record "$rate" "$run" iperf_down "$(iperf_mbps "$f-iperf-down.json")"
            log "rate $rate Mbit/s, run $run/$RUNS: iperf3 upload"
            iperf_run "$f-iperf-up.json" -t 10
            record "$rate" "$run" iperf_up "$(iperf_mbps "$f-iperf-up.json")"
            if [[ $SKIP != 1 ]]; then
                log "rate $rate Mbit/s, run $run/$RUNS: ispeed test"
                ispeed_run "$f-ispeed.json"
                record "$rate" "$run" ispeed_down "$(jfield "$f-ispeed.json" download_mbps)"
                record "$rate" "$run" ispeed_up "$(jfield "$f-ispeed.json" upload_mbps)"
                record "$rate" "$run" dur_down "$(jfield "$f-ispeed.json" duration_s.download)"
                record "$rate" "$run" dur_up "$(jfield "$f-ispeed.json" duration_s.upload)"
            fi
        done
    done

    python3 - "$TSV" "$RUNS" "$SKIP" <<'PY'
import collections, math, statistics, sys
tsv, runs, skip = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
vals = collections.defaultdict(list)
rates = []
for line in open(tsv):
    rate, _run, name, v = line.rstrip("\n").split("\t")
    if int(rate) not in rates:
        rates.append(int(rate))
    try:
        f = float(v)
    except ValueError:
        continue
    if not math.isnan(f):
        vals[(int(rate), name)].append(f)
med = lambda r, n: statistics.median(vals[(r, n)]) if vals[(r, n)] else math.nan
fmt = lambda v, d=1: "-" if math.isnan(v) else f"{v:.{d}f}"
def ratio(a, b):
    return a / b if not (math.isnan(a) or math.isnan(b) or b == 0) else math.nan

print()
print(f"ispeed vs iperf3 receiver goodput (Mbit/s, median of {runs} runs; tbf on both directions)")
hdr = ("rate", "iperf3 down", "iperf3 up", "ispeed down", "ispeed up",
       "ratio down", "ratio up", "dur down s", "dur up s")
print("  ".join(f"{h:>11}" for h in hdr))
worst, max_dur, eff = math.nan, math.nan, []
for r in rates:
    idn, iup, sdn, sup = med(r, "iperf_down"), med(r, "iperf_up"), med(r, "ispeed_down"), med(r, "ispeed_up")
    rdn, rup = ratio(sdn, idn), ratio(sup, iup)
    for x in (rdn, rup):
        if not math.isnan(x):
            worst = abs(1 - x) if math.isnan(worst) else max(worst, abs(1 - x))
    for d in vals[(r, "dur_down")] + vals[(r, "dur_up")]:
        max_dur = d if math.isnan(max_dur) else max(max_dur, d)
    eff += [ratio(idn, r), ratio(iup, r)]
    row = (str(r), fmt(idn), fmt(iup), fmt(sdn), fmt(sup), fmt(rdn, 3), fmt(rup, 3),
           fmt(med(r, "dur_down")), fmt(med(r, "dur_up")))
    print("  ".join(f"{c:>11}" for c in row))
print()
eff = [e for e in eff if not math.isnan(e)]
print("iperf3 goodput / shaped rate: " + (f"{min(eff):.3f} .. {max(eff):.3f}" if eff else "-"))
if skip:
    print("RESULT: ispeed skipped (ISPEED_SKIP=1); iperf3 goodput/shaped rate "
          + (f"{min(eff):.3f}..{max(eff):.3f}" if eff else "n/a"))
else:
    print(f"RESULT: worst |1-ratio| = {fmt(worst * 100, 1)}% ; max duration = {fmt(max_dur, 1)} s")
PY
}

# tcpping_bg OUT: start a tcp-connect pinger for the length of a loaded test.
LOAD_S=12
SKIP_S=2
tcpping_bg() {
    bg_start "$1" "${IN_CLI[@]}" python3 "$BENCH_PY" tcpping "$SRV4" "$PING_PORT" \
        --duration "$LOAD_S" --skip "$SKIP_S" --interval 0.1 --timeout 3
}

run_bufferbloat() {
    local run f pid
    shape 20 500ms
    for run in $(seq "$RUNS"); do
        f="$WORK/bb-run${run}"
        log "bufferbloat run $run/$RUNS: idle tcp-connect ping"
        run_fg "${IN_CLI[@]}" python3 "$BENCH_PY" tcpping "$SRV4" "$PING_PORT" --count 20 --interval 0.1 >"$f-idle.json"
        record 20 "$run" tcp_idle "$(py jget "$f-idle.json" median_ms)"

        log "bufferbloat run $run/$RUNS: iperf3 -P 8 -R (download load) + tcp-connect ping"
        tcpping_bg "$f-ping-down.json"
        pid=$BG_PID
        iperf_run "$f-iperf-down.json" -P 8 -t "$LOAD_S" -R
        bg_wait "$pid" || true
        record 20 "$run" iperf_down "$(iperf_mbps "$f-iperf-down.json")"
        record 20 "$run" tcp_load_down "$(py jget "$f-ping-down.json" median_ms)"
        record 20 "$run" tcp_fail_down "$(py jget "$f-ping-down.json" failures)"

        log "bufferbloat run $run/$RUNS: iperf3 -P 8 (upload load) + tcp-connect ping"
        tcpping_bg "$f-ping-up.json"
        pid=$BG_PID
        iperf_run "$f-iperf-up.json" -P 8 -t "$LOAD_S"
        bg_wait "$pid" || true
        record 20 "$run" iperf_up "$(iperf_mbps "$f-iperf-up.json")"
        record 20 "$run" tcp_load_up "$(py jget "$f-ping-up.json" median_ms)"
        record 20 "$run" tcp_fail_up "$(py jget "$f-ping-up.json" failures)"

        if [[ $SKIP != 1 ]]; then
            log "bufferbloat run $run/$RUNS: ispeed test"
            ispeed_run "$f-ispeed.json"
            record 20 "$run" ispeed_idle "$(jfield "$f-ispeed.json" latency_ms)"
            record 20 "$run" ispeed_load_down "$(jfield "$f-ispeed.json" loaded_latency_ms.download)"
            record 20 "$run" ispeed_load_up "$(jfield "$f-ispeed.json" loaded_latency_ms.upload)"
            record 20 "$run" ispeed_down "$(jfield "$f-ispeed.json" download_mbps)"
            record 20 "$run" ispeed_up "$(jfield "$f-ispeed.json" upload_mbps)"
        fi
    done

    python3 - "$TSV" "$RUNS" "$SKIP" "$BB_CC" <<'PY'
import collections, math, statistics, sys
tsv, runs, skip, cc = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
vals = collections.defaultdict(list)
for line in open(tsv):
    _rate, _run, name, v = line.rstrip("\n").split("\t")
    try:
        f = float(v)
    except ValueError:
        continue
    if not math.isnan(f):
        vals[name].append(f)
med = lambda n: statistics.median(vals[n]) if vals[n] else math.nan
fmt = lambda v, d=2: "-" if math.isnan(v) else f"{v:.{d}f}"
ratio = lambda a, b: a / b if not (math.isnan(a) or math.isnan(b) or b == 0) else math.nan

print()
print(f"bufferbloat: tbf 20 Mbit/s, latency 500ms, both directions; congestion control {cc}; "
      f"medians of {runs} runs (ms)")
print(f"{'':<26}{'idle':>10}{'loaded down':>14}{'loaded up':>12}{'down/idle':>12}{'up/idle':>10}")
t_idle, t_dn, t_up = med("tcp_idle"), med("tcp_load_down"), med("tcp_load_up")
s_idle, s_dn, s_up = med("ispeed_idle"), med("ispeed_load_down"), med("ispeed_load_up")
rows = [("tcp-connect ping", t_idle, t_dn, t_up), ("ispeed", s_idle, s_dn, s_up)]
for name, i, d, u in rows:
    print(f"{name:<26}{fmt(i, 3):>10}{fmt(d):>14}{fmt(u):>12}"
          f"{fmt(ratio(d, i), 0):>11}x{fmt(ratio(u, i), 0):>9}x")
print(f"{'ispeed / tcp-connect':<26}{fmt(ratio(s_idle, t_idle)):>10}"
      f"{fmt(ratio(s_dn, t_dn)):>14}{fmt(ratio(s_up, t_up)):>12}")
print(f"tcp-connect probes lost under load (median per run): down {fmt(med('tcp_fail_down'), 0)}, "
      f"up {fmt(med('tcp_fail_up'), 0)}")
print(f"throughput under load (Mbit/s): iperf3 -P 8 down {fmt(med('iperf_down'), 1)} "
      f"up {fmt(med('iperf_up'), 1)}; ispeed down {fmt(med('ispeed_down'), 1)} up {fmt(med('ispeed_up'), 1)}")
print()

def verdict(ok):
    return "PASS" if ok else "FAIL"
bloat_t = [ratio(t_dn, t_idle), ratio(t_up, t_idle)]
if skip:
    ok = all(not math.isnan(x) and x >= 5 for x in bloat_t)
    print(f"RESULT: ispeed skipped (ISPEED_SKIP=1); tcp-connect loaded/idle down {fmt(bloat_t[0], 0)}x "
          f"up {fmt(bloat_t[1], 0)}x (need >=5: {verdict(ok)})")
else:
    bloat_s = [ratio(s_dn, s_idle), ratio(s_up, s_idle)]
    acc = [ratio(s_dn, t_dn), ratio(s_up, t_up)]
    ok_b = all(not math.isnan(x) and x >= 5 for x in bloat_t + bloat_s)
    ok_a = all(not math.isnan(x) and 0.8 <= x <= 1.2 for x in acc)
    print(f"RESULT: loaded/idle tcp-connect down {fmt(bloat_t[0], 0)}x up {fmt(bloat_t[1], 0)}x, "
          f"ispeed down {fmt(bloat_s[0], 0)}x up {fmt(bloat_s[1], 0)}x (need >=5: {verdict(ok_b)}); "
          f"ispeed/tcp-connect loaded down {fmt(acc[0])} up {fmt(acc[1])} (need 0.8-1.2: {verdict(ok_a)})")
PY
}

setup_netns
if [[ $MODE == bufferbloat ]]; then
    # Before the servers start, so their listening sockets use it too.
    BB_CC=${BB_CC:-reno}
    set_cc "$BB_CC"
fi
start_servers
log "namespaces $SRV ($SRV4, $SRV6) <-> $CLI ($CLI4, $CLI6); scratch $WORK"
if [[ $MODE == bufferbloat ]]; then
    run_bufferbloat
else
    run_accuracy
fi
