"""Reading a client's PNG into an 8-bit Pillow image: the structure first, the pixels last.

The chunks (lengths, checksums, the header's fields) are walked here before Pillow sees the file,
so a broken PNG is refused with a message that says what is wrong, and the image's size and kind
are known before any pixel is decoded: callers check the size and reserve the decode's memory
(budget.py) in between. Pillow clips 16-bit grey to white and keeps only the high byte of 16-bit
colour, so 16-bit samples are scaled here, as round(v * 255 / 65535).
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
from PIL import Image

from .errors import ApiError, bad_request

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # by PNG colour type
GREY, RGB, PALETTE, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6
LOW_BYTES = {RGB: "RGB;16L", RGBA: "RGBA;16L"}  # Pillow rawmodes that read the second byte of each sample
# Bytes a pixel at the peak of a 16-bit decode into RGBA or L, by colour type, measured with Pillow 13
# (its decodes, their arrays, the scaled array and its image; colour is decoded twice) and rounded up.
SIXTEEN_BIT_PEAK = {GREY: 10, GREY_ALPHA: 13, RGB: 14, RGBA: 17}
SCALE_ROWS = 256  # rows scaled (or copied out of Pillow) at once, so temporary arrays stay small


@dataclasses.dataclass(frozen=True)
class PngFile:
    """A PNG whose structure is sound, with the facts of its header."""
    key: str  # the request field it came in, for messages
    data: bytes
    width: int
    height: int
    bit_depth: int
    colour_type: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def decode_bytes(self, mode: str) -> int:
        """Memory that decoding into `mode` ('RGBA' or 'L') holds at its peak, from the header alone.

        Pillow keeps RGB, grey+alpha and RGBA in 4 bytes a pixel, grey and palette in 1, and a
        conversion holds both images at once; 16-bit images take the measured SIXTEEN_BIT_PEAK.
        tests/test_daemon_images.py checks these against the peaks of real decodes.
        """
        if self.bit_depth == 16:
            per_pixel = SIXTEEN_BIT_PEAK[self.colour_type]
        else:
            per_pixel = 4 if self.colour_type in (RGB, GREY_ALPHA, RGBA) else 1
            if (self.colour_type, mode) not in ((RGBA, "RGBA"), (GREY, "L")):  # else no conversion
                per_pixel += {"RGBA": 4, "L": 1}[mode]
        return self.width * self.height * per_pixel


def read(key: str, data: bytes, max_chunks: int) -> PngFile:
    """Walk the chunks of a PNG without decoding it: every chunk whole, with a right checksum, a
    valid header first, image data, and an end, at most max_chunks of them; else 400 bad_png
    saying what is wrong."""
    if not data.startswith(PNG_SIGNATURE):
        raise broken(key, "is not a PNG image (wrong signature)")
    view, pos, header, seen = memoryview(data), len(PNG_SIGNATURE), None, set()
    for _ in range(max_chunks):
        if pos + 8 > len(data):
            raise broken(key, "is a broken PNG: it ends before its IEND chunk (the file is cut short)")
        length, kind = struct.unpack(">I4s", view[pos:pos + 8])
        name = kind.decode("latin-1")
        if not kind.isalpha():
            raise broken(key, f"is a broken PNG: a chunk at byte {pos} has no valid type")
        if length > 2 ** 31 - 1 or pos + 12 + length > len(data):
            raise broken(key, f"is a broken PNG: it ends inside its {name} chunk (the file is cut short)")
        body = view[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", view[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(view[pos + 4:pos + 8 + length]) != crc:
            raise broken(key, f"is a broken PNG: the checksum of its {name} chunk is wrong (the file is damaged)")
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise broken(key, "is a broken PNG: it does not start with an IHDR header chunk")
            header = struct.unpack(">IIBBBBB", body)
            check_header(key, header)
        seen.add(kind)
        pos += 12 + length
        if kind == b"IEND":
            break
        if kind == b"IDAT" and header[3] == PALETTE and b"PLTE" not in seen:
            raise broken(key, "is a broken PNG: a palette image without a PLTE chunk before its pixels")
    else:
        raise broken(key, f"has more than {max_chunks} chunks; send it as an ordinary PNG")
    if b"IDAT" not in seen:
        raise broken(key, "is a broken PNG: it has no image data (IDAT chunk)")
    width, height, depth, colour = header[:4]
    return PngFile(key, data, width, height, depth, colour)


def check_header(key: str, header: tuple[int, ...]) -> None:
    width, height, depth, colour, compression, filtering, interlace = header
    if width < 1 or height < 1:
        raise broken(key, f"is a broken PNG: its header gives a size of {width}x{height}")
    if depth not in BIT_DEPTHS.get(colour, ()):
        raise broken(key, f"is a broken PNG: colour type {colour} with bit depth {depth} does not exist")
    if compression or filtering or interlace > 1:
        raise broken(key, "is a broken PNG: its header names an unknown compression, filter or interlace method")


def broken(key: str, what: str) -> ApiError:
    return bad_request(f"'{key}' {what}", "bad_png")


def decode(png: PngFile, mode: str) -> Image.Image:
    """The pixels in `mode`, 8 bits a sample; 400 bad_png when the image data cannot be decoded."""
    try:
        image = decode16(png) if png.bit_depth == 16 else load(png.data)
        return image if image.mode == mode else image.convert(mode)
    except (OSError, SyntaxError, ValueError, zlib.error) as e:
        raise broken(png.key, f"is a broken PNG: {pixel_data_fault(e)}") from None


def pixel_data_fault(e: Exception) -> str:
    """What Pillow's error means, in words that name no object (its messages hold reprs)."""
    text = str(e)
    if "truncated" in text:
        return "its image data is shorter than its size needs"
    if "unrecognized data stream" in text:
        return "its image data has rows with an unknown filter"
    if "too large" in text.lower():  # Pillow's guard on text and colour-profile chunks
        return "one of its chunks decompresses to far too much data"
    return "its compressed image data is corrupt"


