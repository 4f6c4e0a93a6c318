"""Named DragConfig settings: the published algorithm and this project's defaults.

"paper" is DragGAN as published (L2 nearest-neighbour tracking against the initial handle feature,
r1 / r2 scaled by the image size, one feature block, a plain Adam run that ends on a stall) and
equals this project's defaults before issue 17 (call those "v1" when comparing). "studio" is the
default now: what the demo-drag benchmark measured best (benchmarks/README.md). A preset lists
only the fields it sets; the learning rate comes from the model's registry entry, not the preset.
"""
from __future__ import annotations

PRESETS: dict[str, dict[str, object]] = {
    "paper": {},
    "studio": {},
}
