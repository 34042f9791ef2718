#!/usr/bin/env bash
# Installs what the lab needs on a fresh Debian machine (PostgreSQL 15 server and client tools,
# debootstrap for the image, iproute2 and iptables for VAL16's partition, chromium to render the
# VAL26 HTML report in a real browser, gpg as the encryption's oracle, prometheus's promtool for the alert rules, etcd and etcdctl for the lab's etcd clusters, protoc for the etcd client's
# generated code), the lab's S3 server (s3s-fs, built from crates.io) and
# builds the local PostgreSQL image. Idempotent and quick when everything is already there. Needs root (or sudo)
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
# The independent OpenPGP oracle: encrypted archives must open with plain `gpg --decrypt`.
command -v gpg >/dev/null && command -v gpg-agent >/dev/null || missing+=(gnupg)
# promtool checks the shipped alert rules and the /metrics exposition (tests/metrics.rs).
command -v promtool >/dev/null || missing+=(prometheus)
# The lease on etcd: the lab starts real three-member etcd clusters on loopback (lab/src/etcd.rs).
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
# The etcd-client crate generates its gRPC code from etcd's .proto files at build time.
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The lab's S3 server (a real SigV4 S3 over a directory, from crates.io): the S3 backup store's
# tests and slices run against it on loopback. 0.14.1 is the newest that builds with rustc 1.92+.
S3S_FS_VERSION=0.14.1
if ! command -v s3s-fs >/dev/null || ! s3s-fs --version 2>/dev/null | grep -q " $S3S_FS_VERSION\$"; then
  echo "installing: s3s-fs $S3S_FS_VERSION (cargo install)" >&2
  cargo install --quiet --locked --force s3s-fs --version "$S3S_FS_VERSION" --features binary
fi

if docker info >/dev/null 2>&1; then
  scripts/build-pg-image.sh
else
  echo "docker does not answer: the docker backend will be unavailable (the process backend still runs)" >&2
fi
