#!/usr/bin/env bash
# Measures `autonomy ha backup create` against plain `pg_dump -Fc` (both without the node's
# own schema autonomy_ha, which must never be restored over a running node), and `autonomy ha backup
# restore` against plain `pg_restore --clean --if-exists --single-transaction`, on one pgbench
# database, alternating the two in each pair so machine drift hits both alike.
#
# Usage: scripts/bench-backup-restore.sh            (SCALE=50 RUNS=3 by default)
#        SCALE=10 RUNS=5 scripts/bench-backup-restore.sh
# Needs: the host's PostgreSQL server binaries and pgbench, a release build (built if missing).
# Prints a Markdown table for docs/PERFORMANCE.md. Touches only a temp dir and loopback ports.
set -euo pipefail

scale=${SCALE:-50}
runs=${RUNS:-3}
# shellcheck source=scripts/bench-pg.sh
source "$(dirname "$0")/bench-pg.sh"
load_bench_db bench "$scale" 0
db_size=$(db_size bench)

node_port=$(free_port)
AUTONOMY_API_TOKEN=$token AUTONOMY_LOG=warn "$bin" ha serve --node-id bench \
  --listen "127.0.0.1:$node_port" --database-url "postgres://postgres@127.0.0.1:$pg_port/bench" \
  --backup-dir "$work/backups" --audit-dir "$work/audit" --maintenance-mode 2>"$work/node.log" &
node_pid=$!
pids+=("$node_pid")
export AUTONOMY_SERVER_URL="http://127.0.0.1:$node_port" AUTONOMY_API_TOKEN=$token
for _ in $(seq 100); do "$bin" ha status 2>/dev/null | grep -q role=leader && break; sleep 0.1; done

backup_ref=(); backup_ours=(); restore_ref=(); restore_ours=()
backup_id=""
for i in $(seq "$runs"); do
  echo "run $i/$runs: backup" >&2
  for side in ref ours; do
    [ $((i % 2)) = 0 ] && side=$([ "$side" = ref ] && echo ours || echo ref)
    t0=$(now_ms)
    if [ "$side" = ref ]; then
      pg_dump -Fc --exclude-schema=autonomy_ha -f "$work/ref.dump" bench
      backup_ref+=($(( $(now_ms) - t0 )))
    else
      backup_id=$("$bin" ha backup create | sed -n 's/^backup_id=\([^ ]*\).*/\1/p')
      backup_ours+=($(( $(now_ms) - t0 )))
    fi
  done
done
for i in $(seq "$runs"); do
  echo "run $i/$runs: restore" >&2
  for side in ref ours; do
    [ $((i % 2)) = 0 ] && side=$([ "$side" = ref ] && echo ours || echo ref)
    t0=$(now_ms)
    if [ "$side" = ref ]; then
      pg_restore --clean --if-exists --single-transaction -d bench "$work/ref.dump"
      restore_ref+=($(( $(now_ms) - t0 )))
    else
      "$bin" ha backup restore "$backup_id" --confirm >/dev/null
      restore_ours+=($(( $(now_ms) - t0 )))
    fi
  done
done

archive_size=$(stat -c %s "$work/backups/$backup_id.dump")
python3 - "$scale" "$db_size" "$archive_size" "$runs" \
  "${backup_ref[*]}" "${backup_ours[*]}" "${restore_ref[*]}" "${restore_ours[*]}" <<'PY'
import statistics, sys
scale, db_size, archive, runs = sys.argv[1:5]
series = [list(map(int, s.split())) for s in sys.argv[5:9]]
print(f"pgbench scale {scale}: database {db_size}, archive {int(archive) / 1e6:.0f} MB, {runs} alternating pairs\n")
print("| operation | plain tool median ms | autonomy median ms | ratio of medians | pairwise ratios |")
print("| --- | --- | --- | --- | --- |")
for name, ref, ours in (("backup", series[0], series[1]), ("restore", series[2], series[3])):
    pairs = ", ".join(f"{o / r:.3f}" for r, o in zip(ref, ours))
    print(f"| {name} | {statistics.median(ref):.0f} | {statistics.median(ours):.0f} | "
          f"{statistics.median(ours) / statistics.median(ref):.3f} | {pairs} |")
PY
