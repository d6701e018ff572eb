"""Type stubs of the compiled extension `rinfer._rinfer`."""

import os
from collections.abc import Sequence
from typing import Any, Literal, TypedDict, final, type_check_only

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "Classifier",
    "Completion",
    "Embedder",
    "GenerationStream",
    "Generator",
    "InputTooLongError",
    "InvalidInputError",
    "ModelLoadError",
    "OverloadedError",
    "Reranker",
    "RinferError",
    "UnsupportedError",
    "__version__",
    "_resolve",
    "build_info",
    "model_kind",
    "set_num_threads",
]

@type_check_only
class BuildInfo(TypedDict):
    version: str
    isa: str
    supported_isas: list[str]
    dtypes: list[str]
    threads: int
    features: list[str]

@type_check_only
class ModelInfo(TypedDict):
    path: str
    model_type: str
    hidden_size: int
    layers: int
    dim: int
    max_seq_length: int
    dtype: str
    requested_dtype: str
    isa: str
    gemm_kernel: str
    quality: Quality | None
    note: str | None
    threads: int

@type_check_only
class Quality(TypedDict):
    min_cosine: float
    mean_cosine: float
    probes: int

@type_check_only
class BatcherStats(TypedDict):
    batches: int
    requests: int
    texts: int
    tokens: int
    rejected: int
    dropped: int
    queued: int

class RinferError(Exception): ...
class ModelLoadError(RinferError): ...
class InvalidInputError(RinferError): ...
class InputTooLongError(InvalidInputError): ...
class OverloadedError(RinferError): ...
class UnsupportedError(RinferError): ...

def build_info() -> BuildInfo: ...
def set_num_threads(n: int) -> None: ...
def model_kind(
    path: str | os.PathLike[str],
) -> Literal["embedder", "classifier", "reranker", "sparse", "generator"]: ...
def _resolve(fut: Any, value: Any, failed: bool) -> None: ...

