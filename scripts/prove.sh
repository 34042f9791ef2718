#!/usr/bin/env bash
# The proof run (README "Quickstart"): install prerequisites, run the VAL15 slice, print the
# report a reviewer reads. The bundle is under evidence/latest/val15/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh
status=0
AUTONOMY_LAB_REQUIRE=1 cargo test --test val15 || status=$?
cat evidence/latest/val15/val15-report.txt
exit $status
