#!/usr/bin/env bash
# The test command (README "Quickstart", run by .ci/run): install the lab's prerequisites, then
# run the whole suite under both PostgreSQL backends with AUTONOMY_LAB_REQUIRE=1, so a backend
# that cannot run fails the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh

if cargo nextest --version >/dev/null 2>&1; then
  run() { cargo nextest run --profile ci --workspace --no-fail-fast "$@"; }
else
  run() { cargo test --workspace --no-fail-fast "$@"; }
fi

# Tests remove their containers on drop; a test killed outright (a timeout's SIGKILL) cannot,
# so sweep what this run's tests labelled when the script ends, however it ends.
remove_lab_containers() {
  if docker info >/dev/null 2>&1; then
    docker ps -aq --filter label=org.autonomy.lab | xargs -r docker rm -fv >/dev/null 2>&1 || true
  fi
}
# Likewise the network namespaces of VAL16's partition (named autonomy-<slice>-<pid>) whose
# test process is gone; a concurrent run's live ones are left alone.
remove_lab_namespaces() {
  command -v ip >/dev/null 2>&1 || return 0
  for ns in $(ip netns list 2>/dev/null | awk '/^autonomy-/ {print $1}'); do
    kill -0 "${ns##*-}" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true
  done
}
trap 'remove_lab_containers; remove_lab_namespaces' EXIT

export AUTONOMY_LAB_REQUIRE=1
status=0
for backend in docker process; do
  echo "=== backend: $backend ===" >&2
  AUTONOMY_LAB_BACKEND=$backend run || status=1
done
echo "evidence: $(readlink -f evidence/latest 2>/dev/null || echo none)" >&2
exit $status
