#!/usr/bin/env bash
# Why this exists: the lab has no reachable container registry, so `postgres:15` cannot be pulled; this builds an equivalent local image from Debian packages (debootstrap, then `docker load` of a one-layer image: no base image needed).
#
# Usage: scripts/build-pg-image.sh [--force]
#
# Builds a Docker image (default tag autonomy-pg:15; override with the
# AUTONOMY_LAB_PG_IMAGE environment variable) holding Debian bookworm and
# postgresql-15. The image follows the official `postgres` image's contract,
# so tests can swap in `postgres:16` without changing anything:
#   - POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#     POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#     POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD,
#     and the *_FILE variants of POSTGRES_PASSWORD/USER/DB/INITDB_ARGS;
#   - PGDATA defaults to /var/lib/postgresql/data (a VOLUME, as in the official
#     image: remove containers with `docker rm -v` to drop it as well);
#   - port 5432 exposed, listen_addresses='*', host connections use
#     scram-sha-256 unless POSTGRES_HOST_AUTH_METHOD says otherwise;
#   - the entrypoint starts as root, fixes ownership, then drops to the
#     `postgres` OS user with setpriv;
#   - an empty data directory is initialised on first start (initdb, then
#     POSTGRES_DB is created and /docker-entrypoint-initdb.d/* are run by a
#     temporary, socket-only server whose log goes to STDOUT);
#   - the final server runs as PID 1 and logs to STDERR, so the line
#     "database system is ready to accept connections" appears on stderr only
#     once the real server is ready;
#   - CMD ["postgres"]; extra arguments pass through (`postgres -c fsync=off`,
#     or just `-c fsync=off`); STOPSIGNAL SIGINT.
#
# The Debian mirror is read at run time from this machine's apt sources
# (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources): the
# first URI that serves suite `bookworm` with component `main`.
#
# If the image already exists the script says so and exits 0; pass --force to
# rebuild. Needs root (debootstrap) and a working `docker`.
set -euo pipefail

IMAGE="${AUTONOMY_LAB_PG_IMAGE:-autonomy-pg:15}"
SUITE="bookworm"
PG_MAJOR="15"
LABEL_KEY="org.autonomy.lab"
LABEL_VALUE="pg-image"

log() { printf '[build-pg-image] %s\n' "$*" >&2; }
die() { printf '[build-pg-image] ERROR: %s\n' "$*" >&2; exit 1; }

force=0
for arg in "$@"; do
	case "$arg" in
		--force) force=1 ;;
		-h|--help)
			sed -n '2,/^set -euo pipefail$/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
			exit 0
			;;
		*) die "unknown argument: $arg (usage: $0 [--force])" ;;
	esac
done

command -v docker >/dev/null 2>&1 || die "docker is not installed or not on PATH"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may this user use it?)"

if [ "$force" -eq 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
	log "image $IMAGE already exists; nothing to do (pass --force to rebuild)"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap needs it); try: sudo $0 $*"

# --- find the Debian mirror in the machine's apt sources -------------------

