#!/usr/bin/env bash
# Where `rinfer serve` spends its event-loop thread's time under wrk load on loopback:
# py-spy samples it for 8 s and benches/peers/profile_breakdown.py sorts the samples
# into HTTP parsing, middleware, validation, batcher hop, serialisation, event loop...
#   benches/peers/server_profile.sh [CONCURRENCY ...]     (default: 1 64)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x .bench-venv/bin/py-spy ] || .bench-venv/bin/pip install -q -r benches/peers/requirements.txt
mkdir -p bench-results
lua=$(mktemp --suffix .lua)
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs": "query 7: where is the nearest train station?"}'
LUA
.venv/bin/python -m rinfer --log-level WARNING serve --model models/all-MiniLM-L6-v2 --port 8131 --threads 2 \
  > bench-results/server_profile.log 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null; rm -f "$lua"' EXIT
for _ in $(seq 120); do curl -sf http://127.0.0.1:8131/ready >/dev/null && break; sleep 0.5; done
for c in "${@:-1 64}"; do
  for conc in $c; do
    out=bench-results/server_profile_c$conc.txt
    wrk -t1 -c"$conc" -d12s --latency -s "$lua" http://127.0.0.1:8131/embed > "$out.wrk" &
    w=$!
    sleep 1
    .bench-venv/bin/py-spy record --pid $srv --duration 8 --rate 250 --format raw --threads --nonblocking \
      -o "$out" > /dev/null 2>&1
    wait $w
    rps=$(awk '/Requests\/sec/ {print $2}' "$out.wrk")
    echo "== concurrency $conc: $rps req/s (under py-spy), p50 $(awk '$1=="50%" {print $2}' "$out.wrk")"
    .venv/bin/python benches/peers/profile_breakdown.py "$out" --rate 250 --seconds 8 --rps "$rps"
  done
done
