#!/usr/bin/env bash
# Offline enrichment lookups (crates/enrich): load time of the embedded ward
# index, and per-lookup time of point → ward (R-tree + point-in-polygon) and
# IP → ASN (binary search), each against a naive linear scan over the same
# data in the same run.
#
#   bench/enrich.sh [N]      N lookups of each kind, default 100000
#
# Env: RUNS=3 (timing repetitions; medians reported)
#
# Needs only cargo; takes ~10 s after the release build. A lookup must take
# microseconds: the collector enriches every result on its request path.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

case ${1:-} in -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
N=${1:-100000}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$N'"

log "building lookup_bench (cargo build --release -p ispeed-enrich --example lookup_bench)"
(cd "$REPO_ROOT" && cargo build --release -p ispeed-enrich --example lookup_bench) >&2
# Ends with the RESULT: line; fails if indexed and naive answers disagree.
run_fg "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/examples/lookup_bench" "$N" "$RUNS"
