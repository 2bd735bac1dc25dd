"""Reading one upload of ``prefrestore serve``: the request body -> (safe name, extension, bytes, options).

An upload is either ``multipart/form-data`` (a ``file`` part and an optional ``options`` part holding JSON) or the
raw image bytes as the body (``Content-Type: image/*``, ``application/octet-stream`` or none), with ``?name=`` and
``?options=`` (JSON) in the query. Any other Content-Type (JSON, text, a form) is refused with 415. The stored
upload's extension (which decides ``output_format: auto``) is the one its bytes announce, so a JPEG sent without
a name comes back as JPEG; the name's extension only when the bytes announce none.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from ..errors import ImageError
from ..io.image import IMAGE_EXTENSIONS
from ..io.photo_io import probe_image, sniff_format
from ..restore.options import RestoreSettings, SettingError
from .schemas import request_settings


def safe_name(filename: str | None) -> str:
    """A user's file name -> a name safe for headers and messages: no folders, no control characters, <= 100 chars.

    Never used as a path: files on the server are named by job id.
    """
    base = re.split(r"[\\/]", filename or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")
    return base[:100] or "upload"


_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WebP": ".webp", "TIFF": ".tif", "GIF": ".gif", "BMP": ".bmp"}
RAW_TYPES = ("application/octet-stream",)  # besides image/*: bytes sent as a raw body


def _ext(name: str, data: bytes) -> str:
    """The upload's extension: the format its bytes announce, else the name's (if an image extension), else ""."""
    sniffed = _FORMAT_EXT.get(sniff_format(data[:32]) or "")
    if sniffed:
        return sniffed
    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ""


def unsupported_type(content_type: str) -> str | None:
    """The one-line 415 message for an upload's Content-Type, or None when it is multipart, an image type,
    application/octet-stream or absent."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not media or media == "multipart/form-data" or media.startswith("image/") or media in RAW_TYPES:
        return None
    shown = re.sub(r"[^a-z0-9.+/-]", "_", media)[:60]
    return (
        f"Content-Type {shown}: not an image; send the photo as multipart (-F file=@photo.jpg) or as the raw "
        "body with its image type (-H 'Content-Type: image/jpeg' --data-binary @photo.jpg)"
    )


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

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return parts


async def read_upload(
    request: Request, max_pixels: int, base: RestoreSettings | None = None
) -> tuple[str, str, bytes, RestoreSettings]:
    """The request's image and its settings (``base``, the server's, with the request's options); 400/422 with one
    line for anything wrong."""
    ctype = request.headers.get("content-type", "")
    refused = unsupported_type(ctype)
    if refused:
        raise HTTPException(415, refused)
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
        options = request_settings(raw_options, base)
    except SettingError as err:
        raise HTTPException(422, str(err)) from None
    try:
        await asyncio.to_thread(probe_image, data, name, max_pixels=max_pixels)
    except ImageError as err:
        raise HTTPException(400, str(err)) from None
    return name, _ext(name, data), data, options
