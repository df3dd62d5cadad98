#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of fuzz/ for SECONDS each, one after the other.
#
#   scripts/fuzz.sh [SECONDS]        (default: $FUZZ_SECONDS, else 60)
#   FUZZ_TARGETS="sse list_filter" scripts/fuzz.sh 300     only these targets
#
# Stable Rust is enough: cargo-fuzz passes -Zsanitizer=address (and other -Z flags), which a
# stable rustc accepts with RUSTC_BOOTSTRAP=1 (the ASan runtime ships with the stable toolchain).
# FUZZ_SANITIZER=none builds without ASan (faster, catches panics only). cargo-fuzz is installed
# at the pinned version when missing. The build goes to its own target dir (FUZZ_TARGET_DIR,
# default ~/.cache/mcp-warden/fuzz-target), never the workspace's; the corpus libFuzzer grows goes
# to FUZZ_CORPUS_DIR (default ~/.cache/mcp-warden/fuzz-corpus/<target>), the committed seeds in
# fuzz/corpus/<target> are only read. A crash, panic, leak or timeout is written to
# fuzz/artifacts/<target>/ (gitignored); reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# Exits non-zero when a committed seed fails (a regression), when a target fails to build, or
# when a target finds something new (only reported with FUZZ_REPORT_ONLY=1, as CI runs it).
# MCP_WARDEN_FUZZ_LENIENT_CLIENT=1 makes list_filter read answers as a JavaScript client does
# (see fuzz/fuzz_targets/list_filter.rs).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARGO_FUZZ_VERSION=0.13.2
EACH=${1:-${FUZZ_SECONDS:-60}}
[[ $EACH =~ ^[0-9]+$ && $EACH -gt 0 ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcp-warden
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$CACHE/fuzz-target}
CORPUS_ROOT=${FUZZ_CORPUS_DIR:-$CACHE/fuzz-corpus}
LOG_DIR=$CACHE/fuzz-logs
SANITIZER=${FUZZ_SANITIZER:-address}
# Debug assertions and overflow checks on: an overflow in the sidecar is a finding.
FLAGS=(--sanitizer "$SANITIZER" --debug-assertions)
export RUSTC_BOOTSTRAP=1
CARGO=${CARGO:-cargo}
NICE=(nice -n "${FUZZ_NICE:-10}")

if [[ $("$CARGO" fuzz --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "+ cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked"
  "${NICE[@]}" "$CARGO" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd "$REPO_ROOT"
read -r -a TARGETS <<<"${FUZZ_TARGETS:-$("$CARGO" fuzz list | tr '\n' ' ')}"
mkdir -p "$LOG_DIR"
SECONDS=0
echo "+ cargo fuzz build ${FLAGS[*]} (target dir $CARGO_TARGET_DIR)"
"${NICE[@]}" "$CARGO" fuzz build "${FLAGS[@]}"
echo "== build: ${SECONDS}s"

failed=()
regressed=()
for target in "${TARGETS[@]}"; do
  # The committed seeds (earlier findings among them) first: a crash there is a regression.
  if ! "${NICE[@]}" "$CARGO" fuzz run "${FLAGS[@]}" "$target" "fuzz/corpus/$target" -- -runs=0 \
    >"$LOG_DIR/$target.seeds.log" 2>&1; then
    regressed+=("$target")
    echo "== $target: a committed seed fails (log $LOG_DIR/$target.seeds.log):"
    grep -E -m 6 'panicked at|^SUMMARY|Test unit written to' "$LOG_DIR/$target.seeds.log" | sed 's/^/     /' || true
  fi
  corpus=$CORPUS_ROOT/$target
  log=$LOG_DIR/$target.log
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  echo "== $target: ${EACH}s (log $log)"
  status=0
  "${NICE[@]}" "$CARGO" fuzz run "${FLAGS[@]}" "$target" "$corpus" "fuzz/corpus/$target" -- \
    -max_total_time="$EACH" -timeout=25 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([^ ]*\).*/cov \1, features \2, corpus \3/p' <<<"$last")
  echo "   execs ${execs:-?} (${rate:-?}/s), ${cov:-no coverage line}"
  if ((status != 0)); then
    failed+=("$target")
    echo "   FINDING (exit $status):"
    grep -E -m 12 'panicked at|^thread |^==[0-9]+==ERROR|^SUMMARY|Test unit written to|^Base64:|ALARM|timeout after|out-of-memory' "$log" | sed 's/^/     /' || true
  fi
done

if ((${#regressed[@]})); then
  echo "== regressions (a committed seed fails) in: ${regressed[*]}"
  exit 1
fi
if ((${#failed[@]})); then
  echo "== findings in: ${failed[*]} (artifacts in fuzz/artifacts/, logs in $LOG_DIR)"
  # FUZZ_REPORT_ONLY=1 (CI): new findings are reported, not fatal; add the artifact to
  # fuzz/corpus/<target>/ as a seed once fixed, and it gates every later run.
  [[ ${FUZZ_REPORT_ONLY:-0} == 1 ]] || exit 1
  exit 0
fi
echo "== no findings (${#TARGETS[@]} targets, ${EACH}s each)"
