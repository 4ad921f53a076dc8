"""GET /jobs: the caller's jobs, newest first, paged (the web page's job list).

A job belongs to the API key that created it (its owner, see auth.py): each owner's jobs are indexed
in a Redis sorted set by creation time (`JobQueue.index_job`, written at submit), so listing reads
only the caller's own jobs. Jobs leave the list when they expire (VIDPOSE_JOB_TTL_S after finishing).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from service.api.auth import authenticate
from service.api.routes import _ERRORS, _job_view, _model_info, _state
from service.api.schemas import JobView

MAX_OFFSET = 2**31 - 1  # Redis ranks are 64-bit signed: a larger offset is no page anyway
MAX_LIMIT = 100


class JobListItem(JobView):
    video: dict = Field({}, description="What the API probed: width, height, fps, frames.")


class JobList(BaseModel):
    jobs: list[JobListItem] = Field(description="Newest first.")
    total: int = Field(description="The caller's jobs in the index (expired ones may still count "
                       "until they are met).")
    offset: int
    next_offset: int | None = Field(description="`offset` of the next page; null on the last page.")


def list_jobs(request: Request, owner: str = Depends(authenticate),
              offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Jobs to skip (newest first)."),
              limit: int = Query(20, ge=1, le=MAX_LIMIT, description="Jobs per page.")):
    _, queue = _state(request)
    jobs, total = queue.list_jobs(owner, offset, limit)
    infos: dict = {}
    items = []
    for job in jobs:
        if job["model"] not in infos:
            infos[job["model"]] = _model_info(queue, job["model"])
        items.append({**_job_view(job, infos[job["model"]]), "video": job["video"] or {}})
    end = offset + len(items)
    return {"jobs": items, "total": total, "offset": offset,
            "next_offset": end if len(items) == limit and end < total else None}


def job_list_router(prefix: str = "") -> APIRouter:
    r = APIRouter(prefix=prefix, tags=["jobs"])
    r.add_api_route("/jobs", list_jobs, methods=["GET"], response_model=JobList, responses=_ERRORS,
                    summary="The caller's jobs (only those of its API key), newest first, paged")
    return r
