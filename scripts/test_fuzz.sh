#!/usr/bin/env bash
# Fuzzes rinfer for a bounded time: every cargo-fuzz target of tests/fuzz/
# (libFuzzer, nightly toolchain) is built once, then run for RINFER_FUZZ_SECONDS
# (default 30) from its committed corpus, tests/fuzz/corpus/<target>/ (what it
# finds goes to tests/fuzz/target/corpus/<target>/, git-ignored, emptied at each
# start). One line per target: executions and result. Exits non-zero when a target crashed
# (a panic, an abort, a sanitizer report), ran out of memory (libFuzzer's 2 GB) or
# took over RINFER_FUZZ_TIMEOUT seconds (default 60) on one input; the input is
# left in tests/fuzz/artifacts/<target>/. Once the bug is fixed, commit it to
# tests/fuzz/regressions/<target>/: `cargo test` (tests/fuzz_regressions.rs)
# replays every committed input through the same rinfer::fuzzing functions.
#
# Installs what it needs: the nightly toolchain (minimal profile) and cargo-fuzz
# (pinned below) when missing. RINFER_FUZZ_SANITIZER: none (the default: panics,
# overflows and failed assertions are caught, and it builds in about half the
# time of AddressSanitizer and runs 5-9x faster) or address (the scheduled CI job:
# checks the kernels' unsafe SIMD code too). RINFER_FUZZ_TARGETS: a subset,
# space-separated.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${RINFER_FUZZ_SECONDS:-30}
TIMEOUT=${RINFER_FUZZ_TIMEOUT:-60}
SANITIZER=${RINFER_FUZZ_SANITIZER:-none}
DIR=tests/fuzz

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal
fi
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

read -r -a all <<<"$(cargo +nightly fuzz list --fuzz-dir "$DIR" | tr '\n' ' ')"
read -r -a targets <<<"${RINFER_FUZZ_TARGETS:-${all[*]}}"
fuzz=(cargo +nightly fuzz)
opts=(--fuzz-dir "$DIR" --sanitizer "$SANITIZER")

start=$(date +%s)
echo "== building ${#all[@]} fuzz targets (release, debug assertions, sanitizer: $SANITIZER)"
"${fuzz[@]}" build "${opts[@]}"
built=$(($(date +%s) - start))
echo "== built in ${built}s; fuzzing each target for ${SECONDS_EACH}s"

results=()
failed=0
for t in "${targets[@]}"; do
  work=$DIR/target/corpus/$t
  artifacts=$DIR/artifacts/$t
  log=$DIR/target/fuzz-$t.log
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  set +e
  "${fuzz[@]}" run "${opts[@]}" "$t" "$work" "$DIR/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout="$TIMEOUT" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  corpus=$(find "$work" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    results+=("$t: ok, ${execs:-?} execs in ${SECONDS_EACH}s ($corpus inputs in its corpus)")
  else
    failed=1
    what=$(grep -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|SUMMARY: libFuzzer" "$log" || true)
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
    results+=("$t: FAILED (exit $rc) after ${execs:-?} execs: ${what:-see $log}; input: ${input:-none written}; log: $log")
    tail -n 40 "$log"
  fi
done

echo
echo "== fuzz summary (${SECONDS_EACH}s per target, built in ${built}s, $(($(date +%s) - start))s in all)"
printf '%s\n' "${results[@]}"
exit "$failed"
