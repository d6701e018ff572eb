"""Shared fixtures: the reference model (loaded once) and the golden outputs."""

from __future__ import annotations

import base64
import json
import pathlib

import numpy as np
import pytest
import rinfer

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_dir() -> pathlib.Path:
    return rinfer.default_model_path()


@pytest.fixture(scope="session")
def embedder(model_dir: pathlib.Path) -> rinfer.Embedder:
    return rinfer.Embedder.load(model_dir)


@pytest.fixture(scope="session")
def golden() -> dict:
    g = json.loads((ROOT / "tests/golden/minilm.json").read_text())
    raw = base64.b64decode(g["embeddings_f32_b64"])
    g["vectors"] = np.frombuffer(raw, dtype="<f4").reshape(len(g["texts"]), g["dim"])
    return g


@pytest.fixture()
def tiny_dir() -> pathlib.Path:
    return ROOT / "tests/data/models"


@pytest.fixture(scope="session", autouse=True)
def _job_store_in_tmp(tmp_path_factory):
    """Servers built by the tests keep their job database out of the source tree."""
    import os

    path = tmp_path_factory.mktemp("jobs") / "jobs.db"
    old = os.environ.get("RINFER_JOB_STORE_URL")
    os.environ["RINFER_JOB_STORE_URL"] = f"sqlite:///{path}"
    yield
    if old is None:
        os.environ.pop("RINFER_JOB_STORE_URL", None)
    else:
        os.environ["RINFER_JOB_STORE_URL"] = old
