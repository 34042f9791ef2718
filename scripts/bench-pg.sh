# Sourced by the bench scripts: a throwaway PostgreSQL on a loopback port in a temp dir (as the
# postgres OS user when run as root), stopped and removed on exit with every process in `pids`.
# Sets: repo, bin (the release binary, built if missing), pg_bin, token, work, pg_port,
# PGHOST/PGPORT/PGUSER; gives free_port and now_ms.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$repo/target/release/autonomy"
pg_bin=${AUTONOMY_LAB_PG_BIN_DIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
token="bench-token-0123456789abcdef"
[ -x "$bin" ] || (cd "$repo" && cargo build --release --quiet)

work=$(mktemp -d /tmp/autonomy-bench.XXXXXX)
pids=()
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/data" -U postgres -A trust --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$pg_port PGUSER=postgres
