#!/usr/bin/env bash
# Measures what OpenPGP encryption adds to `autonomy ha backup create` (and to a restore drill):
# two copies of one database (pgbench tables plus a table of hard-to-compress text), one node
# backing up unencrypted (the reference) and one encrypting to an RSA-4096 key gpg generates
# here, alternating the two in each pair so machine drift hits both alike; and each node's
# peak RSS.
#
# Usage: scripts/bench-encryption.sh             (SCALE=20 BIG_MB=300 RUNS=3 by default)
# Needs: the host's PostgreSQL server binaries and pgbench, gpg, a release build (build it
# first: `cargo build --release`). Prints a Markdown table for docs/PERFORMANCE.md. Touches
# only a temp dir and loopback ports.
set -euo pipefail

scale=${SCALE:-20}
big_mb=${BIG_MB:-300}
runs=${RUNS:-3}
# shellcheck source=scripts/bench-pg.sh
source "$(dirname "$0")/bench-pg.sh"
load_bench_db bench_plain "$scale" "$big_mb"
createdb -T bench_plain bench_sealed
db_size=$(db_size bench_plain)

echo "generating an RSA-4096 key with gpg ..." >&2
gnupg="$work/gnupg"; mkdir -m 700 "$gnupg"
printf 'Key-Type: RSA\nKey-Length: 4096\nKey-Usage: cert,sign\nSubkey-Type: RSA\nSubkey-Length: 4096\nSubkey-Usage: encrypt\nName-Real: bench\nName-Email: bench@bench.invalid\nExpire-Date: 0\n%%no-protection\n%%commit\n' \
  | gpg --homedir "$gnupg" --batch --quiet --gen-key 2>/dev/null
gpg --homedir "$gnupg" --batch --export --armor bench@bench.invalid > "$work/bench.pub.asc"
gpg --homedir "$gnupg" --batch --export-secret-keys --armor bench@bench.invalid > "$work/bench.sec.asc"
gpgconf --homedir "$gnupg" --kill gpg-agent

plain_port=$(free_port); sealed_port=$(free_port)
start_node plain bench_plain "$plain_port"
plain_pid=${pids[-1]}
start_node sealed bench_sealed "$sealed_port" --backup-encrypt-to "$work/bench.pub.asc" \
  --backup-decrypt-key "$work/bench.sec.asc"
sealed_pid=${pids[-1]}

drill() { # port: wall-clock ms of a drill of the latest backup
  local t0; t0=$(now_ms)
  AUTONOMY_SERVER_URL="http://127.0.0.1:$1" AUTONOMY_API_TOKEN=$token "$bin" ha backup verify --latest >/dev/null
  echo $(( $(now_ms) - t0 ))
}
plain_ms=(); sealed_ms=(); plain_drill=(); sealed_drill=()
for i in $(seq "$runs"); do
  echo "run $i/$runs" >&2
  for side in plain sealed; do
    [ $((i % 2)) = 0 ] && side=$([ "$side" = plain ] && echo sealed || echo plain)
    if [ "$side" = plain ]; then plain_ms+=("$(timed_backup "$plain_port")"); else sealed_ms+=("$(timed_backup "$sealed_port")"); fi
  done
done
plain_rss=$(rss "$plain_pid"); sealed_rss=$(rss "$sealed_pid")
plain_drill+=("$(drill "$plain_port")"); sealed_drill+=("$(drill "$sealed_port")")

archive=$(ls "$work/plain-backups"/*.dump | head -n1)
sealed_archive=$(ls "$work/sealed-backups"/*.dump | head -n1)
python3 - "$scale" "$big_mb" "$db_size" "$(stat -c %s "$archive")" "$(stat -c %s "$sealed_archive")" "$runs" \
  "${plain_ms[*]}" "${sealed_ms[*]}" "$plain_rss" "$sealed_rss" "${plain_drill[*]}" "${sealed_drill[*]}" <<'PY'
import statistics, sys
scale, big_mb, db_size, archive, sealed_archive, runs = sys.argv[1:7]
plain, sealed = (list(map(int, s.split())) for s in sys.argv[7:9])
rss_plain, rss_sealed = (int(v) / 1024 for v in sys.argv[9:11])
drill_plain, drill_sealed = (int(v) for v in sys.argv[11:13])
print(f"pgbench scale {scale} + {big_mb} MB of md5 text: database {db_size}, archive {int(archive) / 1e6:.0f} MB "
      f"({int(sealed_archive) / 1e6:.0f} MB encrypted), {runs} alternating pairs\n")
print("| backup | median ms | ratio of medians | pairwise ratios | node peak RSS | drill of the latest (ms) |")
print("| --- | --- | --- | --- | --- | --- |")
print(f"| unencrypted (reference) | {statistics.median(plain):.0f} | 1.000 | | {rss_plain:.0f} MiB | {drill_plain} |")
pairs = ", ".join(f"{s / p:.3f}" for p, s in zip(plain, sealed))
print(f"| OpenPGP, RSA-4096 recipient, AES-256 | {statistics.median(sealed):.0f} | {statistics.median(sealed) / statistics.median(plain):.3f} | {pairs} | {rss_sealed:.0f} MiB | {drill_sealed} ({drill_sealed / drill_plain:.3f}×) |")
PY
