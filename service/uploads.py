"""Stream a multipart upload to a file on disk, hashing and counting bytes as they arrive.

Starlette's form parser finishes reading the whole body before a route runs, so a size limit
there is checked only after the disk has filled. This reader stops at the first byte over the limit.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import ApiError
from service.storage import ArtifactStorage

logger = logging.getLogger(__name__)

# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD_BYTES = 1 << 20
MAX_OTHER_FIELD_BYTES = 64 << 10


class UploadError(ApiError):
    """An upload was rejected; `status_code` is the HTTP status of the response."""


@dataclass(frozen=True)
class ReceivedFile:
    path: Path
    filename: str | None
    bytes: int
    sha256: str


class _PartCollector:
    """Callbacks for python-multipart's parser: writes the part named `field`, skips the others."""

    def __init__(self, field: str, destination: Path, max_bytes: int) -> None:
        self.field = field
        self.destination = destination
        self.max_bytes = max_bytes
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, str] = {}
        self.handle: BinaryIO | None = None
        self.writing = False
        self.found = False
        self.finished = False
        self.filename: str | None = None
        self.size = 0
        self.other_bytes = 0
        self.digest = hashlib.sha256()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda data, start, end: self.header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self.header_value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_end(self) -> None:
        name = self.header_field.decode("latin-1").strip().lower()
        self.headers[name] = self.header_value.decode("latin-1")
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", errors="replace")
        if name != self.field:
            self.writing = False
            return
        if self.found:
            raise UploadError(422, f"{self.field}: the form sends the field '{self.field}' more than once; send one file")
        self.found = True
        self.writing = True
        raw_filename = options.get(b"filename")
        self.filename = raw_filename.decode("utf-8", errors="replace") if raw_filename else None
        self.handle = open(self.destination, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing:
            self.other_bytes += end - start
            if self.other_bytes > MAX_OTHER_FIELD_BYTES:
                raise UploadError(
                    413, f"form fields other than '{self.field}' exceed {MAX_OTHER_FIELD_BYTES} bytes; send only the file"
                )
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise UploadError(
                413,
                f"{self.field}: the upload exceeds the limit of {self.max_bytes} bytes; "
                "send a smaller file or raise FAIRSQUEEZE_MAX_UPLOAD_BYTES",
            )
        chunk = data[start:end]
        self.digest.update(chunk)
        if self.handle is not None:
            self.handle.write(chunk)

    def on_part_end(self) -> None:
        if self.writing and self.handle is not None:
            self.handle.close()
            self.handle = None
        self.writing = False

    def on_end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _boundary(request: Request, field: str) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        received = content_type.decode("latin-1") or "none"
        raise UploadError(
            415,
            f"{field}: expected a multipart/form-data body with the file in a field named '{field}', "
            f"got content type {received}",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(422, f"{field}: the multipart/form-data content type has no boundary parameter")
    return boundary


def _check_declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return
    if int(declared) > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise UploadError(
            413,
            f"file: the request body has {declared} bytes, over the upload limit of {max_bytes} bytes; "
            "send a smaller file or raise FAIRSQUEEZE_MAX_UPLOAD_BYTES",
        )


async def receive_file(
    request: Request, *, storage: ArtifactStorage, max_bytes: int, field: str = "file", suffix: str = ""
) -> ReceivedFile:
    """Write the multipart field `field` to a temporary file under the storage root and return it.

    Raises UploadError (415 for a body that is not multipart, 413 above `max_bytes`, 422 when the
    field is missing or the body is malformed). The caller owns the returned file.
    """
    boundary = _boundary(request, field)
    _check_declared_length(request, max_bytes)

    destination = storage.temporary_file(suffix=suffix)
    collector = _PartCollector(field, destination, max_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        destination.unlink(missing_ok=True)
        raise UploadError(422, f"{field}: the multipart/form-data body is malformed: {error}") from error
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    finally:
        collector.close()

    if not collector.found:
        destination.unlink(missing_ok=True)
        raise UploadError(422, f"{field}: missing; send the file in a multipart/form-data field named '{field}'")
    if not collector.finished:
        destination.unlink(missing_ok=True)
        raise UploadError(422, f"{field}: the multipart/form-data body ended before its closing boundary")
    return ReceivedFile(destination, collector.filename, collector.size, collector.digest.hexdigest())


def multipart_request_body(description: str) -> dict:
    """Return the OpenAPI requestBody of a multipart upload with one file field named `file`."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary", "description": description}},
                    },
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            },
        }
    }
