"""A small PNG encoder/decoder on the standard library (zlib + struct).

Krita's RGBA/U8 layers are BGRA in memory; the daemon wants RGB(A) PNGs and answers with RGB(A)
PNGs. Encoding writes filter type 0 rows (fast: slicing only); decoding handles the five filter
types of non-interlaced 8-bit grayscale, gray+alpha, RGB and RGBA images, which is what Pillow,
Qt and libpng write by default. Pure Python, so it runs in tests outside Krita; the plug-in
decodes large images with Qt when it can (see imaging.py).
"""
import struct
import zlib

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # colour type -> samples per pixel


class PngError(ValueError):
    pass


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode(pixels, width, height, channels):
    """PNG bytes of 8-bit pixels (row-major, `channels` of 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)."""
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    stride = width * channels
    pixels = bytes(pixels)
    if len(pixels) != stride * height:
        raise PngError("expected %d bytes for %dx%dx%d, got %d" % (stride * height, width, height, channels,
                                                                  len(pixels)))
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return _SIG + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def decode(data):
    """(width, height, channels, pixels) of an 8-bit, non-interlaced PNG; pixels row-major bytes."""
    data = bytes(data)
    if not data.startswith(_SIG):
        raise PngError("not a PNG file")
    pos, idat, header, palette = 8, [], None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise PngError("PNG without IHDR")
    width, height, depth, color_type, _comp, _filt, interlace = header
    if depth != 8 or interlace != 0 or (color_type not in _CHANNELS and color_type != 3):
        raise PngError("unsupported PNG (bit depth %d, colour type %d, interlace %d)" % (depth, color_type, interlace))
    channels = 1 if color_type == 3 else _CHANNELS[color_type]
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) < (stride + 1) * height:
        raise PngError("truncated PNG data")
    out = bytearray(stride * height)
    prev = bytearray(stride)
    bpp = channels
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if ftype == 0:
            pass
        elif ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                if pa <= pb and pa <= pc:
                    pred = a
                elif pb <= pc:
                    pred = b
                else:
                    pred = c
                line[i] = (line[i] + pred) & 0xFF
        else:
            raise PngError("bad PNG filter type %d" % ftype)
        out[y * stride:(y + 1) * stride] = line
        prev = line
    if color_type == 3:
        if palette is None:
            raise PngError("palette PNG without PLTE")
        rgb = bytearray(width * height * 3)
        for i, idx in enumerate(out):
            rgb[3 * i:3 * i + 3] = palette[3 * idx:3 * idx + 3]
        return width, height, 3, bytes(rgb)
    return width, height, channels, bytes(out)


# -- Krita's BGRA layout -----------------------------------------------------------------------

def bgra_to_rgba(bgra):
    out = bytearray(bgra)
    out[0::4] = bgra[2::4]
    out[2::4] = bgra[0::4]
    return bytes(out)


def to_bgra(pixels, channels):
    """BGRA bytes (Krita RGBA/U8 layout) from gray, gray+alpha, RGB or RGBA pixels."""
    pixels = bytes(pixels)
    n = len(pixels) // channels
    out = bytearray(b"\xff" * (4 * n))
    if channels == 4:
        out[0::4] = pixels[2::4]
        out[1::4] = pixels[1::4]
        out[2::4] = pixels[0::4]
        out[3::4] = pixels[3::4]
    elif channels == 3:
        out[0::4] = pixels[2::3]
        out[1::4] = pixels[1::3]
        out[2::4] = pixels[0::3]
    elif channels == 2:
        out[0::4] = pixels[0::2]
        out[1::4] = pixels[0::2]
        out[2::4] = pixels[0::2]
        out[3::4] = pixels[1::2]
    else:
        out[0::4] = pixels
        out[1::4] = pixels
        out[2::4] = pixels
    return bytes(out)


def encode_bgra(bgra, width, height):
    """RGBA PNG from Krita BGRA bytes."""
    return encode(bgra_to_rgba(bytes(bgra)), width, height, 4)


def decode_to_bgra(data):
    """(width, height, BGRA bytes) of a PNG."""
    w, h, c, px = decode(data)
    return w, h, to_bgra(px, c)


def encode_mask(mask, width, height):
    """Grayscale PNG of one byte per pixel (255 = editable)."""
    return encode(bytes(mask), width, height, 1)
