#!/usr/bin/env bash
# rinfer on Ray Serve (2 replicas x 1 thread) against one rinfer process (2 threads),
# same load, one run: benches/ray_bench.py in the Ray virtualenv (target/ray-venv, as
# scripts/test_services.sh makes it; Ray never lands in .venv). Needs the extension
# built in python/rinfer (make python). Table on stdout; JSON and plot in bench-results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
RAY_VENV=${RINFER_RAY_VENV:-target/ray-venv}
./scripts/fetch_model.sh
if [ ! -x "$RAY_VENV/bin/python" ] || ! cmp -s requirements-ray.txt "$RAY_VENV/.installed"; then
  rm -rf "$RAY_VENV"
  python3 -m venv "$RAY_VENV"
  "$RAY_VENV/bin/pip" install -q --disable-pip-version-check -r requirements-ray.txt
  cp requirements-ray.txt "$RAY_VENV/.installed"
fi
PYTHONPATH=python \
  "$RAY_VENV/bin/python" benches/ray_bench.py "$@"
