"""A script written for sentence-transformers, run unchanged on rinfer but for its
import line (the first argument picks it). It prints every result as JSON.

tests/python/test_st_script.py runs it on rinfer and compares with what
sentence-transformers itself printed, kept in st_user_script.golden.json beside
this file; remake that in the bench environment (sentence-transformers installed):
    .bench-venv/bin/python tests/python/data/st_user_script.py sentence_transformers \\
        > tests/python/data/st_user_script.golden.json
"""

from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]

if sys.argv[1:] == ["rinfer"]:
    from rinfer import CrossEncoder, SentenceTransformer
else:
    from sentence_transformers import CrossEncoder, SentenceTransformer


def listed(x):
    """Arrays (numpy or torch) as nested lists of floats."""
    if hasattr(x, "tolist"):
        return x.tolist()
    return [listed(v) for v in x]


sentences = [
    "The cat sits outside",
    "A man is playing guitar",
    "The new movie is awesome",
    "The quick brown fox jumps over the lazy dog near the old stone bridge at dawn",
]
out: dict = {}

model = SentenceTransformer(str(ROOT / "models/all-MiniLM-L6-v2"), device="cpu")
out["dim"] = model.get_embedding_dimension()
out["max_seq_length"] = model.max_seq_length
emb = model.encode(sentences, batch_size=2, show_progress_bar=False, convert_to_numpy=True)
out["embeddings"] = listed(emb)
out["one"] = listed(model.encode(sentences[0]))
out["similarity"] = listed(model.similarity(emb, emb))
out["pairwise"] = listed(model.similarity_pairwise(emb[:2], emb[2:]))
out["normalized_truncated"] = listed(model.encode(sentences, truncate_dim=64, normalize_embeddings=True))
out["query"] = listed(model.encode_query(sentences[:2]))
out["document"] = listed(model.encode_document(sentences[2:]))
out["ubinary"] = listed(model.encode(sentences, precision="ubinary"))
out["tokens"] = [listed(t) for t in model.encode(sentences[2:], output_value="token_embeddings")]
model.max_seq_length = 8
out["short"] = listed(model.encode(sentences))

ce = CrossEncoder(str(ROOT / "tests/data/models/reranker"), device="cpu")
pairs = [("what is a cat", s) for s in sentences]
out["scores"] = listed(ce.predict(pairs))
out["one_score"] = float(ce.predict(pairs[0]))
ranked = ce.rank("what is a cat", sentences, top_k=3, return_documents=True)
out["rank"] = [{"corpus_id": int(r["corpus_id"]), "score": float(r["score"]), "text": r["text"]} for r in ranked]

json.dump(out, sys.stdout)