# Prints "URI" for every `deb` entry (one-line format) that has suite $SUITE
# and component main, in file order.
candidates_from_list() {
	awk -v suite="$SUITE" '
		{ sub(/#.*/, "") }
		$1 != "deb" { next }
		{
			line = $0
			sub(/^[ \t]*deb[ \t]+/, "", line)
			if (line ~ /^\[/) { sub(/^\[[^]]*\][ \t]*/, "", line) }
			n = split(line, f, /[ \t]+/)
			if (n < 3 || f[2] != suite) next
			for (i = 3; i <= n; i++) if (f[i] == "main") { print f[1]; next }
		}
	' "$1"
}

# Same for deb822 `.sources` files: stanzas separated by blank lines, fields
# may continue on lines starting with whitespace, keys are case-insensitive.
candidates_from_sources() {
	awk -v suite="$SUITE" '
		function has(list, word,   n, i, a) {
			n = split(list, a, /[ \t]+/)
			for (i = 1; i <= n; i++) if (a[i] == word) return 1
			return 0
		}
		function flush(   n, u) {
			if (uris != "" && has(types, "deb") && has(suites, suite) && has(comps, "main") && tolower(enabled) != "no") {
				n = split(uris, u, /[ \t]+/)
				if (u[1] == "" && n > 1) print u[2]; else print u[1]
			}
			types = uris = suites = comps = enabled = ""; key = ""
		}
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[ \t]/ {
			v = $0; gsub(/^[ \t]+|[ \t]+$/, "", v)
			if (key == "types") types = types " " v
			else if (key == "uris") uris = uris " " v
			else if (key == "suites") suites = suites " " v
			else if (key == "components") comps = comps " " v
			next
		}
		/:/ {
			key = tolower(substr($0, 1, index($0, ":") - 1)); gsub(/[ \t]/, "", key)
			v = substr($0, index($0, ":") + 1); gsub(/^[ \t]+|[ \t]+$/, "", v)
			if (key == "types") types = v
			else if (key == "uris") uris = v
			else if (key == "suites") suites = v
			else if (key == "components") comps = v
			else if (key == "enabled") enabled = v
			next
		}
		END { flush() }
	' "$1"
}

# If apt has a cached Release file for this URI, it must say Origin: Debian
# (filters out third-party repositories that also call their suite bookworm).
# With no cached file we cannot tell and accept the candidate.
origin_is_debian() {
	local uri="$1" stem f
	stem="${uri#*://}"; stem="${stem#*@}"; stem="${stem%/}"; stem="${stem//\//_}"
	for f in "/var/lib/apt/lists/${stem}_dists_${SUITE}_InRelease" "/var/lib/apt/lists/${stem}_dists_${SUITE}_Release"; do
		if [ -f "$f" ]; then
			grep -q '^Origin: Debian$' "$f"
			return
		fi
	done
	return 0
}

find_mirror() {
	local files=() f uri
	[ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
	if [ -d /etc/apt/sources.list.d ]; then
		while IFS= read -r f; do files+=("$f"); done < <(
			find /etc/apt/sources.list.d -maxdepth 1 -type f \( -name '*.list' -o -name '*.sources' \) | LC_ALL=C sort
		)
	fi
	for f in ${files[@]+"${files[@]}"}; do
		[ -r "$f" ] || continue
		while IFS= read -r uri; do
			case "$uri" in
				http://*|https://*|file:/*) ;;
				*) continue ;;
			esac
			if origin_is_debian "$uri"; then
				printf '%s\n' "${uri%/}"
				return 0
			fi
			log "skipping $uri from $f: apt's cached Release file is not Origin: Debian"
		done < <(case "$f" in *.sources) candidates_from_sources "$f" ;; *) candidates_from_list "$f" ;; esac)
	done
	return 1
}

MIRROR="$(find_mirror)" || die "no apt source found for Debian suite '$SUITE' component 'main' in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{list,sources}; add one (e.g. a 'deb <debian-mirror-uri> $SUITE main' line) and retry"
log "using Debian mirror from apt sources: $MIRROR"

# --- tools -----------------------------------------------------------------

if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap via apt-get"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap
fi
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is still not available after apt-get install"

# --- temp rootfs with careful cleanup --------------------------------------

WORKDIR="$(mktemp -d -p /var/tmp autonomy-pg-image.XXXXXX)"
ROOTFS="$WORKDIR/rootfs"

# Mount points under $1, deepest first (mountinfo escapes spaces as \040).
mounts_under() {
	awk -v root="$1" '{ p = $5; gsub(/\\040/, " ", p); if (index(p, root "/") == 1 || p == root) print p }' /proc/self/mountinfo | sort -r
}

