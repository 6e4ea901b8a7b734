#!/usr/bin/env bash
# The test-point network across real network namespaces (spec/registry.md).
#
#   tests/network/registry.sh
#
# Builds one LAN in namespaces it creates: a switch (a bridge), a collector,
# three test points behind tbf-shaped links of different rates (20, 50 and
# 100 Mbit/s both ways) and one client. Then checks, with real `ispeed`
# processes and real heartbeats (every 10 s):
#   1. test points register as pending; locate offers nothing before approval;
#   2. after `ispeed admin test-points approve`, locate offers exactly the
#      approved, alive ones, and `ispeed test --collector` runs and stores a
#      result that records the test point's class;
#   3. a token-required test point refuses a missing, other-audience, reused
#      and (after 60 s) expired token;
#   4. the client fails over from a test point at capacity and from one
#      killed before the test, and says so;
#   5. a stopped test point disappears from locate within 30 s;
#   6. receipts from a revoked key are rejected (earlier results stay).
# Prints PASS/FAIL per check and exits non-zero on any FAIL.
#
# Env: ISPEED=path (default target/debug/ispeed, built if missing),
#      KEEP_LOGS=1 (keep the scratch directory).
# Needs root, iproute2 (ip, tc) and python3.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../../bench/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../bench/_lib.sh"

