#!/usr/bin/env bash
# all-MiniLM-L6-v2: rinfer vs PyTorch and ONNX Runtime in one run. The peers live
# only in the bench virtualenv .bench-venv, never in rinfer's runtime dependencies.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/fetch_model.sh
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
cargo build --locked --release --example model_timing
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  .bench-venv/bin/python benches/peers/model_peers.py --binary target/release/examples/model_timing "$@"
