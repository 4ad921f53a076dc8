"""A small synchronous client of the vidpose HTTP API (httpx; no torch). Used by `vidpose estimate`."""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable
from pathlib import Path

import httpx

TERMINAL = ("succeeded", "failed", "cancelled")


class ApiError(Exception):
    """The server answered with an error status: `status`, `code`, `message` from its error body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class JobTimeout(Exception):
    """The job did not finish within the wait timeout."""


class VidposeClient:
    def __init__(self, server: str, api_key: str | None = None, timeout_s: float = 120.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, headers=headers,
                                 timeout=httpx.Timeout(timeout_s, connect=10.0))

    def __enter__(self) -> VidposeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _json(resp: httpx.Response):
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise ApiError(resp.status_code, str(err["code"]), str(err["message"]))
            except (ValueError, KeyError, TypeError):
                detail = resp.text[:300] or resp.reason_phrase
                raise ApiError(resp.status_code, "http_error", detail) from None
        return resp.json()

    def submit(self, clip: str | Path, options: dict | None = None,
               idempotency_key: str | None = None) -> dict:
        """POST /estimate; the file is streamed from disk by httpx, not read into memory."""
        clip = Path(clip)
        ctype = mimetypes.guess_type(clip.name)[0] or "application/octet-stream"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        data = {"options": json.dumps(options)} if options else None
        with open(clip, "rb") as f:
            resp = self.http.post("/estimate", files={"video": (clip.name, f, ctype)}, data=data,
                                  headers=headers)
        return self._json(resp)

    def job(self, job_id: str) -> dict:
        return self._json(self.http.get(f"/jobs/{job_id}"))

    def cancel(self, job_id: str) -> dict:
        return self._json(self.http.delete(f"/jobs/{job_id}"))

    def models(self) -> dict:
        return self._json(self.http.get("/models"))

    def wait(self, job_id: str, poll_s: float = 0.5, timeout_s: float | None = None,
             on_update: Callable[[dict], None] | None = None) -> dict:
        """Poll GET /jobs/{id} until the job is terminal; returns its last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"job {job_id} still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def result(self, job_id: str, page_limit: int | None = None) -> dict:
        """The whole result: every page of GET /jobs/{id}/result merged (next_start_frame null)."""
        params: dict = {"start_frame": 0}
        if page_limit:
            params["limit"] = page_limit
        merged: dict | None = None
        while True:
            page = self._json(self.http.get(f"/jobs/{job_id}/result", params=params))
            if merged is None:
                merged = page
            else:
                merged["frames"].extend(page["frames"])
            if page["next_start_frame"] is None:
                merged["next_start_frame"] = None
                return merged
            params["start_frame"] = page["next_start_frame"]
