"""`rinfer.SentenceTransformer` behaves as sentence-transformers' class does, checked
against outputs sentence-transformers 6.2 itself produced (scripts/make_golden_st.py)."""

from __future__ import annotations

import base64
import json
import pathlib
import shutil

import numpy as np
import pytest
import rinfer
from rinfer import SentenceTransformer

ST = pathlib.Path(__file__).resolve().parents[2] / "tests/data/st/st-dense-prompts"
G = json.loads((ST / "golden.json").read_text())


def want(key: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(G[key]), dtype="<f4").reshape(len(G["texts"]), -1)


def test_encode_keywords_match_sentence_transformers():
    model = SentenceTransformer(str(ST), device="cpu")
    texts = G["texts"]
    got = model.encode(texts, batch_size=3, show_progress_bar=False, convert_to_numpy=True)
    assert np.abs(got - want("default_prompt")).max() <= 1e-4
    assert np.abs(model.encode(texts, prompt_name="doc") - want("doc")).max() <= 1e-4
    assert np.abs(model.encode(texts, prompt="Represent this sentence: ") - want("literal")).max() <= 1e-4
    assert np.abs(model.encode(texts, prompt="") - want("no_prompt")).max() <= 1e-4
    got = model.encode(texts, prompt_name="doc", truncate_dim=8, normalize_embeddings=True)
    assert np.abs(got - want("truncated_8_normalized")).max() <= 1e-4
    # encode_query uses the "query" prompt, encode_document the "document" one ("").
    assert np.abs(model.encode_query(texts) - want("query")).max() <= 1e-4
    assert np.abs(model.encode_document(texts) - want("no_prompt")).max() <= 1e-4
    one = model.encode(texts[0])
    assert one.shape == (16,) and model.get_sentence_embedding_dimension() == 16


def test_precisions_similarity_and_errors():
    model = SentenceTransformer(ST, truncate_dim=8)
    texts = G["texts"]
    full = model.encode(texts, precision="float32")
    assert full.shape == (len(texts), 8) and model.get_sentence_embedding_dimension() == 8
    i8, u8 = model.encode(texts, precision="int8"), model.encode(texts, precision="uint8")
    assert i8.dtype == np.int8 and u8.dtype == np.uint8 and i8.shape == full.shape
    # sentence-transformers' calibration: per-dimension ranges of these embeddings.
    lo, steps = full.min(axis=0), (full.max(axis=0) - full.min(axis=0)) / 255
    assert (u8 == ((full - lo) / steps).astype(np.uint8)).all()
    assert (i8 == ((full - lo) / steps - 128).astype(np.int8)).all()
    b, ub = model.encode(texts, precision="binary"), model.encode(texts, precision="ubinary")
    assert ub.dtype == np.uint8 and ub.shape == (len(texts), 1)
    assert (ub == np.packbits(full > 0, axis=-1)).all() and (b.astype(int) == ub.astype(int) - 128).all()
    sim = model.similarity(full, full)
    n = full / np.linalg.norm(full, axis=1, keepdims=True)
    assert np.allclose(sim, n @ n.T, atol=1e-6)
    assert np.allclose(model.similarity_pairwise(full, full), 1.0, atol=1e-6)
    with pytest.raises(rinfer.InvalidInputError):
        model.encode("x", precision="float16")
    with pytest.raises(rinfer.InvalidInputError):
        model.encode("x", prompt_name="nope")
    with pytest.raises(rinfer.InvalidInputError):
        model.encode("x", output_value="pooled")
    with pytest.raises(rinfer.InvalidInputError):
        model.encode("x", output_value="token_embeddings", precision="int8")
    with pytest.raises(rinfer.UnsupportedError):
        SentenceTransformer(ST, device="cuda")
    assert model.tokenize(["hello world"])["input_ids"][0][0] == model._model.tokenize("hello world")[0][0]


