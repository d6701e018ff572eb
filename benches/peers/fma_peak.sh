#!/usr/bin/env bash
# The f32 FMA ceiling of this CPU (benches/peers/fma_peak.c: independent register-only
# FMA chains, one thread per core, AVX2 and AVX-512 widths): the GFLOP/s no f32 matrix
# code can pass here. Quoted next to model benchmarks to say how close to the hardware
# an engine runs. Usage: fma_peak.sh [THREADS] (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/fma_peak
mkdir -p target
gcc -O2 -pthread benches/peers/fma_peak.c -o "$out"
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
"$out" "${1:-2}"
