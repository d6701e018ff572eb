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


ST = FAMILIES.parent / "st"


def test_prompts_truncation_and_sparse_from_python():
    g = json.loads((ST / "st-dense-prompts/golden.json").read_text())

    def vecs(key: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(g[key]), dtype="<f4").reshape(len(g["texts"]), -1)

    model = rinfer.Embedder.load(ST / "st-dense-prompts")
    assert model.prompts["doc"] == "passage: " and model.default_prompt_name == "query"
    assert model.similarity_fn_name == "cosine" and not model.is_sparse
    assert np.abs(model.encode(g["texts"]) - vecs("default_prompt")).max() <= 1e-4
    assert np.abs(model.encode(g["texts"], prompt_name="doc") - vecs("doc")).max() <= 1e-4
    got = model.encode(g["texts"], prompt_name="doc", truncate_dim=8, normalize=True)
    assert got.shape == (len(g["texts"]), 8)
    assert np.abs(got - vecs("truncated_8_normalized")).max() <= 1e-4
    with pytest.raises(rinfer.InvalidInputError, match="query"):
        model.encode("x", prompt_name="nope")
    small = rinfer.Embedder.load(ST / "st-dense-prompts", truncate_dim=8)
    assert small.dim == 8 and small.encode("x").shape == (8,)

    g = json.loads((ST / "splade-bert/golden.json").read_text())
    sparse = rinfer.Embedder.load(ST / "splade-bert")
    assert sparse.is_sparse
    out = sparse.encode_sparse(g["texts"], top_k=5)
    for (idx, val), want in zip(out, g["top5"]):
        assert idx.dtype == np.uint32 and val.dtype == np.float32
        assert idx.tolist() == want["indices"]
        assert np.abs(val - np.array(want["values"])).max() <= 1e-4
    one_idx, _ = sparse.encode_sparse(g["texts"][0])
    assert one_idx.tolist() == g["sparse"][0]["indices"]
    with pytest.raises(rinfer.UnsupportedError):
        sparse.encode("x")


def test_server_serves_sparse_models_on_embed_sparse():
    g = json.loads((ST / "splade-distilbert/golden.json").read_text())
    assert rinfer.model_kind(ST / "splade-distilbert") == "sparse"
    with TestClient(create_app(Settings(model_path=str(ST / "splade-distilbert")))) as c:
        r = c.post("/embed_sparse", json={"inputs": g["texts"][:3], "truncate": True})
        assert r.status_code == 200, r.text
        for row, want in zip(r.json(), g["sparse"][:3]):
            assert [x["index"] for x in row] == want["indices"]
            assert max(abs(x["value"] - v) for x, v in zip(row, want["values"])) <= 1e-4
        assert c.post("/embed", json={"inputs": "x"}).status_code == 424
    with TestClient(create_app(Settings(model_path=str(FAMILIES / "xlmr-mean")))) as c:
        r = c.post("/embed_sparse", json={"inputs": "x"})
        assert r.status_code == 424 and "sparse" in r.text
