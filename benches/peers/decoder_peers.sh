#!/usr/bin/env bash
# A Qwen3-Embedding-0.6B-shaped decoder: rinfer (f32, bf16, int8) vs PyTorch in one
# run. The peers live only in the bench virtualenv .bench-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
cargo build --locked --release --example model_timing
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  .bench-venv/bin/python benches/peers/decoder_peers.py --binary target/release/examples/model_timing "$@"
