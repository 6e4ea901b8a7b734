#!/usr/bin/env bash
# Bad input: schemathesis (PyPI) fuzzes every collector route of a real
# `ispeed serve` against the OpenAPI document it serves at /api/openapi.json
# (crates/collector/openapi.json), with every check: no 5xx, no undocumented
# status, content type or header, every body valid against its schema,
# invalid input refused, 405 + Allow for other methods.
#
#   bench/schemathesis.sh
#
# Env: SEED=1  MAX_EXAMPLES=200 (test cases per operation and phase)
#      ISPEED=path/to/ispeed (default: cargo build -p ispeed, target/debug/ispeed)
#      SCHEMATHESIS_VERSION=4.32.5  SCHEMATHESIS_VENV=target/schemathesis-venv
#      KEEP_LOGS=1 keeps the server log and the JUnit report
#
# Installs schemathesis into a venv under target/ on first use (needs PyPI),
# then takes ~1 min. Exits non-zero on any failure; the last line is RESULT:.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

case ${1:-} in -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
SEED=${SEED:-1}
MAX_EXAMPLES=${MAX_EXAMPLES:-200}
ST_VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
VENV=${SCHEMATHESIS_VENV:-$TARGET_DIR/schemathesis-venv}
ST="$VENV/bin/schemathesis"
[[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer, got '$SEED'"
[[ $MAX_EXAMPLES =~ ^[1-9][0-9]*$ ]] || die "MAX_EXAMPLES must be a positive integer, got '$MAX_EXAMPLES'"

# --- schemathesis, pinned: its checks change between releases --------------
installed_version() { "$ST" --version 2>/dev/null | awk '{print $NF}'; }
if [[ $(installed_version) != "$ST_VERSION" ]]; then
    log "installing schemathesis==$ST_VERSION into $VENV"
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        log "python3-venv missing, installing it with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2; } ||
            die "cannot install python3-venv"
    fi
    [[ -x $VENV/bin/pip ]] || python3 -m venv "$VENV" >&2 || die "cannot create a venv at $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION" >&2 ||
        die "cannot install schemathesis==$ST_VERSION"
    [[ $(installed_version) == "$ST_VERSION" ]] || die "schemathesis $ST_VERSION not usable at $ST"
fi

# --- the binary: the document is compiled in (include_str!) -----------------
if [[ -z ${ISPEED:-} ]]; then
    log "building ispeed (cargo build -p ispeed)"
    (cd "$REPO_ROOT" && cargo build -p ispeed) >&2
    ISPEED=$TARGET_DIR/debug/ispeed
fi
[[ $ISPEED == /* ]] || ISPEED="$REPO_ROOT/$ISPEED"
[[ -x $ISPEED ]] || die "no ispeed binary at $ISPEED"

# --- a small dataset, so the statistics answer with real rows ---------------
DATA="$WORK/data"
MONTH=$(date -u -d "$(date -u +%Y-%m-15) -1 month" +%Y-%m)
log "generating 3000 results for $MONTH into $DATA"
run_fg "$ISPEED" generate --month "$MONTH" --samples 3000 --data "$DATA" >"$WORK/generate.json"

# --- the server, on a port the kernel picks ----------------------------------
SLOG="$WORK/serve.log"
bg_start "$SLOG" "$ISPEED" serve --data "$DATA" --listen 127.0.0.1:0
SERVER_PID=$BG_PID
URL=""
for _ in $(seq 200); do
    URL=$(sed -n 's|^ispeed serve: \(http://[0-9.]*:[0-9]*\)/.*|\1|p' "$SLOG" | head -n 1)
    [[ -n $URL ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { show_log "$SLOG"; die "ispeed serve exited"; }
    sleep 0.1
done
[[ -n $URL ]] || { show_log "$SLOG"; die "ispeed serve printed no address"; }
py healthz "$URL/api/openapi.json" 20 || { show_log "$SLOG"; die "no /api/openapi.json at $URL"; }
# The binary must serve the document in the tree (a stale build would not).
python3 - "$URL/api/openapi.json" "$REPO_ROOT/crates/collector/openapi.json" <<'EOF' || die "the server's /api/openapi.json differs from crates/collector/openapi.json (stale binary?)"
import json, sys, urllib.request
served = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
sys.exit(served != json.load(open(sys.argv[2])))
EOF
log "ispeed serve at $URL (pid $SERVER_PID)"

# --- schemathesis ----------------------------------------------------------------
# Where a schema-valid request is still refused, and rightly so, the check
# that valid data is accepted is told which statuses are right answers.
cat >"$WORK/schemathesis.toml" <<'EOF'
# Operation ids first: the first block that matches an operation applies.
[[operations]]
include-operation-id = "locate"
# lat and lon go together (400), which OpenAPI 3.0 cannot express either.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "422"]

[[operations]]
include-operation-id = "report"
# A month must not be in the future, which a pattern cannot say (400).
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "422"]

[[operations]]
include-operation-id = "campaignProgress"
# A campaign the fuzzer names does not exist.
checks.positive_data_acceptance.expected-statuses = ["2xx", "404"]

[[operations]]
include-operation-id = "heartbeat"
# A schema-valid body still needs a heartbeat signed by the key it names.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "409", "422"]

[[operations]]
include-operation-id = ["adminListTestPoints", "adminTestPointAction", "adminListUsers", "adminCreateUser", "adminDisableUser", "adminAuditLog", "exportResults", "createCampaign"]
# The fuzzer has no credentials: every call is refused (401), as it must be.
checks.positive_data_acceptance.expected-statuses = ["401"]

[[operations]]
include-path = "/api/v1/results"
include-method = "POST"
# A schema-valid body still needs a receipt signed by an approved test point,
# which a fuzzer cannot make: 422 (bad_signature, unknown_test_point, ...).
checks.positive_data_acceptance.expected-statuses = ["2xx", "409", "422"]

[[operations]]
include-path-regex = "^/api/v1/stats"
# `code` is required for level=province|ward (400) and must name a unit of
# that level (422 unknown_unit): rules across parameters, which OpenAPI
# cannot express.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "422"]

EOF
STLOG="$WORK/schemathesis.log"
# --workers 1: hypothesis' lambda-source cache is not thread-safe on
# CPython 3.11 ("AST constructor recursion depth mismatch").
ST_CMD=("$ST" --config-file "$WORK/schemathesis.toml" run "$URL/api/openapi.json"
    --url "$URL" --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1
    --request-timeout 10 --report junit --report-junit-path "$WORK/junit.xml")
log "running: schemathesis ${ST_CMD[*]:1}"
export NO_COLOR=1 COLUMNS=100
rc=0
# From $WORK: hypothesis writes its example database to ./.hypothesis.
cd "$WORK"
run_fg "${ST_CMD[@]}" >"$STLOG" 2>&1 || rc=$?
cd "$REPO_ROOT"
cat "$STLOG" >&2

kill -0 "$SERVER_PID" 2>/dev/null || { show_log "$SLOG"; die "ispeed serve died during the run"; }
if grep -q 'ERROR' "$SLOG"; then
    log "the server logged errors:"
    grep 'ERROR' "$SLOG" | tail -n 20 >&2
    [[ $rc -ne 0 ]] || rc=1
fi

cases=$(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' "$STLOG" | tail -n 1)
ops=$(sed -n 's/^ *Tested: *\([0-9]*\).*/\1/p' "$STLOG" | tail -n 1)
summary=$(grep -E '^=+ .* in [0-9.]+s =+$' "$STLOG" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
if [[ $rc -eq 0 ]]; then
    echo "RESULT: schemathesis $ST_VERSION PASS: ${ops:-?} operations, ${cases:-?} test cases, 0 failures (seed $SEED, --checks all, ${summary:-no summary})"
else
    echo "RESULT: schemathesis $ST_VERSION FAIL (exit $rc): ${summary:-no summary}; see above (logs in $WORK)"
    exit "$rc"
fi
