"""Drawing handle (red) and target (blue) points with arrows on result images and GIF frames."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

HANDLE = (230, 40, 40)
TARGET = (40, 90, 230)


def draw_points(img: Image.Image, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]],
                scale: int = 1) -> Image.Image:
    """Return a copy of img (optionally enlarged) with an arrow from every handle to its target."""
    out = img.convert("RGB")
    if scale != 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(out)
    r = max(2, 2 * scale)
    for (hx, hy), (tx, ty) in zip(handles, targets):
        h = ((hx + 0.5) * scale, (hy + 0.5) * scale)
        t = ((tx + 0.5) * scale, (ty + 0.5) * scale)
        draw.line([h, t], fill=(255, 255, 255), width=max(1, scale // 2))
        draw.ellipse([t[0] - r, t[1] - r, t[0] + r, t[1] + r], fill=TARGET)
        draw.ellipse([h[0] - r, h[1] - r, h[0] + r, h[1] + r], fill=HANDLE)
    return out


def save_gif(frames: Sequence[Image.Image], path: str, frame_ms: int = 80) -> None:
    """Animated GIF; the last frame is held longer so the result can be seen."""
    if not frames:
        raise ValueError("no frames to save")
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 15]
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=durations, loop=0)
