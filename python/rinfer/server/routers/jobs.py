"""Background jobs for work too large for one request: submit, poll, fetch, cancel, list.

With API keys set, a job is the key's that created it: another key gets 404 for it, as
for a job that does not exist (a 403 would tell that it does), and does not list it."""

from __future__ import annotations

import asyncio
import io
from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ..jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from ..schemas import ValidText
from ..service import embedder_of, settings_of

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

PAGE = 1024


class JobRequest(ValidText):
    inputs: list[str] = Field(..., min_length=1, description="texts to embed")
    normalize: bool | None = None
    truncate: bool = True


class JobStatus(BaseModel):
    """What the job routes answer (documented for clients and schemathesis' checks)."""

    id: str
    object: Literal["embedding_job"]
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    total: int
    done: int
    progress: float
    error: str | None
    created: float
    updated: float


class JobList(BaseModel):
    object: Literal["list"]
    data: list[JobStatus]


# OpenAPI links: a created job's id leads to its status, result and cancellation (clients
# and schemathesis' stateful phase follow them)
_LINKS = {
    "GetJob": {"operationId": "get_job", "parameters": {"job_id": "$response.body#/id"}},
    "GetJobResult": {"operationId": "get_job_result", "parameters": {"job_id": "$response.body#/id"}},
    "CancelJob": {"operationId": "cancel_job", "parameters": {"job_id": "$response.body#/id"}},
}
_RESULT = {
    "description": "one JSON array per line (format=jsonl), or a float32 .npy array (format=npy)",
    "content": {"application/jsonl": {"schema": {"type": "string"}}, "application/octet-stream": {}},
}


def _store(request: Request):
    embedder_of(request)
    return request.app.state.job_store


def _owner(request: Request) -> str | None:
    """The id (SHA-256) of the caller's API key, set by the auth check; None without keys."""
    return getattr(request.state, "key_owner", None)


async def _job(request: Request, job_id: str):
    job = await asyncio.to_thread(_store(request).get, job_id)
    if job is None or not job.visible_to(_owner(request)):
        raise HTTPException(404, f"no job {job_id}")
    return job


@router.post(
    "",
    status_code=202,
    operation_id="create_job",
    summary="Submit texts to embed in the background",
    responses={202: {"model": JobStatus, "description": "accepted; `Location` names the job", "links": _LINKS}},
)
async def submit(body: JobRequest, request: Request):
    limit = settings_of(request).max_job_inputs
    if len(body.inputs) > limit:
        raise HTTPException(413, f"{len(body.inputs)} inputs, more than the job limit of {limit}")
    job = await asyncio.to_thread(_store(request).create, body.inputs, body.normalize, body.truncate, _owner(request))
    request.app.state.job_runner.notify()
    return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get(
    "", operation_id="list_jobs", summary="The caller's jobs, newest first", responses={200: {"model": JobList}}
)
async def list_jobs(request: Request, limit: int = Query(100, ge=1, le=1000)):
    jobs = await asyncio.to_thread(_store(request).list_jobs, _owner(request), limit)
    return {"object": "list", "data": [j.public() for j in jobs]}


@router.get(
    "/{job_id}",
    operation_id="get_job",
    summary="A job's status and progress",
    responses={200: {"model": JobStatus, "links": _LINKS}},
)
async def status(job_id: str, request: Request):
    return (await _job(request, job_id)).public()


@router.delete(
    "/{job_id}",
    operation_id="cancel_job",
    summary="Cancel a job (its stored results are kept)",
    responses={200: {"model": JobStatus}},
)
async def cancel(job_id: str, request: Request):
    job = await _job(request, job_id)
    if job.status in (QUEUED, RUNNING):
        await asyncio.to_thread(_store(request).set_status, job_id, CANCELLED)
        job = await _job(request, job_id)
    return job.public()


@router.get(
    "/{job_id}/result",
    operation_id="get_job_result",
    summary="The vectors of a finished job, as JSON lines or .npy",
    responses={200: _RESULT},
)
async def result(job_id: str, request: Request, format: str = Query("jsonl", pattern="^(jsonl|npy)$")):
    job = await _job(request, job_id)
    if job.status != SUCCEEDED:
        detail = f"job {job_id} is {job.status}" + (f": {job.error}" if job.status == FAILED else "")
        raise HTTPException(409, detail)
    store = _store(request)
    dim = embedder_of(request).dim

    async def pages():
        for start in range(0, job.total, PAGE):
            blobs = await asyncio.to_thread(store.rows, job_id, start, PAGE)
            yield np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim)

    if format == "npy":
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (job.total, dim)}
        )

        async def npy():
            yield header.getvalue()
            async for rows in pages():
                yield rows.tobytes()

        return StreamingResponse(npy(), media_type="application/octet-stream")

    async def jsonl():
        async for rows in pages():
            yield "".join("[" + ",".join(np.char.mod("%.9g", r)) + "]\n" for r in rows).encode()

    return StreamingResponse(jsonl(), media_type="application/jsonl")
