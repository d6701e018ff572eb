#!/usr/bin/env bash
# Base-size XLM-RoBERTa, MPNet and ModernBERT shapes: rinfer vs PyTorch and ONNX
# Runtime in one run. The peers live only in the bench virtualenv .bench-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
cargo build --locked --release --example model_timing
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  .bench-venv/bin/python benches/peers/family_peers.py --binary target/release/examples/model_timing "$@"
