"""Drop-ins for sentence-transformers' ``SentenceTransformer`` and ``CrossEncoder``:
the same constructors and ``encode`` / ``predict`` / ``rank`` keywords, on rinfer's
engine. Code written for sentence-transformers
runs by changing its import line::

    from rinfer import SentenceTransformer
    model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    emb = model.encode(["a", "b"], batch_size=64, normalize_embeddings=True)

A Hugging Face model id resolves from the local Hugging Face cache (offline:
``HF_HUB_CACHE``, ``HF_HOME/hub`` or ``~/.cache/huggingface/hub``); a missing one
raises ``FileNotFoundError`` naming where it looked. torch is never required: tensors
are returned only when asked for and torch is importable.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._rinfer import Classifier, Embedder, InvalidInputError, Reranker, UnsupportedError, model_kind

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
DTYPES = {None: None, "float32": "f32", "fp32": "f32", "f32": "f32", "bfloat16": "bf16", "bf16": "bf16", "int8": "int8"}


def resolve_model(name_or_path: str | os.PathLike[str]) -> pathlib.Path:
    """A local folder as it is, else the newest snapshot of a Hugging Face id in the
    local cache (no network)."""
    p = pathlib.Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    name = str(name_or_path)
    repo = name if "/" in name else f"sentence-transformers/{name}"
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(pathlib.Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(pathlib.Path(os.environ["HF_HOME"]) / "hub")
    roots.append(pathlib.Path.home() / ".cache" / "huggingface" / "hub")
    tried = [str(p)]
    for root in roots:
        snaps = root / ("models--" + repo.replace("/", "--")) / "snapshots"
        tried.append(str(snaps))
        if snaps.is_dir():
            found = sorted(
                (s for s in snaps.iterdir() if (s / "config.json").is_file()), key=lambda s: s.stat().st_mtime
            )
            if found:
                return found[-1]
    raise FileNotFoundError(f"model {name!r} not found; looked in: " + ", ".join(tried))


def quantize_embeddings(embeddings: np.ndarray, precision: str) -> np.ndarray:
    """sentence-transformers' ``quantize_embeddings``: int8/uint8 with per-dimension
    ranges calibrated on the embeddings themselves, binary/ubinary as packed sign bits
    (binary offset by -128 into int8)."""
    if precision == "float32":
        return embeddings.astype(np.float32, copy=False)
    if precision in ("int8", "uint8"):
        lo, hi = embeddings.min(axis=0), embeddings.max(axis=0)
        steps = (hi - lo) / 255
        steps[steps == 0] = 1.0
        q = (embeddings - lo) / steps
        if precision == "uint8":
            return q.astype(np.uint8)
        return (q - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(embeddings > 0, axis=-1).astype(np.int16) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(embeddings > 0, axis=-1)
    raise InvalidInputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")


class SentenceTransformer:
    """sentence-transformers' ``SentenceTransformer`` API on rinfer."""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | None = "cpu",
        truncate_dim: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        **_ignored: Any,
    ) -> None:
        if device not in (None, "cpu"):
            raise UnsupportedError(f"device {device!r}: rinfer runs on the CPU")
        if dtype not in DTYPES:
            raise InvalidInputError(f"dtype {dtype!r} is not one of float32, bfloat16, int8")
        self.path = resolve_model(model_name_or_path)
        self._model = Embedder.load(self.path, dtype=DTYPES[dtype], threads=threads)
        self.truncate_dim = truncate_dim
        self.prompts = {**self._model.prompts, **(prompts or {})}
        self.default_prompt_name = default_prompt_name or self._model.default_prompt_name
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise InvalidInputError(f"default_prompt_name {self.default_prompt_name!r} is not one of the prompts")
        self.similarity_fn_name = self._model.similarity_fn_name

    @property
    def max_seq_length(self) -> int:
        return self._model.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        # 1 up to the model's positions; longer inputs are cut to it from now on.
        self._model.max_seq_length = value

    def get_sentence_embedding_dimension(self) -> int:
        return self.truncate_dim or self._model.dim

    def get_embedding_dimension(self) -> int:
        """sentence-transformers 6's name for ``get_sentence_embedding_dimension``."""
        return self.get_sentence_embedding_dimension()

    def tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        ids = self._model.tokenize(list(texts))
        return {"input_ids": [r.tolist() for r in ids], "attention_mask": [[1] * len(r) for r in ids]}

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
        **_ignored: Any,
    ) -> Any:
        """Embeddings as sentence-transformers computes them; a str gives a 1-D array.

        ``output_value="token_embeddings"`` gives each text's token embeddings (the
        encoder's last hidden state, prompt and special tokens included) as a float32
        array of shape (tokens, hidden), in a list (one array for a str); ``None``
        gives a dict per text with ``sentence_embedding``, ``token_embeddings``,
        ``input_ids`` and ``attention_mask``. Arrays are numpy's, torch or not.
        """
        if output_value not in ("sentence_embedding", "token_embeddings", None):
            raise InvalidInputError(
                f"output_value {output_value!r} is not one of 'sentence_embedding', 'token_embeddings', None"
            )
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if output_value != "sentence_embedding" and precision != "float32":
            raise InvalidInputError(f"precision {precision!r} applies to sentence embeddings only")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        if prompt is None:
            name = prompt_name or self.default_prompt_name
            if name is not None:
                if name not in self.prompts:
                    raise InvalidInputError(f"prompt_name {name!r} is not one of {sorted(self.prompts)}")
                prompt = self.prompts[name]
        if output_value != "sentence_embedding":
            kw = {"truncate_dim": truncate_dim, "normalize_embeddings": normalize_embeddings}
            return self._token_outputs(texts, single, batch_size, prompt or "", output_value is None, kw)
        dim = truncate_dim or self.truncate_dim
        rows = []
        steps = range(0, len(texts), max(batch_size, 1))
        for i, start in enumerate(steps):
            rows.append(
                self._model.encode(
                    texts[start : start + batch_size],
                    batch_size=batch_size,
                    normalize=True if normalize_embeddings else None,
                    prompt=prompt if prompt is not None else "",
                    truncate_dim=dim,
                )
            )
            if show_progress_bar:
                print(f"\rBatches: {i + 1}/{len(steps)}", end="", file=sys.stderr, flush=True)
        if show_progress_bar:
            print(file=sys.stderr)
        width = dim or self._model.dim
        out = np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)
        out = quantize_embeddings(out, precision)
        if single:
            out = out[0]
        if convert_to_tensor:
            import torch  # only when asked for

            return torch.from_numpy(np.ascontiguousarray(out))
        if not convert_to_numpy:
            return list(out)
        return out

    def _token_outputs(
        self, texts: list[str], single: bool, batch_size: int, prompt: str, everything: bool, kw: dict[str, Any]
    ) -> Any:
        """``encode``'s ``output_value="token_embeddings"`` and ``None``."""
        tokens: list[np.ndarray] = []
        for start in range(0, len(texts), max(batch_size, 1)):
            tokens += self._model.encode_tokens(texts[start : start + batch_size], batch_size=batch_size, prompt=prompt)
        if not everything:
            return tokens[0] if single else tokens
        sentence = self.encode(texts, batch_size=batch_size, prompt=prompt, **kw)
        ids = self._model.tokenize([prompt + t for t in texts])
        out = [
            {
                "sentence_embedding": sentence[i],
                "token_embeddings": tokens[i],
                "input_ids": ids[i].astype(np.int64),
                "attention_mask": np.ones(len(ids[i]), dtype=np.int64),
            }
            for i in range(len(texts))
        ]
        return out[0] if single else out

    def encode_query(self, sentences: str | Sequence[str], **kw: Any) -> Any:
        """``encode`` with the prompt named "query" when the model has one."""
        if "prompt" not in kw and "prompt_name" not in kw and "query" in self.prompts:
            kw["prompt_name"] = "query"
        return self.encode(sentences, **kw)

    def encode_document(self, sentences: str | Sequence[str], **kw: Any) -> Any:
        """``encode`` with the prompt named "document" (or "passage") when the model has one."""
        if "prompt" not in kw and "prompt_name" not in kw:
            for name in ("document", "passage", "corpus"):
                if name in self.prompts:
                    kw["prompt_name"] = name
                    break
        return self.encode(sentences, **kw)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """The model's similarity function between every row of ``a`` and of ``b``."""
        a, b = np.atleast_2d(np.asarray(a, dtype=np.float32)), np.atleast_2d(np.asarray(b, dtype=np.float32))
        fn = self.similarity_fn_name
        if fn == "cosine":
            na = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
            nb = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
            return na @ nb.T
        if fn in ("dot", "dot_product"):
            return a @ b.T
        if fn == "euclidean":
            return -np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        if fn == "manhattan":
            return -np.abs(a[:, None, :] - b[None, :, :]).sum(-1)
        raise UnsupportedError(f"similarity_fn_name {fn!r}")

    def similarity_pairwise(self, a: Any, b: Any) -> np.ndarray:
        """The model's similarity function between row i of ``a`` and row i of ``b``."""
        a, b = np.atleast_2d(np.asarray(a, dtype=np.float32)), np.atleast_2d(np.asarray(b, dtype=np.float32))
        return np.array([self.similarity(x, y)[0, 0] for x, y in zip(a, b)], dtype=np.float32)

    def __repr__(self) -> str:
        return f"SentenceTransformer({str(self.path)!r}, dim={self.get_sentence_embedding_dimension()})"


