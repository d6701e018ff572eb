"""scripts/project_urls.py, which the release workflow runs before building so the
wheels and the sdist carry the repository's real address in [project.urls]."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/project_urls.py"
spec = importlib.util.spec_from_file_location("project_urls", SCRIPT)
project_urls = importlib.util.module_from_spec(spec)
spec.loader.exec_module(project_urls)


def run(tmp_path, env):
    target = tmp_path / "pyproject.toml"
    if not target.exists():
        shutil.copy(ROOT / "pyproject.toml", target)
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(target)], env=env, capture_output=True, text=True, check=False
    ), target


def test_writes_the_repository_urls_and_keeps_the_rest(tmp_path):
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "owner-x/rinfer"}
    done, target = run(tmp_path, env)
    assert done.returncode == 0, done.stderr
    before = tomllib.loads((ROOT / "pyproject.toml").read_text())
    after = tomllib.loads(target.read_text())
    urls = after["project"].pop("urls")
    before["project"].pop("urls", None)
    assert after == before  # nothing else changed
    assert urls["Source"] == "https://github.com/owner-x/rinfer"
    assert urls["Issues"] == "https://github.com/owner-x/rinfer/issues"
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    # twice: the table is replaced, not repeated
    text = target.read_text()
    done, _ = run(tmp_path, env)
    assert done.returncode == 0 and target.read_text() == text


def test_refuses_without_or_with_a_bad_address(tmp_path):
    done, target = run(tmp_path, {})
    assert done.returncode == 2 and "not set" in done.stderr
    assert "urls" not in tomllib.loads(target.read_text())["project"]
    done, _ = run(tmp_path, {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "no-slash"})
    assert done.returncode == 2 and "owner/name" in done.stderr
    with pytest.raises(ValueError, match="https origin"):
        project_urls.urls("http://example.com/x", "a/b")
