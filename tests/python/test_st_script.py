"""A script written for sentence-transformers runs on rinfer by changing its import
line, and prints what sentence-transformers printed (tests/python/data/
st_user_script.py; sentence-transformers' own output is kept beside it, made in the
bench environment by the command in the script's docstring)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

DATA = pathlib.Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def outputs(model_dir) -> tuple[dict, dict]:
    run = subprocess.run(
        [sys.executable, str(DATA / "st_user_script.py"), "rinfer"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout), json.loads((DATA / "st_user_script.golden.json").read_text())


def test_the_script_prints_what_sentence_transformers_printed(outputs):
    got, want = outputs
    assert set(got) == set(want)
    assert got["dim"] == want["dim"] == 384 and got["max_seq_length"] == want["max_seq_length"]
    for key in want:
        if key in ("dim", "max_seq_length", "rank", "tokens"):
            continue
        g, w = np.asarray(got[key], dtype=np.float64), np.asarray(want[key], dtype=np.float64)
        assert g.shape == w.shape, key
        assert np.abs(g - w).max() <= 1e-5, key
    for g, w in zip(got["tokens"], want["tokens"], strict=True):
        assert np.shape(g) == np.shape(w) and np.abs(np.asarray(g) - np.asarray(w)).max() <= 1e-4
    assert [r["corpus_id"] for r in got["rank"]] == [r["corpus_id"] for r in want["rank"]]
    assert [r["text"] for r in got["rank"]] == [r["text"] for r in want["rank"]]
    assert np.allclose([r["score"] for r in got["rank"]], [r["score"] for r in want["rank"]], atol=1e-6)


def test_the_script_differs_from_sentence_transformers_only_in_its_import_line():
    lines = (DATA / "st_user_script.py").read_text().splitlines()
    imports = [ln.strip() for ln in lines if "import CrossEncoder, SentenceTransformer" in ln]
    assert imports == [
        "from rinfer import CrossEncoder, SentenceTransformer",
        "from sentence_transformers import CrossEncoder, SentenceTransformer",
    ]
