"""The plug-ins' shared stdlib PNG codec (draggan_client/pngcodec.py), checked against Pillow and against a
PNG writer written here independently of it, plus the rule that both plug-ins carry it unchanged."""
from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from draggan_client import pngcodec as png

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("channels,mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_encoding_is_read_by_pillow_and_decodes_back(channels, mode):
    pixels = np.random.default_rng(channels).integers(0, 256, (7, 5, channels), dtype=np.uint8)
    data = png.encode_png(5, 7, channels, pixels.tobytes())
    img = Image.open(io.BytesIO(data))
    assert img.mode == mode and img.size == (5, 7)
    assert (np.asarray(img).reshape(7, 5, channels) == pixels).all()
    assert png.png_size(data) == (5, 7)
    assert png.decode_png(data) == (5, 7, channels, pixels.tobytes())


def _pillow_png(mode: str) -> tuple[bytes, np.ndarray]:
    """A Pillow PNG whose rows use Pillow's adaptive filters, and the 8-bit samples it should decode to."""
    y, x = np.mgrid[0:23, 0:31]
    rgba = np.stack([x * 8, y * 11, (x * y) % 256, 200 + x % 50], -1).astype(np.uint8)
    rgba[5:9, 3:20] = np.random.default_rng(0).integers(0, 256, (4, 17, 4))
    if mode == "I;16":
        img = Image.fromarray((x * 2000 + y).astype(np.uint16))
        expected = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
    elif mode == "PA":  # palette with transparency (tRNS)
        img = Image.fromarray(rgba[..., :3]).convert("P")
        img.info["transparency"] = 0
        expected = np.asarray(img.convert("RGBA"))
    else:
        img = Image.fromarray(rgba if mode in ("LA", "RGBA") else rgba[..., :3]).convert(mode)
        expected = np.asarray(img.convert("RGB")) if mode == "P" else np.asarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG", **({"transparency": 0} if mode == "PA" else {}))
    return buf.getvalue(), expected


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "PA", "I;16"])
def test_decoding_of_pillow_files(mode):
    data, expected = _pillow_png(mode)
    width, height, channels, pixels = png.decode_png(data)
    assert (width, height) == (31, 23)
    assert channels == (expected.shape[2] if expected.ndim == 3 else 1)
    assert pixels == expected.tobytes()


def _filtered_png(pixels: bytes, w: int, h: int, bpp: int) -> bytes:
    """A PNG whose rows cycle through the five filter types (written without the codec)."""
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        line = pixels[y * stride:(y + 1) * stride]
        ft = y % 5
        out = bytearray()
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c)
                                                                                      else c)
            pred = [0, a, b, (a + b) // 2, paeth][ft]
            out.append((line[i] - pred) & 0xFF)
        rows.append(bytes([ft]) + bytes(out))
        prev = bytearray(line)

    return _png(w, h, {1: 0, 2: 4, 3: 2, 4: 6}[bpp], zlib.compress(b"".join(rows)))


def _png(w: int, h: int, colour_type: int, idat: bytes) -> bytes:
    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bpp", [1, 2, 3, 4])
def test_all_five_row_filters(bpp):
    rnd = random.Random(bpp)
    w, h = 11, 10
    px = bytes(rnd.randrange(256) for _ in range(w * h * bpp))
    assert png.decode_png(_filtered_png(px, w, h, bpp)) == (w, h, bpp, px)


def test_errors_are_png_errors_with_a_reason():
    with pytest.raises(png.PngError, match="not a PNG"):
        png.png_size(b"GIF89a....")
    with pytest.raises(png.PngError, match="not a PNG"):
        png.decode_png(b"nope")
    with pytest.raises(png.PngError, match="cannot encode"):
        png.encode_png(2, 2, 3, b"\x00" * 11)
    rows_of_4x4_rgb = zlib.compress(b"".join(b"\x00" + bytes(12) for _ in range(4)))
    assert png.decode_png(_png(4, 4, 2, rows_of_4x4_rgb)) == (4, 4, 3, bytes(48))
    with pytest.raises(png.PngError, match="bytes, expected"):
        png.decode_png(_png(5, 4, 2, rows_of_4x4_rgb))  # the header promises more than the data holds
    with pytest.raises(png.PngError, match="corrupt"):
        png.decode_png(_png(4, 4, 2, b"not zlib data"))
    buf = io.BytesIO()
    Image.new("1", (4, 4)).save(buf, format="PNG")
    with pytest.raises(png.PngError, match="bit depth 1"):
        png.decode_png(buf.getvalue())
