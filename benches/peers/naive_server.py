"""The naive peer of benches/server_bench.py: FastAPI + sentence-transformers, one
`encode` per request, as a tutorial writes it (sync route, uvicorn defaults).

    .bench-venv/bin/python benches/peers/naive_server.py --model models/all-MiniLM-L6-v2 --port 8102
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class EmbedRequest(BaseModel):
    inputs: str | list[str]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, default=8102)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    app = FastAPI()

    @app.get("/ready")
    def ready():
        return {"ready": True}

    @app.post("/embed")
    def embed(body: EmbedRequest):
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        return model.encode(texts, normalize_embeddings=True).tolist()

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
