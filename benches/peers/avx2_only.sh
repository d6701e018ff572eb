#!/usr/bin/env bash
# Runs a command as on an AVX2-only CPU: every CPUID that the command and its child
# processes execute is answered without AVX-512, AVX-VNNI, AVX10 and AMX (CPUID faulting,
# see cpuid_mask.c), and glibc is asked to leave its AVX-512 string routines aside, so
# rinfer, PyTorch (oneDNN, MKL) and ONNX Runtime all choose their AVX2 kernels.
#
#   benches/peers/avx2_only.sh COMMAND [ARGS...]
#   e.g. benches/peers/avx2_only.sh make bench-model
#
# Needs a CPU with CPUID faulting (Intel, and virtual machines on Intel hosts; flag
# cpuid_fault in /proc/cpuinfo); it refuses to run where there is none. The cores stay
# the host's: quote figures as "<this CPU>, AVX-512 hidden", not as another CPU model.
set -euo pipefail
[ $# -gt 0 ] || { sed -n 2,9p "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
lib=$here/../../target/avx2-only/cpuid_mask.so
if [ ! -s "$lib" ] || [ "$here/cpuid_mask.c" -nt "$lib" ]; then
  mkdir -p "$(dirname "$lib")"
  gcc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$lib" "$here/cpuid_mask.c" -ldl
fi
grep -qw cpuid_fault /proc/cpuinfo || { echo "avx2_only: this CPU has no cpuid_fault" >&2; exit 2; }
export LD_PRELOAD=$(realpath "$lib")${LD_PRELOAD:+:$LD_PRELOAD}
export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX_VNNI${GLIBC_TUNABLES:+:$GLIBC_TUNABLES}
exec "$@"
