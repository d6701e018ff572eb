#!/usr/bin/env bash
# rinfer GEMM vs numpy (OpenBLAS) and PyTorch in one run. The peers live only in the
# bench virtualenv .bench-venv, never in rinfer's runtime dependencies.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
cargo build --locked --release --example gemm_timing
# OPENBLAS_CORETYPE/L2_SIZE, where the machine sets them, slow a current OpenBLAS:
# unset them for this command alone (the script prints which kernel OpenBLAS runs).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  .bench-venv/bin/python benches/peers/gemm_peers.py --binary target/release/examples/gemm_timing "$@"
