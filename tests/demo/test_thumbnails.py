"""Thumbnails from payloads, without servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobplane_demo.thumbnails import BadPayloadError, make_thumbnail
from PIL import Image


def test_keeps_the_aspect_ratio_within_the_box(tmp_path: Path) -> None:
    out = tmp_path / "a" / "t.png"
    thumbnail = make_thumbnail({"width": 1000, "height": 250, "size": [200, 200]}, out)
    assert (thumbnail.width, thumbnail.height) == (200, 50)
    assert thumbnail.as_result() == {
        "thumbnail_path": str(out),
        "width": 200,
        "height": 50,
        "format": "PNG",
    }
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (200, 50))
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_never_enlarges(tmp_path: Path) -> None:
    thumbnail = make_thumbnail({"width": 40, "height": 30}, tmp_path / "t.png")
    assert (thumbnail.width, thumbnail.height) == (40, 30)


@pytest.mark.parametrize(
    "payload",
    [{"size": [0, 10]}, {"size": [1, 2, 3]}, {"width": 10**6}, {"height": True}, {"color": 3}],
)
def test_refuses_bad_payloads(tmp_path: Path, payload: dict[str, object]) -> None:
    with pytest.raises(BadPayloadError):
        make_thumbnail(payload, tmp_path / "t.png")
