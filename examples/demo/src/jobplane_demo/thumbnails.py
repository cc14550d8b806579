"""Making a thumbnail with Pillow from a job's payload.

Payload: ``{"image_base64": "<PNG/JPEG as base64>"}`` or, without an image, a generated test
image ``{"width": w, "height": h, "color": "..."}``; ``"size": [w, h]`` is the box the
thumbnail fits in (aspect ratio kept), default 128x128.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

DEFAULT_SIZE = (128, 128)
MAX_SIDE = 10_000  # generated images and thumbnail boxes


class BadPayloadError(ValueError):
    """The payload can never make a thumbnail: retrying will not help."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    path: Path
    width: int
    height: int
    format: str = "PNG"

    def as_result(self) -> dict[str, Any]:
        return {
            "thumbnail_path": str(self.path),
            "width": self.width,
            "height": self.height,
            "format": self.format,
        }


def make_thumbnail(payload: dict[str, Any], output_path: Path) -> Thumbnail:
    """Write the thumbnail the payload asks for to ``output_path`` (PNG)."""
    size = _size(payload.get("size", list(DEFAULT_SIZE)))
    with _source_image(payload) as image:
        image.thumbnail(size)
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        output_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = output_path.with_name(output_path.name + ".tmp")
        image.save(tmp, format="PNG")
        tmp.replace(output_path)  # a reader never sees half a file
        return Thumbnail(path=output_path, width=image.width, height=image.height)


def _source_image(payload: dict[str, Any]) -> Image.Image:
    encoded = payload.get("image_base64")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise BadPayloadError("image_base64 must be a string")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadPayloadError(f"image_base64 is not base64: {exc}") from exc
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise BadPayloadError(f"image_base64 is not a readable image: {exc}") from exc
        if image.format not in ("PNG", "JPEG"):
            raise BadPayloadError(f"only PNG and JPEG images are supported, got {image.format}")
        return image
    width = _side(payload.get("width", 640), "width")
    height = _side(payload.get("height", 480), "height")
    color = payload.get("color", "steelblue")
    if not isinstance(color, str):
        raise BadPayloadError("color must be a string such as 'red' or '#336699'")
    try:
        return Image.new("RGB", (width, height), color)
    except ValueError as exc:
        raise BadPayloadError(f"unknown color {color!r}") from exc


def _size(value: Any) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise BadPayloadError(f"size must be [width, height], got {value!r}")
    return _side(value[0], "size width"), _side(value[1], "size height")


def _side(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise BadPayloadError(f"{name} must be an integer from 1 to {MAX_SIDE}, got {value!r}")
    return value
