#!/usr/bin/env bash
# The project's one test command.
#
#   scripts/test.sh [ARGS for cargo test...]     e.g. scripts/test.sh -p ralmspec-lm -- --nocapture
#
# 1. Python venv for the reference scripts at <store>/venv, (re)installed from
#    scripts/requirements.txt whenever that file changes; exported as RALMSPEC_PYTHON.
# 2. Fetches the real models and data the tests use into the store (a no-op once present).
# 3. Starts a PostgreSQL 18 + pgvector primary and a hot-standby replica of it with
#    scripts/postgres.sh (names primary and replica, 127.0.0.1:55432 and :55433), exports their
#    URLs as RALMSPEC_TEST_DATABASE and RALMSPEC_TEST_REPLICA, and stops them on exit (those it
#    started; clusters already running are left running). It also exports
#    RALMSPEC_REQUIRE_POSTGRES=1, so the database tests fail rather than skip. RALMSPEC_NO_POSTGRES=1
#    skips this step and the database tests skip too (CI never sets it).
# 4. Installs Debian's Chromium and the page test's npm package (RALMSPEC_NO_BROWSER=1 skips).
# 5. cargo test --release --workspace "$@" (without --workspace when "$@" names a -p package).
# 6. Without arguments (the whole suite, as CI runs it): the GPU forward's tests on candle's CPU
#    device, `RALMSPEC_CUDA_TEST_ON_CPU=1 cargo test --release -p ralmspec-lm --features
#    gpu-forward --test cuda` (no CUDA toolkit needed; ~10 s on 2 cores, plus compiling
#    ralmspec-lm once more with the feature).
#
# The store is $RALMSPEC_HOME, else $XDG_CACHE_HOME/ralmspec, else ~/.cache/ralmspec (the same
# rule as ralmspec_assets::Store::from_env); it is exported as RALMSPEC_HOME so that every
# step and every test agrees on it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
step() { printf '\n== %s (t=%ds)\n' "$*" "$((SECONDS - started))" >&2; }

if [[ -n "${RALMSPEC_HOME:-}" ]]; then
  store=$RALMSPEC_HOME
elif [[ "${XDG_CACHE_HOME:-}" == /* ]]; then
  store=$XDG_CACHE_HOME/ralmspec
else
  store=${HOME:?set HOME or RALMSPEC_HOME}/.cache/ralmspec
fi
if [[ "$store" != /* ]]; then
  echo "error: RALMSPEC_HOME=$store must be an absolute path" >&2
  exit 2
fi
export RALMSPEC_HOME=$store

# --- 1. Python venv for the reference scripts -------------------------------------------
step "python venv ($store/venv)"
venv=$store/venv
requirements=scripts/requirements.txt
python=${PYTHON:-python3}
stamp_want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" --version 2>&1)"
stamp_file=$venv/.requirements.stamp
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  mkdir -p "$store"
  "$python" -m venv "$venv" || {
    echo "error: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
    exit 1
  }
fi
if [[ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_want" ]]; then
  echo "installing $requirements into $venv" >&2
  rm -f "$stamp_file"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    --requirement "$requirements"
  echo "$stamp_want" >"$stamp_file"
else
  echo "up to date with $requirements" >&2
fi
export RALMSPEC_PYTHON=$venv/bin/python

# --- 2. Assets -------------------------------------------------------------------------
step "assets ($store)"
cargo run --release -p ralmspec-cli -- fetch smollm2 qwen2.5-0.5b minilm wiki-kb fanoutqa >/dev/null

# --- 3. PostgreSQL ----------------------------------------------------------------------
if [[ "${RALMSPEC_NO_POSTGRES:-}" == 1 ]]; then
  step "postgres: skipped (RALMSPEC_NO_POSTGRES=1)"
else
  step "postgres: primary and replica (scripts/postgres.sh)"
  pg_to_stop=() # replica first: stopped before its primary
  for name in replica primary; do
    scripts/postgres.sh status --name "$name" >/dev/null 2>&1 || pg_to_stop+=("$name")
  done
  stop_postgres() {
    local name
    for name in "${pg_to_stop[@]}"; do
      scripts/postgres.sh stop --name "$name" || true
    done
  }
  trap stop_postgres EXIT
  RALMSPEC_TEST_DATABASE=$(scripts/postgres.sh start)
  RALMSPEC_TEST_REPLICA=$(scripts/postgres.sh start --replica)
  export RALMSPEC_TEST_DATABASE RALMSPEC_TEST_REPLICA
  # The database tests skip without a database; here one was started, so they must run.
  export RALMSPEC_REQUIRE_POSTGRES=1
  echo "RALMSPEC_TEST_DATABASE=$RALMSPEC_TEST_DATABASE RALMSPEC_TEST_REPLICA=$RALMSPEC_TEST_REPLICA" >&2
fi

# --- 4. The browser for the web page's test -----------------------------------------------
# Debian's Chromium (apt) and playwright-core (npm, pinned by its package-lock.json) for
# crates/server/tests/browser.rs, which must then run (RALMSPEC_REQUIRE_BROWSER=1).
# RALMSPEC_NO_BROWSER=1 skips this step, and the test skips too (CI never sets it).
if [[ "${RALMSPEC_NO_BROWSER:-}" == 1 ]]; then
  step "browser: skipped (RALMSPEC_NO_BROWSER=1)"
else
  step "browser: Debian's chromium and playwright-core"
  if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    apt() { "${sudo[@]}" apt-get "$@" >/dev/null; }
    install=(install -y --no-install-recommends chromium)
    apt "${install[@]}" || { apt update && apt "${install[@]}"; } || {
      echo "error: could not install Debian's chromium (apt-get install chromium)" >&2
      exit 1
    }
  fi
  (cd crates/server/tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  export RALMSPEC_REQUIRE_BROWSER=1
fi

# --- 5. Tests --------------------------------------------------------------------------
# cargo ignores -p when --workspace is given, so --workspace is only added without one.
scope=(--workspace)
for arg in "$@"; do
  case $arg in
    --) break ;;
    -p | -p* | --package | --package=*) scope=() ;;
  esac
done
step "cargo test --release ${scope[*]} $*"
cargo test --release "${scope[@]}" "$@"

# --- 6. The GPU forward on candle's CPU device ----------------------------------------------
# Default builds compile nothing of the GPU forward; the `gpu-forward` feature compiles it
# without CUDA, and its tests then run the very code that runs on a GPU on candle's CPU device.
if [[ $# == 0 ]]; then
  step "GPU forward on candle's CPU: cargo test --release -p ralmspec-lm --features gpu-forward --test cuda"
  RALMSPEC_CUDA_TEST_ON_CPU=1 cargo test --release -p ralmspec-lm --features gpu-forward --test cuda
fi
step "done"
