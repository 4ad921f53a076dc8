"""Streaming multipart/form-data parser for POST /estimate.

We parse the request stream ourselves (python-multipart's push parser) instead
of FastAPI's `UploadFile`: Starlette would first spool the whole file to a temp
file and only then hand it to us, so the size limit would apply after the fact
and every upload would be copied twice. Here each received chunk of the `video`
part goes straight into a BlobWriter (temp file in blob_dir, byte count checked
per chunk), so memory use is one chunk whatever the upload size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.api.errors import ApiError
from service.blobs import BlobStore, BlobWriter, UploadTooLarge

VIDEO_EXTENSIONS = ("mp4", "avi", "mov", "webm", "mkv")
# Part content types we accept for the video (clients often send octet-stream or nothing).
_GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream", "application/x-matroska")
TEXT_FIELDS = ("options",)


def unsupported(message: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", message)


def check_request_type(content_type: str | None) -> bytes:
    """The multipart boundary; 415 unless the request is multipart/form-data."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        raise unsupported("send multipart/form-data with a 'video' file part (and optional 'options' JSON)")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "invalid_multipart", "multipart/form-data without a boundary")
    return boundary


def video_extension(filename: str | None, part_type: str) -> str:
    """The upload's extension (mp4/avi/mov/webm/mkv); 415 for anything else."""
    ext = PurePath(filename or "").suffix.lower().lstrip(".")
    if ext not in VIDEO_EXTENSIONS:
        raise unsupported(f"unsupported file type {filename!r}: send one of "
                          f"{', '.join('.' + e for e in VIDEO_EXTENSIONS)}")
    if not (part_type.startswith("video/") or part_type in _GENERIC_TYPES):
        raise unsupported(f"unsupported content type {part_type!r} for the video part (want video/*)")
    return ext


@dataclass
class ParsedForm:
    blob: Path | None = None
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    video_sha256: str | None = None  # with hash_video=True

    def fingerprint(self) -> str:
        """sha256 of what the request asks for (the video's bytes and the options part): equal for a
        retry of the same request, whatever its multipart boundary or file name."""
        h = hashlib.sha256(b"vidpose-request-v1\0video\0")
        h.update(bytes.fromhex(self.video_sha256 or ""))
        h.update(b"\0options\0" + self.fields.get("options", "").strip().encode())
        return h.hexdigest()


class MultipartUpload:
    """Feeds a request body through the parser; the video part streams into the blob store."""

    def __init__(self, content_type: str | None, store: BlobStore, max_field_bytes: int,
                 hash_video: bool = False):
        self.boundary = check_request_type(content_type)
        self._hasher = hashlib.sha256() if hash_video else None
        self.store = store
        self.max_field_bytes = max_field_bytes
        self.writer: BlobWriter | None = None
        self.form = ParsedForm()
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._name = ""
        self._buf = bytearray()
        self._in_video = False

    # ---- parser callbacks (synchronous; raising aborts the parse) ----
    def _on_part_begin(self) -> None:
        self._headers, self._hname, self._hvalue = {}, b"", b""
        self._name, self._buf, self._in_video = "", bytearray(), False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._hname.lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "video":
            if self.writer is not None:
                raise ApiError(400, "invalid_multipart", "more than one 'video' part")
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            part_type = parse_options_header(self._headers.get(b"content-type", b""))[0].decode("latin-1")
            ext = video_extension(filename, part_type)
            self.form.filename = filename
            self.writer = self.store.writer(ext)
            self._in_video = True
        elif self._name not in TEXT_FIELDS:
            raise ApiError(400, "invalid_multipart",
                           f"unexpected form field {self._name!r} (expected 'video' and optional 'options')")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_video:
            self.writer.write(data[start:end])  # raises UploadTooLarge past the limit
            if self._hasher is not None:
                self._hasher.update(data[start:end])
        else:
            self._buf += data[start:end]
            if len(self._buf) > self.max_field_bytes:
                raise ApiError(413, "options_too_large",
                               f"the '{self._name}' part exceeds {self.max_field_bytes} bytes")

    def _on_part_end(self) -> None:
        if self._in_video:
            self.form.size = self.writer.size
            self.form.blob = self.writer.commit()
            if self._hasher is not None:
                self.form.video_sha256 = self._hasher.hexdigest()
            self._in_video = False
        else:
            try:
                self.form.fields[self._name] = self._buf.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "invalid_options", f"the '{self._name}' part is not UTF-8") from None

    async def parse(self, stream: AsyncIterator[bytes]) -> ParsedForm:
        """Consume the body. On any error the partial/committed blob is deleted and the error re-raised."""
        parser = MultipartParser(self.boundary, {
            "on_part_begin": self._on_part_begin, "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end, "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value, "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
        })
        try:
            async for chunk in stream:
                parser.write(chunk)  # small synchronous page-cache writes: no thread hop per chunk
            parser.finalize()
            if self._in_video:
                raise ApiError(400, "invalid_multipart", "the request body ended inside the video part")
        except UploadTooLarge as e:
            self.cleanup()
            raise ApiError(413, "upload_too_large", f"the video exceeds the upload limit of {e.limit} bytes "
                           "(VIDPOSE_MAX_UPLOAD_BYTES)") from None
        except FormParserError as e:
            self.cleanup()
            raise ApiError(400, "invalid_multipart", f"malformed multipart body: {e}") from None
        except BaseException:
            self.cleanup()
            raise
        return self.form

    def cleanup(self) -> None:
        """Delete whatever this upload wrote (partial temp file or committed blob)."""
        if self.writer is not None:
            self.writer.abort()
        if self.form.blob is not None:
            self.form.blob.unlink(missing_ok=True)
