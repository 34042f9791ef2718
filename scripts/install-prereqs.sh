#!/usr/bin/env bash
# Installs what the lab needs on a fresh Debian machine (PostgreSQL 15 server and client tools,
# debootstrap for the image, iproute2 and iptables for VAL16's partition, chromium to render the
# VAL26 HTML report in a real browser) and builds the local PostgreSQL image. Idempotent and quick when everything is already there. Needs root (or sudo)
# only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v pg_dump >/dev/null && command -v pg_restore >/dev/null && command -v psql >/dev/null || missing+=(postgresql-client-15)
command -v pgbench >/dev/null || missing+=(postgresql-15)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# VAL16's partition: a network namespace per partitioned node, cut off with iptables.
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
# VAL26's HTML report is rendered headless in a test (tests/val26.rs).
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  scripts/build-pg-image.sh
else
  echo "docker does not answer: the docker backend will be unavailable (the process backend still runs)" >&2
fi
