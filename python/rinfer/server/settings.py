"""Server settings: environment variables with the ``RINFER_`` prefix, or CLI flags."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .auth import read_key_file


class Settings(BaseSettings):
    """Everything the server can be told. ``RINFER_MODEL_PATH=...`` sets ``model_path``."""

    # hide_input_in_errors: a settings error never prints the values given (API keys among them)
    model_config = SettingsConfigDict(env_prefix="RINFER_", protected_namespaces=(), hide_input_in_errors=True)
    _key_file: tuple[str, tuple[str, ...]] | None = PrivateAttr(default=None)

    model_path: str | None = Field(None, description="model folder; default: rinfer.default_model_path()")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="several models in one server: folders (or NAME=FOLDER), comma-separated in the environment "
        "(RINFER_MODELS); the first is the default (model_path when given), the others are routed by the request's "
        "`model` on /v1/* and by /models/{name}/... on the other routes",
    )
    served_model_name: str | None = Field(
        None, description="name reported by /v1/models, /info and responses; default: the model folder's name"
    )
    auto_truncate: bool = Field(
        True, description="truncate inputs longer than the model's limit when a request does not say (TEI's default)"
    )
    default_prompt_name: str | None = Field(
        None, description="prompt of the model's config applied when a request names none (default: no prompt)"
    )
    pooling: str | None = Field(
        None, description="TEI's --pooling: accepted when it agrees with the folder's pooling, else start-up fails"
    )
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    threads: int | None = Field(None, ge=1, description="compute threads; default: the CPUs allowed")
    dtype: Literal["f32", "bf16", "int8"] = Field(
        "f32", description="precision of the matrix products: f32 (exact), bf16 or int8 (faster, measured loss)"
    )
    quality_floor: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="bf16/int8: refuse to start when the probe-set cosine to f32 is under this "
        "(default 0.999 bf16, 0.99 int8)",
    )
    max_batch_tokens: int = Field(16384, ge=1, description="tokens per engine batch")
    kv_cache_dtype: Literal["f32", "bf16"] = Field(
        "f32",
        description="generation: how the KV cache stores keys and values: f32 (exact) or bf16 (half the memory "
        "and decode bandwidth, logits within a measured tolerance)",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="longest a request waits for others to batch with; 0: continuous batching "
        "(a batch starts as soon as the engine is free and takes whatever is queued)",
    )
    max_queue: int = Field(
        1024,
        ge=1,
        description="requests that may wait or run at once per model (one whose deadline passed or whose client "
        "left no longer counts); more get 429",
    )
    max_inputs: int = Field(2048, ge=1, description="inputs per request; more get 413")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="request body limit; more get 413")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline per request (header X-Request-Timeout)")
    generation_timeout_s: float = Field(
        600.0,
        gt=0,
        description="deadline per text-generation request (header X-Request-Timeout): an answer not complete by "
        "then, or a stream without its first token, is a 503; a started stream ends with an error event",
    )
    api_key: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="API keys: when any is set, every route but the probes needs 'Authorization: Bearer <key>' "
        "with one of them; comma-separated in the environment (RINFER_API_KEY=a,b). Background jobs are "
        "visible only with the key that created them",
    )
    api_key_file: str | None = Field(
        None,
        description="a file of API keys, one per line (blank lines and # comments ignored), allowed besides "
        "api_key; a missing, unreadable or empty file stops the start",
    )
    job_store_url: str = Field("sqlite:///rinfer-jobs.db", description="where background jobs are stored")
    max_job_inputs: int = Field(100_000, ge=1, description="texts per background job")
    access_log: bool = Field(False, description="one log line per request (costs time on every request)")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS, comma-separated in the environment; none by default"
    )

    @field_validator("cors_origins", "models", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """`RINFER_CORS_ORIGINS=a,b` (or a JSON list) as a list."""
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _keys(cls, value):
        """`RINFER_API_KEY=a,b` (or one key) as a list; empty items are no key."""
        if value is None:
            return []
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            value = [k.strip() if isinstance(k, str) else k for k in value]
            return [k for k in value if k != ""]
        return value

    @model_validator(mode="after")
    def _read_key_file(self):
        """The key file is read when the settings are made: a bad one stops the start."""
        self._key_file = None
        self.api_keys  # noqa: B018 - reads it
        return self

    @property
    def api_keys(self) -> tuple[str, ...]:
        """Every allowed key: api_key's and api_key_file's (the file read once per path)."""
        file_keys: tuple[str, ...] = ()
        if self.api_key_file is not None:
            if self._key_file is None or self._key_file[0] != self.api_key_file:
                self._key_file = (self.api_key_file, tuple(read_key_file(self.api_key_file)))
            file_keys = self._key_file[1]
        return tuple(dict.fromkeys([*self.api_key, *file_keys]))
