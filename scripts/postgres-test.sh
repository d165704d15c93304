#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (PostgresPeerStore), on a free loopback port.
#
#   scripts/postgres-test.sh deps        installs the Debian package `postgresql` if initdb is
#                                        missing (needs root and apt-get)
#   scripts/postgres-test.sh start DIR   initdb into DIR/data, starts the server on 127.0.0.1
#                                        and prints POSTGRES_URL=postgres://... on stdout
#   scripts/postgres-test.sh stop DIR    stops it (DIR can then be removed)
#
# PostgreSQL refuses to run as root: run as root, the script runs the server as the user
# $BSV_PG_USER (default `bsvtest`, created as a system user if missing; `nobody` when useradd is
# unavailable) and gives it DIR. Authentication is `trust` on loopback only, the superuser is
# `postgres`, and fsync is off: a test server, never a real one. The Unix socket lives in DIR.
set -euo pipefail

die() { echo "postgres-test.sh: $*" >&2; exit 1; }

find_bin_dir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return
    fi
  done
  return 1
}

# Runs "$@" as the server's user (directly when not root).
as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if id -u "$PG_USER" >/dev/null 2>&1; then
    return 0
  fi
  if command -v useradd >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" >/dev/null 2>&1 \
      || id -u "$PG_USER" >/dev/null 2>&1 || die "cannot create user $PG_USER"
  else
    PG_USER=nobody
  fi
}

# A loopback port nothing listens on (bash's /dev/tcp: a refused connect means free).
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM % 20000) ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

PG_USER=${BSV_PG_USER:-bsvtest}
cmd=${1:-}
case "$cmd" in
  deps)
    if find_bin_dir >/dev/null; then
      echo "PostgreSQL found in $(find_bin_dir)"
      exit 0
    fi
    [ "$(id -u)" -eq 0 ] || die "initdb not found; install the Debian package postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    # The package's own cluster is not needed: the tests start their own.
    if command -v pg_ctlcluster >/dev/null 2>&1; then
      for c in /etc/postgresql/*/main; do
        [ -d "$c" ] || continue
        v=$(basename "$(dirname "$c")")
        pg_ctlcluster "$v" main stop >/dev/null 2>&1 || true
      done
    fi
    find_bin_dir >/dev/null || die "postgresql installed but initdb still not found"
    echo "PostgreSQL installed in $(find_bin_dir)"
    ;;
  start)
    DIR=${2:-}
    [ -n "$DIR" ] || die "usage: $0 start DIR"
    BIN=$(find_bin_dir) || die "initdb not found (run: $0 deps)"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    [ ! -e "$DIR/data/PG_VERSION" ] || die "$DIR/data already holds a cluster"
    ensure_user
    if [ "$(id -u)" -eq 0 ]; then
      chown "$PG_USER" "$DIR"
      chmod 700 "$DIR"
      as_user test -w "$DIR" || die "$PG_USER cannot write $DIR (is a parent folder private?)"
    fi
    as_user "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-sync \
      >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    started=
    for attempt in 1 2 3 4 5; do
      PORT=$(free_port) || die "no free loopback port"
      if as_user "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 \
          -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
          start >/dev/null 2>&1; then
        started=1
        break
      fi
      # Another process took the port between the probe and the start: try another.
    done
    [ -n "$started" ] || { tail -n 20 "$DIR/postgres.log" >&2 || true; die "pg_ctl start failed"; }
    echo "$PORT" >"$DIR/port"
    echo "POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    DIR=${2:-}
    [ -n "$DIR" ] || die "usage: $0 stop DIR"
    [ -f "$DIR/data/postmaster.pid" ] || exit 0
    BIN=$(find_bin_dir) || die "pg_ctl not found"
    if [ "$(id -u)" -eq 0 ]; then
      PG_USER=$(stat -c %U "$DIR/data")
    fi
    as_user "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    ;;
  *)
    die "usage: $0 deps | start DIR | stop DIR"
    ;;
esac
