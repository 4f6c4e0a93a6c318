"""PNG encoder/decoder on the standard library (zlib + struct), shared by the Krita and GIMP plug-ins.

The daemon speaks PNG; the plug-ins run inside the editors' own Python (3.8+), where neither
Pillow nor numpy exists, so each carries a copy of this package (draggan_client/; the
packaging scripts copy it, tests check the copies). The daemon itself uses Pillow.

Encoding writes filter-type-0 rows (slicing only, fast). Decoding handles what Pillow, Qt and
libpng write: non-interlaced 8- and 16-bit gray, gray+alpha, RGB, RGBA (16 bits are cut to 8)
and 8-bit palette images (returned as RGB, or RGBA when they carry transparency), with all five
row filters.
"""
import struct
import zlib
from typing import Tuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


class PngError(ValueError):
    """Bytes that are not a PNG this codec can read, or pixels that do not fit the stated size."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, channels: int, pixels: bytes, level: int = 6) -> bytes:
    """An 8-bit PNG (channels 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) of row-major pixels."""
    stride = width * channels
    pixels = bytes(pixels)
    if channels not in _COLOUR_TYPES or len(pixels) != stride * height or width < 1 or height < 1:
        raise PngError("cannot encode {} bytes as {}x{} with {} channels".format(len(pixels), width, height,
                                                                               channels))
    raw = b"".join(b"\x00" + pixels[r * stride:(r + 1) * stride] for r in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> Tuple[int, int]:
    """(width, height) from a PNG's header, without decoding it."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PngError("the daemon sent something that is not a PNG image")
    return struct.unpack(">II", data[16:24])


def decode_png(data: bytes) -> Tuple[int, int, int, bytes]:
    """(width, height, channels, pixels): 8-bit row-major samples of a non-interlaced PNG."""
    data = bytes(data)
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("not a PNG file")
    pos, idat, palette, trns, header = 8, [], None, None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise PngError("PNG without IHDR")
    width, height, depth, colour, _compression, _filter, interlace = header
    if interlace:
        raise PngError("interlaced PNGs are not supported")
    if colour not in _SAMPLES or depth not in (8, 16) or (colour == 3 and depth != 8):
        raise PngError("unsupported PNG (bit depth {}, colour type {})".format(depth, colour))
    channels = _SAMPLES[colour]
    bpp = channels * depth // 8
    stride = width * bpp
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise PngError("corrupt PNG data ({})".format(e))
    if len(raw) != (stride + 1) * height:
        raise PngError("PNG data is {} bytes, expected {}".format(len(raw), (stride + 1) * height))
    out = bytearray(stride * height)
    prev = bytearray(stride)
    for r in range(height):
        line = bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        _unfilter(raw[r * (stride + 1)], line, prev, bpp)
        out[r * stride:(r + 1) * stride] = line
        prev = line
    if depth == 16:
        out = out[0::2]
    if colour == 3:
        return width, height, *_expand_palette(out, palette, trns)
    return width, height, channels, bytes(out)


def _expand_palette(indices: bytearray, palette, trns) -> Tuple[int, bytes]:
    """(channels, pixels) of palette indices: RGB, or RGBA when the PNG has a tRNS chunk."""
    if palette is None:
        raise PngError("palette PNG without PLTE")
    if not trns:
        return 3, b"".join(palette[3 * i:3 * i + 3] for i in indices)
    return 4, b"".join(palette[3 * i:3 * i + 3] + bytes([trns[i] if i < len(trns) else 255]) for i in indices)


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    """Undo one row's PNG filter in place (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    n = len(line)
    if kind == 0:
        return
    if kind == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif kind == 2:
        for i in range(n):
            line[i] = (line[i] + prev[i]) & 255
    elif kind == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
    elif kind == 4:
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    else:
        raise PngError("bad PNG filter type {}".format(kind))