def load(data: bytes, rawmode: str | None = None) -> Image.Image:
    """Pillow's decode of a PNG; `rawmode` replaces the byte layout Pillow reads the rows with."""
    image = Image.open(io.BytesIO(data), formats=["PNG"])
    if rawmode is not None:
        image.tile = [tile._replace(args=rawmode) for tile in image.tile]
    image.load()
    return image


def decode16(png: PngFile) -> Image.Image:
    """An 8-bit image of a 16-bit PNG, each sample round(v * 255 / 65535), tRNS kept as alpha."""
    if png.colour_type == GREY:
        image = load(png.data)  # mode I;16: all 16 bits
        samples = np.asarray(image, dtype=np.uint16)
        grey = scaled((samples >> 8).astype(np.uint8), (samples & 255).astype(np.uint8))
        key = image.info.get("transparency")
        if key is None:
            return Image.fromarray(grey, "L")
        return Image.fromarray(np.stack([grey, np.where(samples == key, 0, 255).astype(np.uint8)], -1), "LA")
    if png.colour_type == GREY_ALPHA:
        # No Pillow mode reads both bytes of 16-bit grey+alpha, but its rows are byte for byte those of
        # 8-bit RGBA (4 bytes a pixel, so the row filters agree): read them as R=L high, G=L low, B, A.
        data = bytearray(png.data)
        data[24:26] = bytes([8, RGBA])
        data[29:33] = struct.pack(">I", zlib.crc32(data[12:29]))
        bytes4 = np.asarray(load(bytes(data)))
        return Image.fromarray(np.stack([scaled(bytes4[..., 0], bytes4[..., 1]),
                                         scaled(bytes4[..., 2], bytes4[..., 3])], -1), "LA")
    # RGB and RGBA: Pillow reads the high bytes; the same rows read as little-endian give the low bytes.
    first = load(png.data)
    key = first.info.get("transparency")
    high = np.asarray(first)
    del first
    low = np.asarray(load(png.data, LOW_BYTES[png.colour_type]))
    out = scaled(high, low)
    if key is None or png.colour_type == RGBA:
        return Image.fromarray(out, "RGBA" if png.colour_type == RGBA else "RGB")
    key = np.array(key)  # the transparent colour, 16 bits a sample
    alpha = np.where(((high == key >> 8) & (low == key & 255)).all(-1), 0, 255).astype(np.uint8)
    return Image.fromarray(np.concatenate([out, alpha[..., None]], -1), "RGBA")


def scaled(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """round((256 * high + low) * 255 / 65535) as uint8, computed as high + round((low - high) / 257),
    which is exact and needs no wider type than int16, a block of rows at a time."""
    out = np.empty(high.shape, np.uint8)
    for r in range(0, high.shape[0], SCALE_ROWS):
        h = high[r:r + SCALE_ROWS].astype(np.int16)
        d = low[r:r + SCALE_ROWS] - h
        out[r:r + SCALE_ROWS] = h + (d > 128) - (d < -128)
    return out


def pixels(image: Image.Image) -> np.ndarray:
    """The image's pixels as a new uint8 array [h, w] or [h, w, bands], copied a block of rows at a
    time: np.asarray(image) goes through Image.tobytes, which holds the bytes twice over (a list of
    chunks, then their join), one more full copy of a 16 Mpixel layer."""
    bands = len(image.getbands())
    out = np.empty((image.height, image.width) + ((bands,) if bands > 1 else ()), np.uint8)
    for top in range(0, image.height, SCALE_ROWS):
        bottom = min(top + SCALE_ROWS, image.height)
        out[top:bottom] = np.asarray(image.crop((0, top, image.width, bottom)))
    return out