def test_token_embeddings_match_sentence_transformers():
    model = SentenceTransformer(str(ST))
    texts = G["texts"]
    got = model.encode(texts, output_value="token_embeddings", prompt_name="doc", batch_size=4)
    assert isinstance(got, list) and len(got) == len(texts)
    for g, w in zip(got, G["tokens_doc"], strict=True):
        want_rows = np.frombuffer(base64.b64decode(w["b64"]), dtype="<f4").reshape(w["shape"])
        assert g.dtype == np.float32 and g.shape == tuple(w["shape"])
        assert np.abs(g - want_rows).max() <= 1e-4
    one = model.encode(texts[1], output_value="token_embeddings", prompt_name="doc")
    assert np.array_equal(one, got[1])
    # output_value=None: every output of each text, as sentence-transformers gives them.
    everything = model.encode(texts[:2], output_value=None, prompt_name="doc")
    assert np.abs(everything[1]["sentence_embedding"] - want("doc")[1]).max() <= 1e-4
    assert np.array_equal(everything[1]["token_embeddings"], got[1])
    assert len(everything[1]["input_ids"]) == len(got[1]) == everything[1]["attention_mask"].sum()
    # The engine's own call, from token ids: the same rows.
    ids = model._model.tokenize("passage: " + texts[1])[0]
    assert np.abs(model._model.encode_ids_tokens([ids])[0] - got[1]).max() <= 1e-6


def test_max_seq_length_is_settable_as_in_sentence_transformers():
    model = SentenceTransformer(str(ST))
    assert model.max_seq_length == 48
    model.max_seq_length = 8
    assert model.max_seq_length == 8 and model._model.model_info["max_seq_length"] == 8
    got = model.encode(G["texts"])
    assert np.abs(got - want("max_seq_length_8")).max() <= 1e-4
    assert all(len(r) <= 8 for r in model.tokenize(G["texts"])["input_ids"])
    with pytest.raises(rinfer.InputTooLongError):
        model._model.encode(G["texts"][4], truncate=False)
    # Within the model's positions (64 here); a bad value leaves the limit as it was.
    for bad in (0, 65):
        with pytest.raises(rinfer.InvalidInputError, match="max_seq_length"):
            model.max_seq_length = bad
    assert model.max_seq_length == 8
    model.max_seq_length = 64
    assert model.max_seq_length == 64 and len(model.tokenize(G["texts"])["input_ids"][4]) > 8


def test_hub_ids_resolve_from_the_local_cache(tmp_path, monkeypatch):
    snap = tmp_path / "hub/models--someone--tiny-model/snapshots/abc123"
    shutil.copytree(ST, snap)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = SentenceTransformer("someone/tiny-model")
    assert model.path == snap
    with pytest.raises(FileNotFoundError, match="models--sentence-transformers--absent"):
        SentenceTransformer("absent")


FAM = pathlib.Path(__file__).resolve().parents[2] / "tests/data/families"


def test_cross_encoder_predict_and_rank_from_raw_logits():
    g = json.loads((FAM / "xlmr-reranker/golden.json").read_text())
    ce = rinfer.CrossEncoder(FAM / "xlmr-reranker")
    pairs = [(g["query"], t) for t in g["texts"]]
    logits = np.array([row[0] for row in g["logits"]], dtype=np.float32)
    # Raw logits are exact (no sigmoid round trip); the default activation is sigmoid.
    raw = ce.predict(pairs, activation_fn=lambda x: x)
    assert np.abs(raw - logits).max() <= 1e-4
    assert np.abs(ce.predict(pairs, batch_size=4) - 1 / (1 + np.exp(-logits))).max() <= 1e-5
    one = ce.predict(pairs[0])
    assert np.ndim(one) == 0
    ranked = ce.rank(g["query"], g["texts"], top_k=3, return_documents=True)
    assert [r["corpus_id"] for r in ranked] == list(np.argsort(-logits, kind="stable")[:3])
    assert ranked[0]["text"] == g["texts"][ranked[0]["corpus_id"]]
    # A three-label classifier over pairs: logits rows, softmax on request.
    g = json.loads((FAM / "distilbert-classifier/golden.json").read_text())
    clf = rinfer.CrossEncoder(FAM / "distilbert-classifier")
    assert clf.num_labels == 3
    out = clf.predict([("a", "b"), ("hello world", "the cat")], apply_softmax=True)
    assert out.shape == (2, 3) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(rinfer.UnsupportedError):
        rinfer.CrossEncoder(ST)
