#!/usr/bin/env bash
# Measures `autonomy ha backup create` to the S3 store (a real S3 server, s3s-fs on loopback)
# against the same backup to the local directory, and each node's peak RSS: two copies of one
# database (pgbench tables plus a table of hard-to-compress text, so the archive is large),
# one node on each, alternating the two in each pair so machine drift hits both alike.
#
# Usage: scripts/bench-s3-store.sh              (SCALE=20 BIG_MB=300 RUNS=3 by default)
# Needs: the host's PostgreSQL server binaries and pgbench, s3s-fs (scripts/install-prereqs.sh),
# a release build (built if missing). Prints a Markdown table for docs/PERFORMANCE.md. Touches
# only a temp dir and loopback ports.
set -euo pipefail

scale=${SCALE:-20}
big_mb=${BIG_MB:-300}
runs=${RUNS:-3}
# shellcheck source=scripts/bench-pg.sh
source "$(dirname "$0")/bench-pg.sh"
load_bench_db bench_local "$scale" "$big_mb"
createdb -T bench_local bench_s3
db_size=$(db_size bench_local)

# The S3 server: its throwaway credentials are its flags (it takes them no other way).
s3_key="bench$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
s3_secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
s3_port=$(free_port)
mkdir -p "$work/s3/autonomy-bench"
s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key "$s3_key" --secret-key "$s3_secret" "$work/s3" \
  >/dev/null 2>&1 &
pids+=($!)

node_env=(AWS_ACCESS_KEY_ID="$s3_key" AWS_SECRET_ACCESS_KEY="$s3_secret")
local_port=$(free_port); s3_node_port=$(free_port)
start_node local bench_local "$local_port"
local_pid=${pids[-1]}
start_node s3 bench_s3 "$s3_node_port" --backup-store s3 --s3-endpoint "http://127.0.0.1:$s3_port" \
  --s3-bucket autonomy-bench --s3-path-style
s3_pid=${pids[-1]}

local_ms=(); s3_ms=()
for i in $(seq "$runs"); do
  echo "run $i/$runs" >&2
  for side in local s3; do
    [ $((i % 2)) = 0 ] && side=$([ "$side" = local ] && echo s3 || echo local)
    port=$([ "$side" = local ] && echo "$local_port" || echo "$s3_node_port")
    elapsed=$(timed_backup "$port")
    if [ "$side" = local ]; then local_ms+=("$elapsed"); else s3_ms+=("$elapsed"); fi
  done
done

archive=$(ls "$work/local-backups"/*.dump | head -n1)
archive_size=$(stat -c %s "$archive")
python3 - "$scale" "$big_mb" "$db_size" "$archive_size" "$runs" "${local_ms[*]}" "${s3_ms[*]}" \
  "$(rss "$local_pid")" "$(rss "$s3_pid")" <<'PY'
import statistics, sys
scale, big_mb, db_size, archive, runs = sys.argv[1:6]
local, s3 = (list(map(int, s.split())) for s in sys.argv[6:8])
rss_local, rss_s3 = (int(v) / 1024 for v in sys.argv[8:10])
print(f"pgbench scale {scale} + {big_mb} MB of md5 text: database {db_size}, archive {int(archive) / 1e6:.0f} MB, {runs} alternating pairs\n")
print("| backup to | median ms | ratio of medians | pairwise ratios | node peak RSS |")
print("| --- | --- | --- | --- | --- |")
print(f"| local directory (reference) | {statistics.median(local):.0f} | 1.000 | | {rss_local:.0f} MiB |")
pairs = ", ".join(f"{s / l:.3f}" for l, s in zip(local, s3))
print(f"| S3 (s3s-fs on loopback) | {statistics.median(s3):.0f} | {statistics.median(s3) / statistics.median(local):.3f} | {pairs} | {rss_s3:.0f} MiB |")
PY
