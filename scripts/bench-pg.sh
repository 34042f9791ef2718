# Sourced by the bench scripts: a throwaway PostgreSQL on a loopback port in a temp dir (as the
# postgres OS user when run as root), stopped and removed on exit with every process in `pids`.
# Sets: repo, bin (the release binary, built if missing), pg_bin, token, work, pg_port,
# PGHOST/PGPORT/PGUSER; gives free_port, now_ms, load_bench_db, db_size, start_node (a leader on its own database, with
# `node_env` in its environment), timed_backup and rss.

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

node_env=()
start_node() { # name database port [ha serve flags...]; the node's pid is then ${pids[-1]}
  local name=$1 db=$2 port=$3; shift 3
  env "${node_env[@]}" AUTONOMY_API_TOKEN=$token AUTONOMY_LOG=warn \
    "$bin" ha serve --node-id "$name" --listen "127.0.0.1:$port" \
    --database-url "postgres://postgres@127.0.0.1:$pg_port/$db" \
    --backup-dir "$work/$name-backups" --audit-dir "$work/audit" "$@" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    AUTONOMY_SERVER_URL="http://127.0.0.1:$port" AUTONOMY_API_TOKEN=$token "$bin" ha status 2>/dev/null \
      | grep -q role=leader && return 0
    sleep 0.1
  done
  echo "node $name never led; log:" >&2; cat "$work/$name.log" >&2; exit 1
}
timed_backup() { # port: prints the wall-clock ms of one `ha backup create`
  local t0; t0=$(now_ms)
  AUTONOMY_SERVER_URL="http://127.0.0.1:$1" AUTONOMY_API_TOKEN=$token "$bin" ha backup create >/dev/null
  echo $(( $(now_ms) - t0 ))
}
rss() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; } # pid: peak RSS in KiB

load_bench_db() { # database scale big_mb: pgbench tables plus big_mb MB of hard-to-compress text
  local db=$1 scale=$2 big_mb=$3
  createdb "$db"
  echo "loading pgbench scale $scale and $big_mb MB of text ..." >&2
  pgbench -i -s "$scale" -q "$db" >/dev/null 2>&1
  [ "$big_mb" -gt 0 ] || return 0
  psql -Xq -c "CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
    INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
    FROM generate_series(1, $(( big_mb * 1024 * 1024 / 100 ))) g;" "$db"
}
db_size() { psql -XAtc "SELECT pg_size_pretty(pg_database_size('$1'))" "$1"; } # database
