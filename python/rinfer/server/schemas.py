"""Request and response models (OpenAI- and TEI-compatible shapes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TokenIds = list[int]


class EmbeddingsRequest(BaseModel):
    """OpenAI ``POST /v1/embeddings``."""

    input: str | list[str] | TokenIds | list[TokenIds] = Field(..., description="texts or token ids")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions, renormalised")
    user: str | None = None


class EmbedRequest(BaseModel):
    """TEI ``POST /embed``."""

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = False
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    dimensions: int | None = Field(None, ge=1)


class EmbedSparseRequest(BaseModel):
    """TEI ``POST /embed_sparse``."""

    inputs: str | list[str]
    truncate: bool = False
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    prompt_name: str | None = None


class TokenizeRequest(BaseModel):
    """TEI ``POST /tokenize``."""

    inputs: str | list[str]
    add_special_tokens: bool = True


class SimilarityInputs(BaseModel):
    source_sentence: str
    sentences: list[str] = Field(..., min_length=1)


class SimilarityRequest(BaseModel):
    """TEI ``POST /similarity``."""

    inputs: SimilarityInputs


class RerankRequest(BaseModel):
    """TEI ``POST /rerank``."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False


class PredictRequest(BaseModel):
    """TEI ``POST /predict``."""

    inputs: str | list[str]
    raw_scores: bool = False
