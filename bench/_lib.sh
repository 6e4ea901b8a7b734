# shellcheck shell=bash
# Shared plumbing for bench/*.sh: binary lookup, background-process
# bookkeeping and cleanup. Sourced, not executed.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCH_PY="$BENCH_DIR/_bench.py"
RUNS=${RUNS:-3}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
py() { python3 "$BENCH_PY" "$@"; }

# Scratch directory for logs and JSON; kept when the script fails so the
# server/iperf3 logs can be read afterwards.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ispeed-bench.XXXXXX")

# The original stdout/stderr: a signal can arrive while a function runs with
# its output redirected to a result file (run_fg CMD >out.json), and the
# cleanup's messages belong on the terminal, not in that file.
exec {BENCH_STDOUT}>&1 {BENCH_STDERR}>&2

# PIDs of every background process this script started, killed on exit.
BG_PIDS=()
# Extra cleanup commands (e.g. netns deletion), run after the kills.
CLEANUP_CMDS=()

# Every long-running command goes through bg_start/run_fg, for two reasons:
# bash runs a trap only after the foreground command returns (an INT/TERM
# would wait for a whole 10 s iperf3 run), whereas `wait` returns at once;
# and the cleanup needs each PID. Commands must be external programs, not
# shell functions, so that the PID is the program itself and not a subshell.
bg_start() { # bg_start LOGFILE CMD... ; sets BG_PID
    "${@:2}" >"$1" 2>&1 &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

bg_wait() { # bg_wait PID: wait for it, then forget it (its PID may be reused)
    local pid=$1 rc=0 p keep=()
    wait "$pid" || rc=$?
    for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    BG_PIDS=("${keep[@]+"${keep[@]}"}")
    return "$rc"
}

run_fg() { # run_fg CMD... : like running CMD in the foreground, but interruptible
    "$@" &
    local pid=$!
    BG_PIDS+=("$pid")
    bg_wait "$pid"
}

kill_pid() { # TERM, give it 6 s to exit cleanly (ispeed server's shutdown grace is 5 s), then KILL
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    exec 1>&"$BENCH_STDOUT" 2>&"$BENCH_STDERR"
    local pid cmd
    for pid in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do kill_pid "$pid"; done
    for cmd in "${CLEANUP_CMDS[@]+"${CLEANUP_CMDS[@]}"}"; do eval "$cmd" >/dev/null 2>&1; done
    if [[ $rc -eq 0 && -z ${KEEP_LOGS:-} ]]; then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK"
    fi
    exit "$rc"
}
trap _cleanup EXIT
# INT/TERM become a normal exit so the EXIT trap does the cleanup exactly once.
trap 'exit 130' INT
trap 'exit 143' TERM

# Resolve $ISPEED (env override, relative paths are relative to the repo
# root) and build the default binary only if it is missing.
resolve_ispeed() {
    local default=target/release/ispeed
    ISPEED=${ISPEED:-$default}
    [[ $ISPEED == /* ]] || ISPEED="$REPO_ROOT/$ISPEED"
    if [[ ! -x $ISPEED ]]; then
        [[ $ISPEED == "$REPO_ROOT/$default" ]] || die "ISPEED=$ISPEED is not an executable"
        log "building ispeed (cargo build --release -p ispeed)"
        (cd "$REPO_ROOT" && cargo build --release -p ispeed) >&2
    fi
    [[ -x $ISPEED ]] || die "no ispeed binary at $ISPEED"
}

require_iperf3() {
    if ! command -v iperf3 >/dev/null; then
        log "iperf3 missing, installing it with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y iperf3 >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y iperf3 >&2; } ||
            die "cannot install iperf3"
    fi
}

# Print the last lines of a log, for post-mortems on failures.
show_log() { log "--- tail of $1"; tail -n "${2:-20}" "$1" >&2 || true; }

# fmt VALUE [DECIMALS]: numbers rounded, anything else (nan, empty) as "-".
fmt() {
    awk -v v="$1" -v d="${2:-1}" 'BEGIN {
        if (v ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/) printf "%.*f", d, v; else printf "-" }'
}
# div A B: A/B, or nan when either is missing or B is zero.
div() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ && b ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ && b+0 != 0)
            printf "%.6g", a/b; else printf "nan" }'
}

# wait_healthz URL PID TIMEOUT_S: poll URL/healthz until it answers 200;
# fails early if PID (the server) has exited.
wait_healthz() {
    local url=$1 pid=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        py healthz "$url/healthz" 1 2>/dev/null && return 0
    done
    return 1
}

# start_loopback_server PORT [CFG]: runs `ispeed server` on 127.0.0.1:PORT and
# waits until it is healthy. Sets SERVER_PID, SERVER_URL and CONFIG_NOTE.
# If the server refuses CFG, it is started again without it and
# CONFIG_NOTE says so: the bench still runs, with the server's defaults.
start_loopback_server() {
    local port=$1 cfg=${2:-} slog="$WORK/ispeed-server.log"
    local args=(server --listen "127.0.0.1:$port" --key "$WORK/server.key")
    SERVER_URL="http://127.0.0.1:$port"
    CONFIG_NOTE=""
    if [[ -n $cfg ]]; then
        bg_start "$slog" "$ISPEED" "${args[@]}" --config "$cfg"
        SERVER_PID=$BG_PID
        wait_healthz "$SERVER_URL" "$SERVER_PID" 20 && return 0
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            show_log "$slog"
            die "ispeed server on port $port not healthy after 20 s"
        fi
        bg_wait "$SERVER_PID" || true
        CONFIG_NOTE="server refused config ($(tr '\n' ' ' <"$cfg")): $(tail -n 1 "$slog"); ran with its defaults"
        log "NOTE: $CONFIG_NOTE"
        slog="$WORK/ispeed-server-noconfig.log"
    fi
    bg_start "$slog" "$ISPEED" "${args[@]}"
    SERVER_PID=$BG_PID
    wait_healthz "$SERVER_URL" "$SERVER_PID" 20 || { show_log "$slog"; die "ispeed server on port $port not healthy"; }
}

# Two distinct free ports on 127.0.0.1 (PORT_A, PORT_B).
pick_ports() {
    PORT_A=$(py freeport)
    PORT_B=$(py freeport)
    while [[ $PORT_B == "$PORT_A" ]]; do PORT_B=$(py freeport); done
}

# iperf_mbps OUT: receiver-side goodput (end.sum_received, i.e. payload that
# arrived) of an iperf3 -J result in Mbit/s, or nan if the run failed.
iperf_mbps() {
    awk -v b="$(py jget "$1" end.sum_received.bits_per_second)" \
        'BEGIN { if (b ~ /^[0-9.]+([eE][-+]?[0-9]+)?$/) printf "%.3f", b/1e6; else printf "nan" }'
}
