#!/usr/bin/env bash
# The XLSX reports open in LibreOffice: a province's and the nation's
# workbook for a month of generated data are converted to PDF by
# `soffice --headless --convert-to pdf`, which must succeed and give pages;
# the first page of each is rendered to PNG in tests/report/artifacts/ (or
# $ARTIFACTS) to be looked at.
#
#   tests/report/libreoffice.sh
#
# Env: ISPEED=path (default target/debug/ispeed, built if missing).
# Installs libreoffice-calc-nogui and poppler-utils with apt if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ISPEED=${ISPEED:-target/debug/ispeed}
ARTIFACTS=${ARTIFACTS:-$ROOT/tests/report/artifacts}
if ! command -v soffice >/dev/null 2>&1 || ! command -v pdftoppm >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libreoffice-calc-nogui poppler-utils >/dev/null
fi
[[ -x $ISPEED ]] || cargo build -p ispeed
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ispeed-report.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ARTIFACTS"
MONTH=2026-10
"$ISPEED" generate --month 2026-09 --samples 5000 --seed 31 --data "$WORK/data" >/dev/null
"$ISPEED" generate --month "$MONTH" --samples 20000 --seed 32 --data "$WORK/data" >/dev/null
failed=0
for scope in 79 nation; do
    args=(--month "$MONTH" --format xlsx --data "$WORK/data" -o "$WORK/$scope.xlsx")
    [[ $scope == nation ]] || args+=(--province "$scope")
    "$ISPEED" report "${args[@]}"
    # A private profile: no first-start dialogs, no clash with a running office.
    if ! timeout 180 soffice --headless -env:UserInstallation="file://$WORK/profile" \
        --convert-to pdf --outdir "$WORK" "$WORK/$scope.xlsx" >"$WORK/$scope.log" 2>&1; then
        echo "FAIL  $scope.xlsx: soffice failed"; cat "$WORK/$scope.log"; failed=1; continue
    fi
    pages=$(pdfinfo "$WORK/$scope.pdf" 2>/dev/null | awk '/^Pages:/ {print $2}')
    if [[ -z $pages || $pages -lt 1 ]]; then
        echo "FAIL  $scope.xlsx: no PDF pages"; failed=1; continue
    fi
    pdftoppm -png -r 70 -f 1 -l 1 "$WORK/$scope.pdf" "$ARTIFACTS/report-$scope-page"
    cp "$WORK/$scope.pdf" "$ARTIFACTS/report-$scope.pdf"
    echo "PASS  $scope.xlsx opens in LibreOffice: $pages PDF pages; first page in $ARTIFACTS/report-$scope-page-01.png"
done
exit "$failed"
