#!/usr/bin/env bash
# The Rust half of `make test`, on any x86-64 CPU (or another architecture):
#   1. the whole suite on the best path (kernel tests iterate over every path the
#      CPU has themselves);
#   2. the tests that read RINFER_ISA (model parity, bf16/int8 model, the active
#      table) again under each forced path the CPU has; a path it lacks is skipped
#      with the features it lacks;
#   3. the whole suite again with AVX-512 masked off (RINFER_CPU_MASK=avx512f), as
#      an AVX2-only CPU runs it (skipped when the CPU has no AVX-512 to hide);
#   4. where the CPU has CPUID faulting, the kernel and int8/bf16 tests with AVX-512,
#      AVX-VNNI and AMX hidden from CPUID itself (benches/peers/avx2_only.sh).
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

# The CPU's own detection, not rinfer's mask: every CPUID the test processes execute is
# answered without AVX-512, AVX-VNNI and AMX (benches/peers/avx2_only.sh, which needs
# CPUID faulting), so the paths are chosen as on an AVX2-only machine.
if ! isa avx512 >/dev/null; then
  summary+=("AVX-512 hidden from CPUID: skipped, CPU has no AVX-512 to hide")
elif ! grep -qw cpuid_fault /proc/cpuinfo 2>/dev/null || ! ./benches/peers/avx2_only.sh true 2>/dev/null; then
  summary+=("AVX-512 hidden from CPUID: skipped, CPU or kernel has no CPUID faulting (cpuid_fault)")
else
  echo "== AVX-512 hidden from CPUID (benches/peers/avx2_only.sh): ISA paths, kernels, lowp"
  hidden=$(./benches/peers/avx2_only.sh cargo run --locked -q --example isa)
  echo "$hidden"
  if ! grep -qx 'avx2: supported' <<<"$hidden" || grep -q '^avx512.*: supported' <<<"$hidden"; then
    echo "AVX-512 hidden from CPUID: detection did not see an AVX2-only CPU" >&2
    exit 1
  fi
  ./benches/peers/avx2_only.sh cargo test --locked -q --test kernels --test lowp --test lowp_model
  summary+=("AVX-512 hidden from CPUID (CPUID faulting): detection saw AVX2 only; kernels, lowp, lowp_model passed")
fi

echo
echo "== ISA summary"
printf '%s\n' "${summary[@]}"
skips=$(sort -u "$LOG" | wc -l)
echo "== $skips distinct skips reported by the Rust tests (all runs above):"
sort "$LOG" | uniq -c | sed 's/^ */  /'
