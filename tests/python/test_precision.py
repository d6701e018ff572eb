"""bf16 and int8 from Python and through the server: the dtype option, the quality
the engine reports, its floor, and typed errors for bad options."""

from __future__ import annotations

import numpy as np
import pytest
import rinfer
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app

LOWP = "bf16" in rinfer.build_info()["dtypes"]
needs_lowp = pytest.mark.skipif(not LOWP, reason="this CPU path has no bf16/int8 kernels")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@needs_lowp
@pytest.mark.parametrize(("dtype", "bar"), [("bf16", 0.999), ("int8", 0.99)])
def test_reduced_precision_embeds_close_to_f32(model_dir, golden, dtype, bar):
    model = rinfer.Embedder.load(model_dir, dtype=dtype)
    info = model.model_info
    assert info["dtype"] == info["requested_dtype"] == dtype and info["note"] is None
    assert dtype in info["gemm_kernel"]
    q = info["quality"]
    assert q["probes"] > 30 and bar <= q["min_cosine"] <= q["mean_cosine"] <= 1.0 + 1e-6
    got = model.encode(golden["texts"])
    assert got.dtype == np.float32 and got.shape == golden["vectors"].shape
    assert _cosines(got, golden["vectors"]).min() >= bar


def test_f32_reports_no_quality_loss(embedder):
    info = embedder.model_info
    assert info["dtype"] == "f32" and info["quality"] is None and "f32" in info["gemm_kernel"]
    assert "f32" in rinfer.build_info()["dtypes"]


@needs_lowp
def test_quality_floor_refuses_to_load(model_dir):
    with pytest.raises(rinfer.ModelLoadError, match="quality below the floor"):
        rinfer.Embedder.load(model_dir, dtype="int8", quality_floor=0.9999999)


def test_bad_precision_options_are_typed_errors(model_dir, tiny_dir):
    with pytest.raises(rinfer.InvalidInputError, match="unknown dtype"):
        rinfer.Embedder.load(model_dir, dtype="fp8")
    with pytest.raises(rinfer.InvalidInputError, match="quality_floor"):
        rinfer.Embedder.load(model_dir, dtype="int8", quality_floor=2.0)
    with pytest.raises(rinfer.InvalidInputError, match="unknown dtype"):
        rinfer.Classifier.load(tiny_dir / "classifier", dtype="int4")


@needs_lowp
def test_classifier_runs_in_bf16(tiny_dir):
    f32 = rinfer.Classifier.load(tiny_dir / "classifier")
    bf16 = rinfer.Classifier.load(tiny_dir / "classifier", dtype="bf16", quality_floor=0.0)
    texts = ["a short text", "another, somewhat longer text about nothing much"]
    assert bf16.model_info["dtype"] == "bf16"
    np.testing.assert_allclose(bf16.logits(texts), f32.logits(texts), atol=0.05)


@needs_lowp
def test_server_reports_dtype_and_quality(model_dir):
    app = create_app(Settings(model_path=str(model_dir), dtype="int8"))
    with TestClient(app) as c:
        info = c.get("/info").json()
        assert info["model_dtype"] == "int8" and info["model_quality"]["min_cosine"] >= 0.99
        r = c.post("/embed", json={"inputs": ["hello world"]})
        assert r.status_code == 200 and len(r.json()[0]) == 384
        metrics = c.get("/metrics").text
        assert 'rinfer_quality_min_cosine{dtype="int8"}' in metrics


def test_server_settings_refuse_unknown_dtype():
    with pytest.raises(ValueError, match="dtype"):
        Settings(dtype="fp8")


def test_cli_bench_compares_precisions(model_dir, capsys):
    from rinfer.cli import main

    dtypes = "f32,bf16,int8" if LOWP else "f32"
    assert (
        main(["bench", "--model", str(model_dir), "--dtypes", dtypes, "--shapes", "2x8", "--reps", "2", "--json"]) == 0
    )
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [r["dtype"] for r in rows] == dtypes.split(",")
    assert all(r["shape"] == "2x8" and r["ms"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert rows[0]["min_cosine"] == 1.0 and all(r["min_cosine"] > 0.99 for r in rows)
