"""Streaming multipart reader: files go to a temp folder as they arrive; the size limit is enforced per
chunk, so an oversized upload is refused before it is read (let alone held in memory).

Only the HTTP body is parsed here. What an uploaded task file holds (its formats, one reader per suffix,
and the checks on images and labels) is read in core/datasets.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from core.errors import CorruptFile, InvalidInput, PayloadTooLarge

MAX_FIELD_BYTES = 64 * 1024
OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file bytes


@dataclass
class UploadedFile:
    field: str
    filename: str
    path: Path
    size: int = 0


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)


def check_length(request: Request, limit: int) -> None:
    """Refuse at once when the client declares a body above the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + OVERHEAD:
        raise PayloadTooLarge(f"upload of {int(declared)} bytes exceeds the limit of {limit} bytes; split it")


class _Collector:
    """Callbacks for python-multipart: headers, then data into a file or a small field buffer."""

    def __init__(self, folder: Path, form: Form) -> None:
        self.folder, self.form = folder, form
        self.headers: dict[bytes, bytes] = {}
        self.field_name, self.value = b"", b""
        self.buf = bytearray()
        self.out: UploadedFile | None = None
        self.handle = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "field_name", self.field_name + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "value", self.value + d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self.headers, self.buf, self.out, self.part_name = {}, bytearray(), None, ""

    def header_end(self) -> None:
        self.headers[self.field_name.lower()] = self.value
        self.field_name, self.value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode(errors="replace")
        filename = params.get(b"filename")
        if filename is not None:
            safe = os.path.basename(filename.decode(errors="replace").replace("\\", "/")) or "upload"
            path = self.folder / f"{len(self.form.files)}-{safe}"
            self.out = UploadedFile(name, safe, path)
            self.handle = open(path, "wb")  # noqa: SIM115 - closed in part_end
        self.part_name = name

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.out is not None and self.handle is not None:
            self.handle.write(data[start:end])
            self.out.size += end - start
        else:
            self.buf += data[start:end]
            if len(self.buf) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {self.part_name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def part_end(self) -> None:
        if self.out is not None and self.handle is not None:
            self.handle.close()
            self.handle = None
            self.form.files.append(self.out)
        else:
            self.form.fields[self.part_name] = self.buf.decode(errors="replace")

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


async def receive_form(request: Request, limit: int, folder: Path) -> Form:
    """Parse a multipart body into `folder`, counting bytes as they arrive."""
    check_length(request, limit)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput("send the data as multipart/form-data (e.g. curl -F file=@task.npz)")
    form = Form()
    collector = _Collector(folder, form)
    parser = MultipartParser(params[b"boundary"], collector.callbacks())
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + OVERHEAD:
                raise PayloadTooLarge(
                    f"upload exceeds the limit of {limit} bytes (DGM_MAX_UPLOAD_BYTES); split it"
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise CorruptFile(f"the multipart body is malformed ({exc}); let your HTTP client build it") from exc
    finally:
        collector.close()
    return form


async def read_body(request: Request, limit: int) -> bytes:
    """A whole (JSON or .npy) body, refused as soon as it passes the limit."""
    check_length(request, limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit + OVERHEAD:
            raise PayloadTooLarge(
                f"request body exceeds the limit of {limit} bytes; send fewer images per call"
            )
        chunks.append(chunk)
    return b"".join(chunks)