[[ $EUID -eq 0 ]] || die "needs root (network namespaces and tc)"
{ command -v ip && command -v tc && command -v python3; } >/dev/null || die "needs iproute2 and python3"
ISPEED=${ISPEED:-target/debug/ispeed}
[[ $ISPEED == /* ]] || ISPEED="$REPO_ROOT/$ISPEED"
if [[ ! -x $ISPEED ]]; then
    (cd "$REPO_ROOT" && cargo build -p ispeed) >&2
fi

FAILED=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILED=$((FAILED + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# ---- the network -----------------------------------------------------------
X=$(($$ % 200 + 20))
NET=10.203.$X
SW=isp-sw-$$
NS_COL=isp-col-$$
NS_CLI=isp-cli-$$
NS_TP=(isp-tp1-$$ isp-tp2-$$ isp-tp3-$$)
RATES=(20 50 100)
COL=$NET.1
CLI=$NET.100
TP_IP=($NET.11 $NET.12 $NET.13)
TP_ID=(tp-hn-vnix tp-dn-cloud tp-hcm-vnix)
# Where each test point says it is: Hà Nội, Đà Nẵng, TP HCM.
TP_LAT=(21.03 16.05 10.78)
TP_LON=(105.85 108.20 106.70)
TP_PROVINCE=(01 48 79)
TP_CLASS=(vnix cloud vnix)
TP_MAX=(50 50 1)

for ns in "$SW" "$NS_COL" "$NS_CLI" "${NS_TP[@]}"; do
    CLEANUP_CMDS+=("ip netns pids $ns | xargs -r kill -9; ip netns del $ns")
done
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
ip -n "$SW" link set lo up
attach() { # attach NS IP PORT: NS gets eth0 with IP, its peer PORT joins the bridge
    ip netns add "$1"
    ip -n "$SW" link add "$3" type veth peer name eth0 netns "$1"
    ip -n "$SW" link set "$3" master br0 up
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$1" link set lo up
}
attach "$NS_COL" "$COL" pcol
attach "$NS_CLI" "$CLI" pcli
for i in 0 1 2; do
    attach "${NS_TP[$i]}" "${TP_IP[$i]}" "ptp$i"
    rate=${RATES[$i]}
    burst=$((rate * 1000000 / 8 / 250))
    ((burst >= 15000)) || burst=15000
    # Download leaves the test point's eth0; upload leaves the bridge port towards it.
    ip netns exec "${NS_TP[$i]}" tc qdisc replace dev eth0 root tbf rate "${rate}mbit" burst "$burst" latency 50ms
    ip netns exec "$SW" tc qdisc replace dev "ptp$i" root tbf rate "${rate}mbit" burst "$burst" latency 50ms
done
log "LAN $NET.0/24 in namespaces; test points at ${RATES[*]} Mbit/s; scratch $WORK"

# ---- the collector and the test points ---------------------------------------
DATA=$WORK/collector
COLLECTOR=http://$COL:8080
bg_start "$WORK/collector.log" ip netns exec "$NS_COL" "$ISPEED" serve --no-test-point \
    --listen "$COL:8080" --data "$DATA"
COLLECTOR_PID=$BG_PID
IN_CLI=(ip netns exec "$NS_CLI")
TOKEN_FILE=$DATA/admin-token
admin() { ip netns exec "$NS_COL" "$ISPEED" admin --collector "$COLLECTOR" --token-file "$TOKEN_FILE" test-points "$@"; }
# http METHOD URL [BODY] [BEARER] [DEVICE] from the client namespace: prints "STATUS CODE-OR-EMPTY" and the body to $WORK/last.json
http() {
    "${IN_CLI[@]}" python3 - "$@" <<'PY'
import json, sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 and sys.argv[3] else None
req = urllib.request.Request(url, data=body, method=method, headers={"content-type": "application/json"})
if len(sys.argv) > 4 and sys.argv[4]:
    req.add_header("authorization", "Bearer " + sys.argv[4])
if len(sys.argv) > 5 and sys.argv[5]:
    req.add_header("x-ispeed-device", sys.argv[5])
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, text = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
try:
    code = json.loads(text).get("error", {}).get("code", "")
except Exception:
    code = ""
import os
open(os.environ.get("LAST", "/dev/null"), "w").write(text)
print(status, code)
PY
}
export LAST=$WORK/last.json
jq_py() { python3 -c "import json,sys; d=json.load(open('$LAST')); print($1)"; }

for _ in $(seq 100); do
    [[ -f $TOKEN_FILE ]] && [[ $(http GET "$COLLECTOR/api/v1/isps") == "200 "* ]] && break
    sleep 0.2
done
[[ -f $TOKEN_FILE ]] || { show_log "$WORK/collector.log"; die "collector did not start"; }

TP_PIDS=()
for i in 0 1 2; do
    cat >"$WORK/${TP_ID[$i]}.toml" <<EOF
test_point_id = "${TP_ID[$i]}"
listen = ["${TP_IP[$i]}:8080"]
key_file = "$WORK/${TP_ID[$i]}.key"
collector = "$COLLECTOR"
access = "token-required"
class = "${TP_CLASS[$i]}"
operator = "operator of ${TP_ID[$i]}"
province_code = "${TP_PROVINCE[$i]}"
lat = ${TP_LAT[$i]}
lon = ${TP_LON[$i]}
max_sessions = ${TP_MAX[$i]}
line_rate_mbps = ${RATES[$i]}
EOF
    bg_start "$WORK/${TP_ID[$i]}.log" ip netns exec "${NS_TP[$i]}" "$ISPEED" server --config "$WORK/${TP_ID[$i]}.toml"
    TP_PIDS+=("$BG_PID")
done

# ---- 1. registration ---------------------------------------------------------
registered() { admin list --json >"$LAST" && [[ $(jq_py "len(d['test_points'])") == "$1" ]]; }
for _ in $(seq 75); do registered 3 && break; sleep 0.2; done
check "three test points registered by heartbeat" registered 3
check "all three pending until approved" \
    test "$(jq_py "sorted({t['status'] for t in d['test_points']})")" = "['pending']"
check "locate offers nothing before approval (503 no_test_point_available)" \
    test "$(http GET "$COLLECTOR/api/v1/locate")" = "503 no_test_point_available"

# ---- 2. approval, locate, a test ---------------------------------------------
for id in "${TP_ID[@]}"; do admin approve "$id" >/dev/null; done
located_ids() { http GET "$COLLECTOR/api/v1/locate$1" >/dev/null; jq_py "' '.join(sorted(c['id'] for c in d.get('candidates', [])))"; }
check "locate offers exactly the three approved, alive test points" \
    test "$(located_ids "")" = "$(printf '%s\n' "${TP_ID[@]}" | sort | xargs)"
"${IN_CLI[@]}" "$ISPEED" servers --collector "$COLLECTOR" --location 21.03,105.85 | tee "$WORK/servers.txt"
export ISPEED_CONFIG_DIR=$WORK/client
run_test() { # run_test NAME ARGS...: ispeed test --collector --json, output in $WORK/NAME.json
    local name=$1 rc=0
    shift
    "${IN_CLI[@]}" env ISPEED_CONFIG_DIR="$ISPEED_CONFIG_DIR" "$ISPEED" test --collector "$COLLECTOR" \
        --max-seconds 4 --json "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" || rc=$?
    return "$rc"
}
result_of() { python3 -c "import json; d=json.load(open('$WORK/$1.json')); print($2)"; }
check "ispeed test --collector picks a test point by RTT and the result is stored" run_test first
log "first test: $(result_of first "d['server']['id'], round(d['download_mbps'] or 0, 1), d['selection']['rtt_ms'], d['submitted']")"
http GET "$COLLECTOR/api/v1/results/$(result_of first "d['result_id']")" "" "" "$(cat "$ISPEED_CONFIG_DIR/device_id")" >/dev/null
check "the stored result records the test point's class ($(jq_py "d.get('test_point_class')"))" \
    test "$(jq_py "d.get('test_point_class')")" = "$(result_of first "d['selection']['class']")"

# ---- 3. tokens ------------------------------------------------------------------
token_for() { # token_for ID [QUERY]: a fresh token for that test point
    http GET "$COLLECTOR/api/v1/locate${2:-}" >/dev/null
    jq_py "[c['token'] for c in d['candidates'] if c['id'] == '$1'][0]"
}
TP1=http://${TP_IP[0]}:8080
TP2=http://${TP_IP[1]}:8080
session_with() { http POST "$1/v1/sessions" "{\"access_token\": \"$2\"}"; }
EXPIRING=$(token_for "${TP_ID[1]}")
EXPIRING_AT=$(date +%s)
check "no token: 401 token_missing" test "$(http POST "$TP1/v1/sessions" '{}')" = "401 token_missing"
check "another test point's token: 401 token_audience" \
    test "$(session_with "$TP1" "$(token_for "${TP_ID[1]}")")" = "401 token_audience"
T1=$(token_for "${TP_ID[0]}")
check "a valid token: 201" test "$(session_with "$TP1" "$T1")" = "201 "
check "the same token again: 401 token_reused" test "$(session_with "$TP1" "$T1")" = "401 token_reused"

# ---- 4. failover: at capacity, then killed ---------------------------------------------
# tp-hcm-vnix admits one session. Right after one of its heartbeats (so the
# collector still believes it idle for ~10 s) its only session is taken;
# a client in HCMC, keeping locate's order, is sent there first.
fresh_heartbeat() { # waits until ID's last heartbeat is under 1 s old
    for _ in $(seq 120); do
        admin list --json >"$LAST"
        age=$(jq_py "[int(__import__('time').time()*1000) - (t['last_heartbeat_ms'] or 0) for t in d['test_points'] if t['id'] == '$1'][0]")
        ((age < 1000)) && return 0
        sleep 0.1
    done
    return 1
}
fresh_heartbeat "${TP_ID[2]}"
check "the HCMC test point's one session is taken" \
    test "$(session_with "http://${TP_IP[2]}:8080" "$(token_for "${TP_ID[2]}" "?lat=10.78&lon=106.70")")" = "201 "
check "a client in HCMC is refused by the full test point and served by the next one" \
    run_test capacity --location 10.78,106.70 --probe-ms 0
log "capacity: $(result_of capacity "[(a['test_point_id'], a['outcome']) for a in d['selection']['attempts']]")"
check "… its first attempt was the full one (503 over_capacity)" \
    test "$(result_of capacity "d['selection']['attempts'][0]['test_point_id'] + ' ' + d['selection']['attempts'][0]['outcome']")" \
    = "${TP_ID[2]} over_capacity"
check "… and the client told the user" grep -q "cannot take the test" "$WORK/capacity.err"
# The first test filled tp-hn-vnix's 20 Mbit/s line, and its heartbeat said
# so (locate skips a test point at ≥ 90 % load): wait until it reports idle.
wait_idle() {
    for _ in $(seq 150); do
        admin list --json >"$LAST"
        [[ $(jq_py "[t['load'] is not None and t['load'] < 0.5 for t in d['test_points'] if t['id'] == '$1'][0]") == True ]] && return 0
        sleep 0.2
    done
    return 1
}
check "the Hà Nội test point reports itself idle again" wait_idle "${TP_ID[0]}"
http GET "$COLLECTOR/api/v1/locate?lat=21.03&lon=105.85" >/dev/null
log "locate for Hà Nội before the kill: $(jq_py "[(c['id'], round(c['load'], 2), c['estimated_rtt_ms']) for c in d.get('candidates', [])]")"
KILLED_AT=$(date +%s.%N)
admin list --json >"$LAST"
LAST_BEAT=$(jq_py "[t['last_heartbeat_ms'] / 1000 for t in d['test_points'] if t['id'] == '${TP_ID[0]}'][0]")
kill -KILL "${TP_PIDS[0]}"
check "a client in Hà Nội moves on from the killed Hà Nội test point" \
    run_test killed --location 21.03,105.85 --probe-ms 0
log "killed: $(result_of killed "[(a['test_point_id'], a['outcome']) for a in d['selection']['attempts']]")"
check "… its first attempt was the killed one (unreachable)" \
    test "$(result_of killed "d['selection']['attempts'][0]['test_point_id'] + ' ' + d['selection']['attempts'][0]['outcome']")" \
    = "${TP_ID[0]} unreachable"
check "with RTT probing, the dead test point is not even tried" run_test probed --location 21.03,105.85
log "probed: $(result_of probed "[(a['test_point_id'], a['outcome']) for a in d['selection']['attempts']]")"

# ---- 5. a stopped test point disappears within 30 s ------------------------------
# Polled every 0.5 s: the collector drops it 30 s after its last heartbeat
# (which was at most 10 s before the kill); 2 s of slack for the polling
# (each poll starts a process in a namespace, slower on a busy machine).
GONE=""
while :; do
    if ! located_ids "" | grep -qw "${TP_ID[0]}"; then
        GONE=$(python3 -c "import time; print(round(time.time() - $LAST_BEAT, 1), round(time.time() - $KILLED_AT, 1))")
        break
    fi
    python3 -c "import sys,time; sys.exit(0 if time.time() - $KILLED_AT < 45 else 1)" || break
    sleep 0.5
done
read -r SINCE_BEAT SINCE_KILL <<<"${GONE:-never never}"
log "the killed test point left locate ${SINCE_BEAT} s after its last heartbeat, ${SINCE_KILL} s after the kill"
check "the killed test point left locate 30 s after its last heartbeat (${SINCE_BEAT} s; ${SINCE_KILL} s after the kill)" \
    python3 -c "import sys; sys.exit(0 if '$SINCE_BEAT' != 'never' and 29.5 <= float('$SINCE_BEAT') <= 32 else 1)"

# ---- 3b. an expired token (issued over 60 s ago) --------------------------------
while (($(date +%s) - EXPIRING_AT < 61)); do sleep 1; done
check "a token older than 60 s: 401 token_expired" \
    test "$(session_with "$TP2" "$EXPIRING")" = "401 token_expired"

# ---- 6. revocation -----------------------------------------------------------------
# A test against tp-dn-cloud whose result is spooled (the collector URL given
# is a closed port), then the key is revoked, then the spool is delivered.
T2=$(token_for "${TP_ID[1]}")
"${IN_CLI[@]}" env ISPEED_CONFIG_DIR="$ISPEED_CONFIG_DIR" "$ISPEED" test --server "$TP2" --access-token "$T2" \
    --collector "http://$COL:9" --max-seconds 3 --json >"$WORK/spooled.json" 2>"$WORK/spooled.err" || true
check "a result measured before the revocation waits in the spool" \
    test "$(result_of spooled "d['submitted']")" = "False"
admin revoke "${TP_ID[1]}"
rc=0
"${IN_CLI[@]}" env ISPEED_CONFIG_DIR="$ISPEED_CONFIG_DIR" "$ISPEED" submit --pending --force \
    --collector "$COLLECTOR" --json >"$WORK/submit.json" 2>"$WORK/submit.err" || rc=$?
check "delivered after the revocation, it is rejected (exit 5, test_point_revoked)" \
    bash -c "[[ $rc == 5 ]] && grep -q test_point_revoked '$WORK/submit.err' '$WORK/submit.json'"
check "the first result, stored before, is still there" \
    test "$(http GET "$COLLECTOR/api/v1/stats?level=nation&period=$(TZ=Asia/Ho_Chi_Minh date +%Y-%m)" >/dev/null; jq_py "[r['n'] for r in d['rows'] if r['isp'] == 'all'][0] >= 1")" = "True"
REMAINING=$(located_ids "")
check "the revoked test point is no longer offered (offered: ${REMAINING:-none})" \
    bash -c "! grep -qw ${TP_ID[1]} <<<'$REMAINING'"

echo
if ((FAILED)); then
    log "$FAILED check(s) failed"
    show_log "$WORK/collector.log"
    exit 1
fi
log "all checks passed"
