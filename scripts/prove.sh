#!/usr/bin/env bash
# The proof run (README "Quickstart"): install the prerequisites, then `cargo proof`: VAL13 to
# VAL17 under one run id with a line per slice, then the VAL26 report (text printed, HTML path
# given). The process backend unless AUTONOMY_LAB_BACKEND says otherwise. Exits 0 only when
# every slice passed and the verdict is HA DESIGN PARTNER READY. The bundle is evidence/latest/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh
export AUTONOMY_RUN_ID="${AUTONOMY_RUN_ID:-proof-$(date -u +%Y%m%dT%H%M%SZ)-$$}"
export AUTONOMY_LAB_BACKEND="${AUTONOMY_LAB_BACKEND:-process}"
export AUTONOMY_LAB_REQUIRE=1
status=0
cargo proof || status=$?
report="evidence/$AUTONOMY_RUN_ID/val26"
if [ -f "$report/val26-report.txt" ]; then
    echo
    echo "HTML report: $(readlink -f "$report/val26-report.html")"
    grep '^Verdict:' "$report/val26-report.txt"
else
    echo "no VAL26 report was written (see the output above)" >&2
fi
exit $status
