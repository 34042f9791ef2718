#!/usr/bin/env bash
# The test command (README "Quickstart", run by .ci/run): install the lab's prerequisites, then
# run the whole suite under both PostgreSQL backends with AUTONOMY_LAB_REQUIRE=1 (and VAL15 and
# VAL19 once more on the S3 store, VAL13, VAL16 and VAL17 once more with the lease on etcd), so a backend
# that cannot run fails the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-prereqs.sh

if cargo nextest --version >/dev/null 2>&1; then
  run() { cargo nextest run --profile ci --workspace --no-fail-fast "$@"; }
  # The slices whose backups go through the store, again on the S3 store (a real S3 server).
  run_on_s3() { AUTONOMY_LAB_STORE=s3 cargo nextest run --profile ci --no-fail-fast -E 'binary(val15) | binary(val19)'; }
  # The HA slices that run on either lease store, again with the lease on etcd (three real members).
  run_on_etcd() { AUTONOMY_LAB_LEASE_STORE=etcd cargo nextest run --profile ci --no-fail-fast -E 'binary(val13) | binary(val16) | binary(val17)'; }
else
  run() { cargo test --workspace --no-fail-fast "$@"; }
  run_on_s3() { AUTONOMY_LAB_STORE=s3 cargo test --no-fail-fast --test val15 --test val19; }
  run_on_etcd() { AUTONOMY_LAB_LEASE_STORE=etcd cargo test --no-fail-fast --test val13 --test val16 --test val17; }
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
  echo "=== backend: $backend, S3 store ===" >&2
  AUTONOMY_LAB_BACKEND=$backend run_on_s3 || status=1
  echo "=== backend: $backend, lease on etcd ===" >&2
  AUTONOMY_LAB_BACKEND=$backend run_on_etcd || status=1
done
echo "evidence: $(readlink -f evidence/latest 2>/dev/null || echo none)" >&2
exit $status
