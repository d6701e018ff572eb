#!/usr/bin/env bash
# The aarch64 kernels (neon, neon-dotprod, neon-i8mm, neon-bf16) on an x86-64
# machine: cross-compile the kernel, GEMM, attention and bf16/int8 tests and run them
# under qemu-aarch64, with `-cpu max` (NEON, dotprod, i8mm, bf16: every path, SDOT,
# USMMLA and BFMMLA included) and `-cpu cortex-a72` (NEON only: the fallbacks, the
# other three paths reported skipped with what the CPU lacks). Correctness only:
# emulation says nothing about speed.
# Installs the cross linker, qemu and the Rust target when missing; where they
# cannot be installed it says so and skips (exit 0), so the x86-64 suite still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
TESTS=(kernels gemm attention lowp)

if [ "$(uname -m)" = aarch64 ]; then
  echo "aarch64: native machine, the main suite already ran these paths"
  exit 0
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "== installing gcc-aarch64-linux-gnu and qemu-user"
    apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null || true
  fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  rustup target add "$TARGET" >/dev/null 2>&1 || true
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "aarch64: skipped, $tool is not installed and could not be (apt-get as root needed)"
    exit 0
  fi
done
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "aarch64: skipped, the Rust target $TARGET could not be added"
  exit 0
fi

echo "== cross-compiling the kernel tests for $TARGET"
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
  cargo test --locked -q --target "$TARGET" --no-run "${args[@]}" 2>&1 | grep -v "^ *Executable" || true
summary=()
for cpu in max cortex-a72; do
  for t in "${TESTS[@]}"; do
    bin=$(ls -t target/$TARGET/debug/deps/$t-* | grep -v '\.d$' | head -1)
    echo "== qemu-aarch64 -cpu $cpu: $t"
    out=$(qemu-aarch64 -cpu "$cpu" -L /usr/aarch64-linux-gnu "$bin" -q --nocapture 2>&1) || {
      echo "$out"
      echo "aarch64 -cpu $cpu: $t FAILED"
      exit 1
    }
    echo "$out" | grep -E "^test result"
  done
  kbin=$(ls -t target/$TARGET/debug/deps/kernels-* | grep -v '\.d$' | head -1)
  skips=$(qemu-aarch64 -cpu "$cpu" -L /usr/aarch64-linux-gnu "$kbin" -q --nocapture gelu_erf 2>&1 |
    grep -o "SKIPPED ISA path neon[a-z0-9-]*: .*" | sed 's/^SKIPPED ISA path //' | sort -u |
    paste -sd ';' | sed 's/;/; /g' || true)
  summary+=("aarch64 -cpu $cpu: kernel, GEMM, attention, bf16/int8 tests passed under emulation${skips:+ (skipped: $skips)}")
done
echo
echo "== aarch64 summary (emulated: correctness only, no ARM timing measured)"
printf '%s\n' "${summary[@]}"
