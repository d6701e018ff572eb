#!/usr/bin/env bash
# rinfer's HTTP server vs the in-process engine and a naive FastAPI +
# sentence-transformers server, in one run (wrk on loopback). The peers live only
# in the bench virtualenv .bench-venv, never in rinfer's runtime dependencies.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/fetch_model.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x .bench-venv/bin/python ] || python3 -m venv .bench-venv
.bench-venv/bin/pip install --disable-pip-version-check -q -r benches/peers/requirements.txt
.venv/bin/python benches/server_bench.py "$@"
