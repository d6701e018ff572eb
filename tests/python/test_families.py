"""Encoder families other than BERT through Python and the server: the folder decides
the family and the kind (embedder, classifier, reranker), with no new flag."""

from __future__ import annotations

import base64
import json
import pathlib

import numpy as np
import pytest
import rinfer
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app

FAMILIES = pathlib.Path(__file__).resolve().parents[2] / "tests/data/families"


def golden(name: str) -> dict:
    return json.loads((FAMILIES / name / "golden.json").read_text())


@pytest.mark.parametrize(
    "name",
    [
        "xlmr-mean",
        "roberta-weightedmean",
        "distilbert-sqrt-max",
        "mpnet-mean",
        "modernbert-mean",
        "nomic-mean",
        "gte-cls",
        "jina-mean",
    ],
)
def test_embedders_of_each_family_match_transformers(name):
    g = golden(name)
    want = np.frombuffer(base64.b64decode(g["embeddings_f32_b64"]), dtype="<f4").reshape(len(g["texts"]), -1)
    model = rinfer.Embedder.load(FAMILIES / name)
    assert rinfer.model_kind(FAMILIES / name) == "embedder"
    assert model.model_info["model_type"] in (
        "xlm-roberta",
        "roberta",
        "distilbert",
        "mpnet",
        "modernbert",
        "nomic_bert",
        "new",
        "jina_bert",
    )
    got = model.encode(g["texts"])
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4


def test_server_serves_xlmr_reranker_and_distilbert_classifier():
    assert rinfer.model_kind(FAMILIES / "xlmr-reranker") == "reranker"
    assert rinfer.model_kind(FAMILIES / "distilbert-classifier") == "classifier"
    g = golden("xlmr-reranker")
    with TestClient(create_app(Settings(model_path=str(FAMILIES / "xlmr-reranker")))) as c:
        r = c.post("/rerank", json={"query": g["query"], "texts": g["texts"], "raw_scores": True})
        assert r.status_code == 200, r.text
        for x in r.json():
            assert abs(x["score"] - g["logits"][x["index"]][0]) < 1e-3
    g = golden("distilbert-classifier")
    with TestClient(create_app(Settings(model_path=str(FAMILIES / "distilbert-classifier")))) as c:
        r = c.post("/predict", json={"inputs": g["texts"][:3], "raw_scores": True})
        assert r.status_code == 200, r.text
        for row, want in zip(r.json(), g["logits"][:3]):
            got = {x["label"]: x["score"] for x in row}
            for label, w in zip(g["labels"], want):
                assert abs(got[label] - w) < 1e-4


def test_unknown_family_is_refused_naming_it(tmp_path):
    for f in (FAMILIES / "xlmr-mean").iterdir():
        if f.is_file():
            (tmp_path / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "longformer"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(rinfer.ModelLoadError, match="longformer"):
        rinfer.Embedder.load(tmp_path)
