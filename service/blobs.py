"""Blob store for uploaded clips: a directory shared by the API and every worker.

The API streams an upload into a hidden temp file inside `blob_dir` (same
filesystem, so the final `os.replace` is atomic: a worker never sees half a
file), counting bytes as they arrive and aborting past `max_upload_bytes`.
Jobs store the blob's absolute path; `resolve()` maps a stored path (or a bare
file name) back into the directory and refuses anything outside it.

Redis TTLs cannot run a callback, so a job's blob outlives its Redis record (job_ttl_s) until the
API's janitor (service/api/janitor.py) deletes it. `delete()` removes one blob.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

# A blob file name: random token + a known video extension (no path separators, no dots elsewhere).
_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.[a-z0-9]{2,5}$")
_TMP_PREFIX = ".upload-"


class UploadTooLarge(Exception):
    """The upload passed max_upload_bytes; the partial file was deleted."""

    def __init__(self, limit: int):
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class BlobWriter:
    """One upload in progress: write chunks, then commit (rename) or abort (delete)."""

    def __init__(self, store: BlobStore, extension: str):
        self.store = store
        self.name = f"{secrets.token_urlsafe(18)}.{extension}"
        self.tmp_path = store.root / f"{_TMP_PREFIX}{self.name}.part"
        self.size = 0
        self._file = open(self.tmp_path, "xb")  # noqa: SIM115 - closed by commit/abort

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raises UploadTooLarge (after deleting the partial file) past the limit."""
        self.size += len(chunk)
        if self.size > self.store.max_bytes:
            self.abort()
            raise UploadTooLarge(self.store.max_bytes)
        self._file.write(chunk)

    def commit(self) -> Path:
        """Close and atomically move the temp file to its final name; returns the blob path."""
        self._file.close()
        final = self.store.root / self.name
        os.replace(self.tmp_path, final)
        return final

    def abort(self) -> None:
        """Close and delete the partial file (safe to call twice)."""
        if not self._file.closed:
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)


class BlobStore:
    """Uploaded videos as files in one directory."""

    def __init__(self, root: str | os.PathLike, max_bytes: int):
        self.root = Path(root).resolve()
        self.max_bytes = int(max_bytes)
        self.root.mkdir(parents=True, exist_ok=True)

    def writer(self, extension: str) -> BlobWriter:
        """Start an upload with the given (already validated) extension, e.g. 'mp4'."""
        extension = extension.lower().lstrip(".")
        if not re.fullmatch(r"[a-z0-9]{2,5}", extension):
            raise ValueError(f"bad extension {extension!r}")
        return BlobWriter(self, extension)

    def resolve(self, blob: str | os.PathLike) -> Path:
        """The file of a stored blob (absolute path under root, or a bare name); ValueError if outside."""
        path = Path(blob)
        name = path.name
        if not _NAME.match(name) or (path.is_absolute() and path.parent.resolve() != self.root) or (
                not path.is_absolute() and str(path) != name):
            raise ValueError(f"not a blob of {self.root}: {blob}")
        return self.root / name

    def delete(self, blob: str | os.PathLike) -> bool:
        """Remove a blob; False when it was already gone."""
        try:
            self.resolve(blob).unlink()
            return True
        except FileNotFoundError:
            return False
