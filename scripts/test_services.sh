#!/usr/bin/env bash
# The tests that need real services: the PostgreSQL job store against a PostgreSQL
# started inside the test (Debian's `postgresql`: initdb + pg_ctl in a temporary folder,
# on loopback), and the Ray Serve deployment on a local Ray cluster (127.0.0.1) in a
# virtualenv of its own, so Ray never lands in .venv. Installs what is missing
# (apt-get postgresql as root, psycopg from requirements-pg.txt into .venv, Ray from
# requirements-ray.txt into $RINFER_RAY_VENV); what cannot be installed is skipped with
# the reason printed. Needs the extension built in python/rinfer (make python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RAY_VENV=${RINFER_RAY_VENV:-target/ray-venv}
export RINFER_SERVICE_TESTS=1
t0=$SECONDS

echo "== PostgreSQL job store"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing postgresql (Debian)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } ||
      echo "apt-get install postgresql failed: the PostgreSQL tests will skip"
  fi
fi
"$PY" -m pip install -q --disable-pip-version-check -r requirements-pg.txt ||
  echo "pip install -r requirements-pg.txt failed: the PostgreSQL tests will skip"
"$PY" -m pytest tests/python/test_jobs_pg.py -q -rs -p no:cacheprovider
echo "(PostgreSQL part: $((SECONDS - t0)) s)"

echo "== Ray Serve (a virtualenv of its own: $RAY_VENV)"
t1=$SECONDS
if [ ! -x "$RAY_VENV/bin/python" ] || ! cmp -s requirements-ray.txt "$RAY_VENV/.installed"; then
  rm -rf "$RAY_VENV"
  if python3 -m venv "$RAY_VENV" &&
    "$RAY_VENV/bin/pip" install -q --disable-pip-version-check -r requirements-ray.txt; then
    cp requirements-ray.txt "$RAY_VENV/.installed"
    echo "(Ray installed in $((SECONDS - t1)) s)"
  else
    echo "pip install -r requirements-ray.txt failed: the Ray Serve tests will skip"
  fi
fi
RAY_PY="$RAY_VENV/bin/python"
[ -x "$RAY_PY" ] || RAY_PY="$PY"
# the extension as built in python/rinfer (no second build); Ray's own deprecation noise muted
# twice: behind Serve's Python proxy (the default), then behind its HAProxy ingress
# (RAY_SERVE_ENABLE_HA_PROXY=1, what the README recommends for many small requests)
for haproxy in 0 1; do
  echo "-- RAY_SERVE_ENABLE_HA_PROXY=$haproxy"
  PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" RAY_USAGE_STATS_ENABLED=0 RAY_SERVE_ENABLE_HA_PROXY=$haproxy \
    "$RAY_PY" -m pytest tests/python/test_serve_ray.py -q -rs -p no:cacheprovider -W ignore::DeprecationWarning
done
echo "(Ray Serve part: $((SECONDS - t1)) s; services tests in all: $((SECONDS - t0)) s)"