@final
class Embedder:
    @staticmethod
    def load(
        path: str | os.PathLike[str],
        *,
        dtype: str | None = None,
        threads: int | None = None,
        quality_floor: float | None = None,
        max_batch_tokens: int = 16384,
        max_wait_ms: float = 0.0,
        max_queue: int = 4096,
        truncate_dim: int | None = None,
    ) -> Embedder: ...
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 128,
        normalize: bool | None = None,
        truncate: bool = True,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def encode_sparse(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 128,
        truncate: bool = True,
        prompt_name: str | None = None,
        prompt: str | None = None,
        top_k: int | None = None,
    ) -> Any: ...
    @property
    def is_sparse(self) -> bool: ...
    @property
    def prompts(self) -> dict[str, str]: ...
    @property
    def default_prompt_name(self) -> str | None: ...
    @property
    def similarity_fn_name(self) -> str: ...
    def encode_ids(
        self,
        ids: Sequence[npt.NDArray[np.integer[Any]] | Sequence[int]],
        *,
        batch_size: int = 128,
        normalize: bool | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def encode_tokens(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 128,
        truncate: bool = True,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> Any: ...
    def encode_ids_tokens(
        self,
        ids: Sequence[npt.NDArray[np.integer[Any]] | Sequence[int]],
        *,
        batch_size: int = 128,
    ) -> list[npt.NDArray[np.float32]]: ...
    def tokenize(self, texts: str | Sequence[str], *, truncate: bool = True) -> list[npt.NDArray[np.uint32]]: ...
    def tokens(
        self, texts: str | Sequence[str], *, truncate: bool = True
    ) -> list[list[tuple[int, str, bool, int | None, int | None]]]: ...
    def aencode(
        self,
        texts: str | Sequence[str],
        *,
        normalize: bool | None = None,
        truncate: bool = True,
        timeout_s: float | None = None,
        return_tokens: bool = False,
    ) -> Any: ...
    def encode_batched(
        self,
        texts: str | Sequence[str],
        *,
        normalize: bool | None = None,
        truncate: bool = True,
        timeout_s: float | None = None,
    ) -> npt.NDArray[np.float32]: ...
    def batcher_stats(self) -> BatcherStats: ...
    @property
    def dim(self) -> int: ...
    @property
    def max_seq_length(self) -> int: ...
    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None: ...
    @property
    def normalizes(self) -> bool: ...
    @property
    def model_info(self) -> ModelInfo: ...

@final
class Classifier:
    def pair_logits(self, pairs: Sequence[tuple[str, str]], *, truncate: bool = True) -> npt.NDArray[np.float32]: ...
    @staticmethod
    def load(
        path: str | os.PathLike[str],
        *,
        dtype: str | None = None,
        threads: int | None = None,
        quality_floor: float | None = None,
    ) -> Classifier: ...
    def predict(self, texts: str | Sequence[str]) -> list[list[tuple[str, float]]]: ...
    def logits(self, texts: str | Sequence[str], *, truncate: bool = True) -> npt.NDArray[np.float32]: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def model_info(self) -> ModelInfo: ...

@final
class Reranker:
    def pair_logits(self, pairs: Sequence[tuple[str, str]], *, truncate: bool = True) -> npt.NDArray[np.float32]: ...
    @staticmethod
    def load(
        path: str | os.PathLike[str],
        *,
        dtype: str | None = None,
        threads: int | None = None,
        quality_floor: float | None = None,
    ) -> Reranker: ...
    def rerank(self, query: str, passages: Sequence[str], top_k: int | None = None) -> list[tuple[int, float]]: ...
    @property
    def model_info(self) -> ModelInfo: ...

@type_check_only
class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

@type_check_only
class Delta(TypedDict):
    text: str
    token: int | None
    finish_reason: Literal["stop", "length", "cancelled"] | None
    logprob: tuple[float, list[tuple[int, float]]] | None

@final
class Completion:
    @property
    def text(self) -> str: ...
    @property
    def tokens(self) -> list[int]: ...
    @property
    def finish_reason(self) -> Literal["stop", "length", "cancelled"]: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def logprobs(self) -> list[tuple[float, list[tuple[int, float]]]]: ...

@final
class GenerationStream:
    def __iter__(self) -> GenerationStream: ...
    def __next__(self) -> Delta: ...
    def close(self) -> None: ...
    @property
    def prompt_tokens(self) -> int: ...

@type_check_only
class GenerationStats(TypedDict):
    active: int
    waiting: int
    reserved: int
    generated: int
    steps: int
    refused: int
    cache_dtype: Literal["f32", "bf16"]
    cache_block_size: int
    cache_blocks_total: int
    cache_blocks_in_use: int
    cache_blocks_reserved: int
    cache_block_bytes: int

@final
class Generator:
    @staticmethod
    def load(
        path: str | os.PathLike[str],
        *,
        dtype: str | None = None,
        threads: int | None = None,
        max_batch_tokens: int | None = None,
        max_waiting: int | None = None,
        kv_cache_dtype: str | None = None,
    ) -> Generator: ...
    def stats(self) -> GenerationStats: ...
    @property
    def model_info(self) -> ModelInfo: ...
    @property
    def eos_token_ids(self) -> list[int]: ...
    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str: ...
    def encode_prompt(self, prompt: str | Sequence[int] | Sequence[dict[str, str]]) -> list[int]: ...
    @property
    def max_context(self) -> int: ...
    def generate(
        self,
        prompt: str | Sequence[int] | Sequence[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        stop_token_ids: Sequence[int] | None = None,
        ignore_eos: bool = False,
        logprobs: int | None = None,
        logit_bias: dict[int, float] | None = None,
    ) -> Completion: ...
    def stream(
        self,
        prompt: str | Sequence[int] | Sequence[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        stop_token_ids: Sequence[int] | None = None,
        ignore_eos: bool = False,
        logprobs: int | None = None,
        logit_bias: dict[int, float] | None = None,
    ) -> GenerationStream: ...
