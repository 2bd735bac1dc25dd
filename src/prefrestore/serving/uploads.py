"""Reading one upload of ``prefrestore serve``: the request body -> (safe name, extension, bytes, options).

An upload is either ``multipart/form-data`` (a ``file`` part and an optional ``options`` part holding JSON) or the
raw image bytes as the body (``Content-Type: image/*``), with ``?name=`` and ``?options=`` (JSON) in the query.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from ..errors import ImageError
from ..image import IMAGE_EXTENSIONS
from ..photo_io import probe_image
from .schemas import OptionError, RestoreOptions


def safe_name(filename: str | None) -> str:
    """A user's file name -> a name safe for headers and messages: no folders, no control characters, <= 100 chars.

    Never used as a path: files on the server are named by job id.
    """
    base = re.split(r"[\\/]", filename or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")
    return base[:100] or "upload"


def _ext(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ""


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data bytes -> field name -> (filename or None, bytes). Raises ValueError when malformed."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ValueError("multipart body without a boundary")
    parts: dict[str, tuple[str | None, bytes]] = {}
    state: dict[str, Any] = {}

    def on_part_begin():
        state.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        state["data"].append(data[start:end])

    def on_part_end():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        if name and len(parts) < 8:
            parts[name] = (None if filename is None else filename.decode("utf-8", "replace"), b"".join(state["data"]))

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    parser.write(body)
    parser.finalize()
    return parts


async def read_upload(request: Request, max_pixels: int) -> tuple[str, str, bytes, RestoreOptions]:
    """The request's image and options; 400/422 with one line for anything wrong."""
    ctype = request.headers.get("content-type", "")
    body = await request.body()
    raw_options = request.query_params.get("options")
    if ctype.startswith("multipart/form-data"):
        try:
            parts = parse_multipart(body, ctype)
        except ValueError as err:
            raise HTTPException(400, f"malformed multipart body ({err}); send the photo as a 'file' part") from None
        if "file" not in parts:
            raise HTTPException(400, "no 'file' part; send the photo as -F file=@photo.jpg")
        filename, data = parts["file"]
        if "options" in parts:
            raw_options = parts["options"][1]
    else:
        filename, data = request.query_params.get("name"), body
    name = safe_name(filename)
    try:
        options = RestoreOptions.from_text(raw_options)
    except OptionError as err:
        raise HTTPException(422, str(err)) from None
    try:
        await asyncio.to_thread(probe_image, data, name, max_pixels=max_pixels)
    except ImageError as err:
        raise HTTPException(400, str(err)) from None
    return name, _ext(name), data, options