cleanup() {
	local rc=$? m
	trap - EXIT INT TERM
	if [ -n "${WORKDIR:-}" ] && [ -d "$WORKDIR" ]; then
		# debootstrap mounts /proc, /sys (and maybe binds /dev) inside the target;
		# a failed run can leave them behind. Never rm -rf across a mount.
		while IFS= read -r m; do
			[ -n "$m" ] || continue
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done < <(mounts_under "$WORKDIR")
		if [ -n "$(mounts_under "$WORKDIR")" ]; then
			log "WARNING: mounts remain under $WORKDIR; NOT deleting it, clean up by hand:"
			mounts_under "$WORKDIR" >&2
		else
			rm -rf --one-file-system "$WORKDIR"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- debootstrap -----------------------------------------------------------

ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
log "debootstrapping $SUITE ($ARCH, minbase + postgresql-$PG_MAJOR) into $ROOTFS"
debootstrap \
	--variant=minbase \
	--arch="$ARCH" \
	--components=main \
	--include="postgresql-$PG_MAJOR" \
	"$SUITE" "$ROOTFS" "$MIRROR" >&2

[ -z "$(mounts_under "$ROOTFS")" ] || die "debootstrap left mounts under $ROOTFS"
PGBIN="/usr/lib/postgresql/$PG_MAJOR/bin"
[ -x "$ROOTFS$PGBIN/postgres" ] || die "postgres binary missing at $PGBIN in the rootfs"
grep -q '^postgres:' "$ROOTFS/etc/passwd" || die "postgres OS user missing in the rootfs"
PG_FULL_VERSION="$(awk -v p="postgresql-$PG_MAJOR" '$0 == "Package: " p {f=1} f && /^Version:/ {print $2; exit}' "$ROOTFS/var/lib/dpkg/status")"
[ -n "$PG_FULL_VERSION" ] || die "postgresql-$PG_MAJOR not recorded as installed in the rootfs dpkg status"

# --- adjust the rootfs -----------------------------------------------------

# The rootfs has ABSOLUTE symlinks (var/run -> /run, var/lock -> /run/lock):
# touching "$ROOTFS/var/run/x" from the host would follow them onto the HOST.
# rp REL prints "$ROOTFS/REL" only if its parent resolves inside the rootfs and
# it is not itself a symlink; use it for every path this script writes to, and
# only in assignments (x="$(rp ...)"), so that a refusal aborts under set -e.
ROOTFS_REAL="$(readlink -f -- "$ROOTFS")"
rp() {
	local p="$ROOTFS_REAL/${1#/}" parent
	parent="$(readlink -m -- "$(dirname -- "$p")")"
	case "$parent/" in
		"$ROOTFS_REAL"/*) ;;
		*) die "refusing to touch /${1#/} in the rootfs: it resolves outside it ($parent)" ;;
	esac
	[ ! -L "$p" ] || die "refusing to touch /${1#/} in the rootfs: it is a symlink"
	printf '%s\n' "$p"
}

# The Debian package creates a "main" cluster; the image must start empty (the
# entrypoint initdb's PGDATA), so drop it and disable future ones.
pg_etc="$(rp "etc/postgresql/$PG_MAJOR")"
pg_cluster="$(rp "var/lib/postgresql/$PG_MAJOR")"
rm -rf "$pg_etc" "$pg_cluster"
CREATECLUSTER="$(rp etc/postgresql-common/createcluster.conf)"
if [ -f "$CREATECLUSTER" ]; then
	sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' "$CREATECLUSTER"
fi

# Listen on all addresses by default (the official image does the same edit).
SAMPLE="$(rp "usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample")"
[ -f "$SAMPLE" ] || die "missing $SAMPLE in the rootfs"
sed -ri "s!^#?(listen_addresses)[[:space:]]*=[[:space:]]*\S+.*!\1 = '*'!" "$SAMPLE"
grep -q "^listen_addresses = '\*'" "$SAMPLE" || die "could not set listen_addresses in $SAMPLE"

# Data dir and socket dir (/run/postgresql: var/run is a symlink to it).
pg_uid="$(awk -F: '$1 == "postgres" {print $3}' "$ROOTFS/etc/passwd")"
pg_gid="$(awk -F: '$1 == "postgres" {print $4}' "$ROOTFS/etc/passwd")"
initdb_d="$(rp docker-entrypoint-initdb.d)"
pg_home="$(rp var/lib/postgresql)"
pg_data="$(rp var/lib/postgresql/data)"
pg_run="$(rp run/postgresql)"
mkdir -p "$initdb_d" "$pg_data" "$pg_run"
chown "$pg_uid:$pg_gid" "$pg_home" "$pg_data" "$pg_run"
chmod 0700 "$pg_data"
chmod 3777 "$pg_run"

ENTRYPOINT_PATH="$(rp usr/local/bin/docker-entrypoint.sh)"
cat > "$ENTRYPOINT_PATH" <<'ENTRYPOINT'
#!/usr/bin/env bash
# Entrypoint for the autonomy lab PostgreSQL image: same contract as the
# official postgres image's docker-entrypoint.sh (env vars, first-start init,
# temporary init server logging to stdout, final server exec'd as PID 1).
set -Eeo pipefail

# usage: file_env VAR [DEFAULT] -- lets VAR come from the file named in VAR_FILE.
file_env() {
	local var="$1" fileVar="${1}_FILE" def="${2:-}"
	if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$fileVar"
		exit 1
	fi
	local val="$def"
	if [ "${!var:-}" ]; then
		val="${!var}"
	elif [ "${!fileVar:-}" ]; then
		val="$(< "${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?'|--help|--describe-config|-V|--version) return 0 ;;
		esac
	done
	return 1
}

setup_env() {
	file_env 'POSTGRES_PASSWORD'
	file_env 'POSTGRES_USER' 'postgres'
	file_env 'POSTGRES_DB' "$POSTGRES_USER"
	file_env 'POSTGRES_INITDB_ARGS'
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	: "${PGDATA:=/var/lib/postgresql/data}"
	export PGDATA
	DATABASE_ALREADY_EXISTS=
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_db_directories() {
	local user; user="$(id -u)"
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		if [ "$user" = '0' ]; then
			find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres '{}' +
		fi
		chmod 700 "$POSTGRES_INITDB_WALDIR"
	fi
	if [ "$user" = '0' ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ 'trust' != "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
		exit 1
	fi
	if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
		printf 'WARNING: POSTGRES_HOST_AUTH_METHOD=trust: all host connections are accepted without a password.\n' >&2
	fi
}

init_database_dir() {
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
	fi
	# --pwfile refuses a properly-empty file, hence the "\n".
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "$@"'
}

setup_hba_conf() {
	if [ "$1" = 'postgres' ]; then shift; fi
	local auth
	auth="$(postgres -C password_encryption "$@")"
	: "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
	{
		printf '\n'
		if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >> "$PGDATA/pg_hba.conf"
}

# Temporary server: no TCP, and pg_ctl without -l sends its log to stdout,
# so the "ready to accept connections" line on stderr is only the final one.
temp_server_start() {
	if [ "$1" = 'postgres' ]; then shift; fi
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

process_sql() {
	local query_runner=( psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc )
	if [ -n "$POSTGRES_DB" ]; then
		query_runner+=( --dbname "$POSTGRES_DB" )
	fi
	PGHOST='' PGHOSTADDR='' "${query_runner[@]}" "$@"
}

# POSTGRES_DB='' only for process_sql (connect to "postgres"); db= gets the real name.
# shellcheck disable=SC2097,SC2098
setup_db() {
	local exists
	exists="$(POSTGRES_DB='' process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)"
	if [ -z "$exists" ]; then
		POSTGRES_DB='' process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		printf '\n'
	fi
}

process_init_files() {
	local f
	printf '\n'
	for f; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					printf '%s: running %s\n' "$0" "$f"
					"$f"
				else
					printf '%s: sourcing %s\n' "$0" "$f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)    printf '%s: running %s\n' "$0" "$f"; process_sql -f "$f"; printf '\n' ;;
			*.sql.gz) printf '%s: running %s\n' "$0" "$f"; gunzip -c "$f" | process_sql; printf '\n' ;;
			*.sql.xz) printf '%s: running %s\n' "$0" "$f"; xzcat "$f" | process_sql; printf '\n' ;;
			*)        printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
		printf '\n'
	done
}

main() {
	if [ "${1:0:1}" = '-' ]; then
		set -- postgres "$@"
	fi

	if [ "$1" = 'postgres' ] && ! want_help "$@"; then
		setup_env
		create_db_directories
		if [ "$(id -u)" = '0' ]; then
			# Drop from root to the postgres OS user and run this script again.
			HOME="$(getent passwd postgres | cut -d: -f6)"
			export HOME
			exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
		fi

		if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
			verify_minimum_env
			ls /docker-entrypoint-initdb.d/ > /dev/null
			init_database_dir
			setup_hba_conf "$@"
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			temp_server_start "$@"
			setup_db
			process_init_files /docker-entrypoint-initdb.d/*
			temp_server_stop
			unset PGPASSWORD
			printf '\nPostgreSQL init process complete; ready for start up.\n\n'
		else
			printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
		fi
	fi

	exec "$@"
}

shopt -s nullglob
main "$@"
ENTRYPOINT
chmod 0755 "$ENTRYPOINT_PATH"

# Slim down: package caches, apt lists, docs, man pages, translations; and do
# not ship the build host's identity files (Docker provides its own).
for spec in 'var/cache/apt/archives:*.deb' 'var/cache/apt/archives/partial:*' 'var/cache/apt:*.bin' \
	'var/lib/apt/lists:*' 'var/cache/debconf:*-old' 'var/log:*.log' 'var/log/apt:*' \
	'usr/share/doc:*' 'usr/share/man:*' 'usr/share/info:*' 'usr/share/locale:*' 'usr/share/lintian:*' \
	'tmp:*' 'root:.cache'; do
	dir="$(rp "${spec%%:*}")"
	[ -d "$dir" ] || continue
	# shellcheck disable=SC2086 # the pattern is meant to glob, inside $dir
	( shopt -s nullglob dotglob; cd -- "$dir"; set -- ${spec#*:}; [ "$#" -eq 0 ] || rm -rf -- "$@" )
done
resolv="$(rp etc/resolv.conf)"
hostname_file="$(rp etc/hostname)"
rm -f "$resolv" "$hostname_file"
dpkg_cfg_d="$(rp etc/dpkg/dpkg.cfg.d)"
mkdir -p "$dpkg_cfg_d"
cat > "$dpkg_cfg_d/01-autonomy-slim" <<'EOF'
# Keep later package installs in this image small.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF

# --- package as an image --------------------------------------------------
# `docker import --change` cannot set STOPSIGNAL on Docker 20.10 ("stopsignal
# is not a valid change command"), so write a docker-save style bundle (one
# layer + an image config holding ENV/ENTRYPOINT/CMD/EXPOSE/VOLUME/STOPSIGNAL/
# LABEL) and `docker load` it: still no base image, builder or registry.

# docker load wants name:tag.
ref="$IMAGE"
case "$ref" in
	*@*) die "AUTONOMY_LAB_PG_IMAGE must be name[:tag], not a digest reference: $IMAGE" ;;
esac
case "${ref##*/}" in
	*:*) ;;
	*) ref="$ref:latest" ;;
