#!/usr/bin/env bash
# rinfer's HTTP server vs the in-process engine, a naive FastAPI + sentence-transformers
# server and infinity-emb, in one run (wrk on loopback). The peers live only in the bench
# virtualenvs, never in rinfer's runtime dependencies: .bench-venv, and
# .bench-venv/infinity for infinity-emb, whose pins clash with .bench-venv's
# (benches/peers/requirements-infinity.txt says which). That one sees .bench-venv's
# packages behind its own (a .pth file), so it reuses its torch and onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/fetch_model.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
[ -x .bench-venv/infinity/bin/python ] || .bench-venv/bin/python -m venv .bench-venv/infinity
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
bench_site=$(.bench-venv/bin/python -c "$purelib")
infinity_site=$(.bench-venv/infinity/bin/python -c "$purelib")
printf 'import site; site.addsitedir(%s)\n' "'$bench_site'" >"$infinity_site/zz_bench_venv.pth"
.bench-venv/infinity/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements-infinity.txt
.venv/bin/python benches/server_bench.py "$@"
