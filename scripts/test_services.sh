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