def _activation(name: str | None, labels: int):
    """sentence-transformers' CrossEncoder default: sigmoid for one label, identity
    for several; the config's ``sentence_transformers.activation_fn`` when given."""
    short = (name or ("Sigmoid" if labels == 1 else "Identity")).rsplit(".", 1)[-1]
    table = {
        "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
        "Identity": lambda x: x,
        "Tanh": np.tanh,
        "ReLU": lambda x: np.maximum(x, 0),
    }
    if short not in table:
        raise UnsupportedError(f"activation_fn {name!r} is not one of {', '.join(table)}")
    return table[short]


class CrossEncoder:
    """sentence-transformers' ``CrossEncoder`` API on rinfer: ``predict`` of text
    pairs (raw logits through the model's activation, as sentence-transformers
    computes them) and ``rank``."""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | None = "cpu",
        activation_fn: Any = None,
        dtype: str | None = None,
        threads: int | None = None,
        **_ignored: Any,
    ) -> None:
        if device not in (None, "cpu"):
            raise UnsupportedError(f"device {device!r}: rinfer runs on the CPU")
        if dtype not in DTYPES:
            raise InvalidInputError(f"dtype {dtype!r} is not one of float32, bfloat16, int8")
        self.path = resolve_model(model_name_or_path)
        kind = model_kind(self.path)
        if kind not in ("reranker", "classifier"):
            raise UnsupportedError(f"{self.path} holds a {kind}, not a cross-encoder")
        loader = Reranker if kind == "reranker" else Classifier
        self._model = loader.load(self.path, dtype=DTYPES[dtype], threads=threads)
        self.num_labels = 1 if kind == "reranker" else len(self._model.labels)
        cfg = json.loads((self.path / "config.json").read_text())
        configured = (cfg.get("sentence_transformers") or {}).get("activation_fn")
        self.activation_fn = activation_fn if callable(activation_fn) else _activation(configured, self.num_labels)

    def predict(
        self,
        sentences: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Any = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        **_ignored: Any,
    ) -> Any:
        """Scores of (a, b) pairs; one pair gives a scalar (one label) or a 1-D array."""
        single = len(sentences) == 2 and all(isinstance(s, str) for s in sentences)
        pairs = [tuple(sentences)] if single else [tuple(p) for p in sentences]
        if any(len(p) != 2 or not all(isinstance(x, str) for x in p) for p in pairs):
            raise InvalidInputError("predict takes (text, text) pairs")
        parts = []
        for start in range(0, len(pairs), max(batch_size, 1)):
            parts.append(np.asarray(self._model.pair_logits(pairs[start : start + batch_size])))
        width = () if self.num_labels == 1 else (self.num_labels,)
        logits = np.concatenate(parts) if parts else np.zeros((0, *width), dtype=np.float32)
        act = activation_fn if callable(activation_fn) else self.activation_fn
        scores = np.asarray(act(logits), dtype=np.float32)
        if apply_softmax and scores.ndim == 2:
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = e / e.sum(axis=1, keepdims=True)
        if single:
            scores = scores[0]
        if convert_to_tensor:
            import torch  # only when asked for

            return torch.from_numpy(np.ascontiguousarray(scores))
        return scores if convert_to_numpy else scores.tolist()

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        **_ignored: Any,
    ) -> list[dict[str, Any]]:
        """Documents by score for ``query``, best first: ``{"corpus_id", "score"}``
        (and ``"text"`` with ``return_documents``)."""
        if self.num_labels != 1:
            raise UnsupportedError("rank needs a one-label cross-encoder")
        scores = self.predict([(query, d) for d in documents], batch_size=batch_size)
        order = np.argsort(-scores, kind="stable")[: top_k if top_k is not None else len(documents)]
        out = []
        for i in order:
            row: dict[str, Any] = {"corpus_id": int(i), "score": float(scores[i])}
            if return_documents:
                row["text"] = documents[i]
            out.append(row)
        return out