esac

case "$ARCH" in
	armhf|armel) goarch="arm" ;;
	i386) goarch="386" ;;
	ppc64el) goarch="ppc64le" ;;
	*) goarch="$ARCH" ;;
esac

BUNDLE="$WORKDIR/bundle"
mkdir -p "$BUNDLE"
log "packing rootfs layer"
tar --numeric-owner --one-file-system -C "$ROOTFS" -cf "$BUNDLE/layer.tar" .
rm -rf --one-file-system "$ROOTFS"
diff_id="sha256:$(sha256sum "$BUNDLE/layer.tar" | cut -d' ' -f1)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

cat > "$BUNDLE/config.json" <<JSON
{
  "architecture": "$goarch",
  "os": "linux",
  "created": "$created",
  "config": {
    "Env": [
      "PATH=$PGBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "LANG=C.UTF-8",
      "PG_MAJOR=$PG_MAJOR",
      "PG_VERSION=$PG_FULL_VERSION",
      "PGDATA=/var/lib/postgresql/data"
    ],
    "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
    "Cmd": ["postgres"],
    "ExposedPorts": {"5432/tcp": {}},
    "Volumes": {"/var/lib/postgresql/data": {}},
    "StopSignal": "SIGINT",
    "Labels": {
      "$LABEL_KEY": "$LABEL_VALUE",
      "$LABEL_KEY.pg-version": "$PG_FULL_VERSION",
      "$LABEL_KEY.debian-suite": "$SUITE"
    }
  },
  "rootfs": {"type": "layers", "diff_ids": ["$diff_id"]},
  "history": [
    {"created": "$created", "created_by": "scripts/build-pg-image.sh", "comment": "debootstrap $SUITE minbase + postgresql-$PG_MAJOR $PG_FULL_VERSION"}
  ]
}
JSON
config_name="$(sha256sum "$BUNDLE/config.json" | cut -d' ' -f1).json"
mv "$BUNDLE/config.json" "$BUNDLE/$config_name"
printf '[{"Config":"%s","RepoTags":["%s"],"Layers":["layer.tar"]}]\n' "$config_name" "$ref" > "$BUNDLE/manifest.json"

old_id="$(docker image inspect -f '{{.Id}}' "$ref" 2>/dev/null || true)"
log "loading image $ref"
tar -C "$BUNDLE" -c manifest.json "$config_name" layer.tar | docker load >&2
new_id="$(docker image inspect -f '{{.Id}}' "$ref")"
# On --force, drop the previous build if nothing else uses it (ignore failure).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
	docker image rm "$old_id" >/dev/null 2>&1 || true
fi
log "built $ref ($new_id), PostgreSQL $PG_FULL_VERSION, size $(docker image inspect -f '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1000/1000}')"
