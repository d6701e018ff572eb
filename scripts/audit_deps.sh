#!/usr/bin/env bash
# Known vulnerabilities in the pinned dependencies:
# - pip-audit (pinned in requirements-dev.txt) on requirements-dev.txt, requirements-pg.txt
#   and requirements-ray.txt, against PyPI's vulnerability data. Every line of these files
#   is an exact pin, so each is looked up as pinned (--no-deps: nothing is installed or
#   resolved); what a pinned package brings without a pin of its own (most of Ray's
#   dependencies) is not checked here.
# - cargo audit on Cargo.lock against the RustSec advisory database, when cargo-audit is
#   installed (cargo install cargo-audit --locked); skipped with a line saying so otherwise.
# Both need the network, so this is a CI job of its own (.github/workflows/ci.yml), not a
# step of `make test`. Exits non-zero on a known vulnerability, and on a dependency that
# could not be looked up (--strict): a check that could not look is not a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
status=0

for req in requirements-dev.txt requirements-pg.txt requirements-ray.txt; do
  echo "== pip-audit -r $req"
  if ! "$PY" -m pip_audit --requirement "$req" --no-deps --disable-pip --strict \
    --progress-spinner off --desc on; then
    echo "pip-audit -r $req: FAILED (a known vulnerability, or a pin that could not be looked up; see above)"
    status=1
  fi
done

if cargo audit --version >/dev/null 2>&1; then
  echo "== cargo audit (Cargo.lock)"
  if ! cargo audit; then
    echo "cargo audit: FAILED (see above)"
    status=1
  fi
else
  echo "== cargo audit: skipped, cargo-audit is not installed (cargo install cargo-audit --locked)"
fi

exit "$status"
