"""Request models (OpenAI-, TEI- and Cohere/Jina-compatible shapes). Unknown fields
are refused (422), never silently dropped: a misspelt option must not pass for the
default."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

# A token id is a u32 (the engine's type): a negative or larger number is a 422 here,
# not an overflow in the engine's conversion (a 500, found by schemathesis).
TokenId = Annotated[int, Field(ge=0, le=0xFFFFFFFF)]
TokenIds = list[TokenId]
EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary"]
Direction = Literal["Right", "Left", "right", "left"]


def unicode_problem(value) -> str | None:
    """Where a request's strings (in lists and dicts too) stop being valid Unicode: JSON's
    ``\\ud83c`` escape alone decodes to a lone surrogate, which no UTF-8 consumer (the
    tokenizer, SQLite, orjson) can take. None when every string is valid."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            return f"a lone surrogate {value[exc.start]!r} at character {exc.start}"
        return None
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], int | float):
            return None  # token ids (no request list mixes numbers and text)
        items = value
    elif isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    else:
        return None
    for item in items:
        if (problem := unicode_problem(item)) is not None:
            return problem
    return None


class ValidText(BaseModel):
    """Refuses strings that are not valid Unicode with a 422 naming the field (found by
    schemathesis: they reached the engine or the job store and came back as 500s). Only
    for bodies parsed by FastAPI (Python's json module lets lone surrogates through);
    pydantic's own JSON parser, the hot routes' fast path, refuses them itself."""

    @model_validator(mode="after")
    def _valid_unicode(self, info: ValidationInfo):
        if info.mode == "json":
            return self
        for name in type(self).model_fields:
            problem = unicode_problem(getattr(self, name))
            if problem is not None:
                raise ValueError(f"`{name}` is not valid Unicode text: {problem}")
        return self


class Strict(ValidText):
    model_config = ConfigDict(extra="forbid")


class EmbeddingsRequest(Strict):
    """OpenAI ``POST /v1/embeddings``."""

    input: str | list[str] | TokenIds | list[TokenIds] = Field(..., description="texts or token ids")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="numbers, or base64 of their little-endian float32 bytes (as the openai client decodes)"
    )
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions, renormalised")
    embedding_type: EmbeddingType | None = Field(
        None,
        description="quantise as sentence-transformers' quantize_embeddings (int8/uint8 calibrated on the "
        "request's own embeddings, binary/ubinary packed sign bits); default float",
    )
    embedding_types: list[EmbeddingType] | None = Field(
        None, min_length=1, description="several types: each item's `embedding` is {type: vector}"
    )
    user: str | None = None


class EmbedRequest(Strict):
    """TEI ``POST /embed``: texts, token ids, or a batch mixing both."""

    inputs: str | list[str] | TokenIds | list[str | TokenIds]
    normalize: bool = True
    truncate: bool | None = Field(None, description="default: the server's --auto-truncate (true)")
    truncation_direction: Direction = "Right"
    prompt_name: str | None = Field(None, description="a prompt of the model's config, prepended to every input")
    dimensions: int | None = Field(None, ge=1)


class EmbedAllRequest(Strict):
    """TEI ``POST /embed_all``: every token's vector (the encoder's last hidden state)."""

    inputs: str | list[str] | TokenIds | list[str | TokenIds]
    truncate: bool | None = Field(None, description="default: the server's --auto-truncate (true)")
    truncation_direction: Direction = "Right"
    prompt_name: str | None = Field(None, description="a prompt of the model's config, prepended to every input")


class DecodeRequest(Strict):
    """TEI ``POST /decode``."""

    ids: TokenIds | list[TokenIds]
    skip_special_tokens: bool = True


class EmbedSparseRequest(Strict):
    """TEI ``POST /embed_sparse``."""

    inputs: str | list[str]
    truncate: bool | None = None
    truncation_direction: Direction = "Right"
    prompt_name: str | None = None


class TokenizeRequest(Strict):
    """TEI ``POST /tokenize``."""

    inputs: str | list[str]
    add_special_tokens: bool = True
    prompt_name: str | None = None


class SimilarityInputs(Strict):
    source_sentence: str
    sentences: list[str] = Field(..., min_length=1)


class SimilarityParameters(Strict):
    truncate: bool | None = None
    truncation_direction: Direction = "Right"
    prompt_name: str | None = None


class SimilarityRequest(Strict):
    """TEI ``POST /similarity``."""

    inputs: SimilarityInputs
    parameters: SimilarityParameters | None = None


class RerankRequest(Strict):
    """TEI ``POST /rerank``."""

    query: str
    texts: list[str]
    truncate: bool | None = None
    truncation_direction: Direction = "Right"
    raw_scores: bool = False
    return_text: bool = False


class ClassificationParameters(Strict):
    """The text-classification task's parameters, which huggingface_hub's
    ``InferenceClient.text_classification`` always sends (``{}`` when none is given).
    TEI accepts and ignores them; rinfer applies them."""

    function_to_apply: Literal["sigmoid", "softmax", "none"] | None = Field(
        None, description="scores from the logits: sigmoid, softmax or none (the logits); default as TEI"
    )
    top_k: int | None = Field(None, ge=1, description="keep the K best labels of each input")


class PredictRequest(Strict):
    """TEI ``POST /predict``: a text, a pair ``[a, b]``, or a batch of texts and pairs
    ``[[a], [a, b], ...]``."""

    inputs: str | list[str] | list[list[str]]
    truncate: bool | None = None
    truncation_direction: Direction = "Right"
    raw_scores: bool = False
    parameters: ClassificationParameters | None = None


class Document(Strict):
    text: str


class CohereRerankRequest(Strict):
    """Cohere / Jina ``POST /v1/rerank``."""

    query: str
    documents: list[str | Document]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    model: str | None = None
    max_chunks_per_doc: int | None = None
    max_tokens_per_doc: int | None = None
    rank_fields: list[str] | None = None
    truncate: bool | None = None


class CohereRerankV2Request(Strict):
    """Cohere ``POST /v2/rerank`` (what ``cohere.ClientV2.rerank`` sends): documents
    are strings and come back by index only. Documents are cut to the model's own
    token limit (``max_tokens_per_doc`` cannot raise it); ``relevant_spans`` is not
    supported; every request has the same ``priority`` here."""

    query: str
    documents: list[str]
    top_n: int | None = Field(None, ge=1)
    model: str | None = None
    max_tokens_per_doc: int | None = Field(None, ge=1)
    relevant_spans: None = Field(None, description="not supported: must be absent or null")
    priority: int | None = Field(None, ge=0)
