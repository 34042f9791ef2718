#!/usr/bin/env bash
# The proof run (README "Quickstart"): install prerequisites, run the VAL13 to VAL17
# slices under one run id, print the reports a reviewer reads. The bundles are under
# evidence/latest/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh
export AUTONOMY_RUN_ID="${AUTONOMY_RUN_ID:-proof-$(date -u +%Y%m%dT%H%M%SZ)-$$}"
status=0
AUTONOMY_LAB_REQUIRE=1 cargo test --test val13 --test val14 --test val15 --test val16 --test val17 || status=$?
for slice in val13 val14 val15 val16 val17; do
    cat "evidence/latest/$slice/$slice-report.txt"
done
exit $status
