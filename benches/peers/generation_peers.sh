#!/usr/bin/env bash
# Text generation on a Qwen2.5-0.5B-shaped decoder: rinfer (f32, bf16, int8) vs
# llama.cpp (llama-cpp-python; GGUF f32, f16, bf16, q8_0) vs PyTorch generate, in one
# run. The peers live only in the bench virtualenv .bench-venv (llama-cpp-python
# builds llama.cpp from source there: a C/C++ compiler and a few minutes). llama.cpp's
# converter comes from the sdist of the same pinned llama-cpp-python.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
ver=$(sed -n 's/^llama-cpp-python==//p' benches/peers/requirements.txt)
conv=.bench-venv/src/llama_cpp_python-$ver/vendor/llama.cpp
if [ ! -f "$conv/convert_hf_to_gguf.py" ]; then
  tmp=$(mktemp -d)
  # The sdist only (its build dependencies as wheels): vendor/llama.cpp has the converter.
  .bench-venv/bin/pip download --disable-pip-version-check -q --no-deps \
    --no-binary llama-cpp-python "llama-cpp-python==$ver" -d "$tmp"
  mkdir -p .bench-venv/src
  tar xzf "$tmp/llama_cpp_python-$ver.tar.gz" -C .bench-venv/src \
    "llama_cpp_python-$ver/vendor/llama.cpp/convert_hf_to_gguf.py" \
    "llama_cpp_python-$ver/vendor/llama.cpp/conversion" \
    "llama_cpp_python-$ver/vendor/llama.cpp/gguf-py"
  rm -rf "$tmp"
fi
cargo build --locked --release --example gen_timing
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  .bench-venv/bin/python benches/peers/generation_peers.py \
  --binary target/release/examples/gen_timing --converter "$conv" "$@"
