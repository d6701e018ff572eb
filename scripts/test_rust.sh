#!/usr/bin/env bash
# The Rust half of `make test`, on any x86-64 CPU (or another architecture):
#   1. the whole suite on the best path (kernel tests iterate over every path the
#      CPU has themselves);
#   2. the tests that read RINFER_ISA (model parity, bf16/int8 model, the active
#      table) again under each forced path the CPU has; a path it lacks is skipped
#      with the features it lacks;
#   3. the whole suite again with AVX-512 masked off (RINFER_CPU_MASK=avx512f), as
#      an AVX2-only CPU runs it (skipped when the CPU has no AVX-512 to hide).
# Then one summary line per path, and every test that skipped part of its work
# (from tests/common's skip log), counted: a skip is never silent.
set -euo pipefail
cd "$(dirname "$0")/.."

ISAS=(generic avx2 avx2-vnni avx512 avx512bf16 amx neon neon-dotprod neon-i8mm neon-bf16)
ISA_TESTS=(--test parity --test families --test decoders --test generation --test lowp_model --test kernels)
LOG=target/tmp/skipped.log
mkdir -p target/tmp
: >"$LOG"
summary=()

cargo test --locked
# The example is built by the test run above; it answers which paths run here.
isa() { cargo run --locked -q --example isa -- "$@"; }
echo "== ISA paths of this CPU ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | xargs || uname -m)):"
isa

for path in "${ISAS[@]}"; do
  if why=$(isa "$path"); then
    echo "== RINFER_ISA=$path: ${ISA_TESTS[*]}"
    RINFER_ISA=$path cargo test --locked -q "${ISA_TESTS[@]}"
    summary+=("$path: passed (model parity, bf16/int8 model, kernels)")
  else
    summary+=("$why")
  fi
done

if isa avx512 >/dev/null; then
  echo "== the whole suite with RINFER_CPU_MASK=avx512f (as on an AVX2-only CPU)"
  RINFER_CPU_MASK=avx512f isa
  RINFER_CPU_MASK=avx512f cargo test --locked -q
  summary+=("avx512 masked off (RINFER_CPU_MASK=avx512f): whole suite passed")
else
  summary+=("avx512 masked off: skipped, CPU has no AVX-512 to hide (the suite above ran without it)")
fi

echo
echo "== ISA summary"
printf '%s\n' "${summary[@]}"
skips=$(sort -u "$LOG" | wc -l)
echo "== $skips distinct skips reported by the Rust tests (all runs above):"
sort "$LOG" | uniq -c | sed 's/^ */  /'
