"""Named DragConfig settings: the published algorithm and this project's defaults.

"paper" is DragGAN as published (L2 nearest-neighbour tracking against the initial handle feature,
r1 / r2 scaled by the image size, one feature block, a plain Adam run that ends on a stall) and
equals this project's defaults before issue 17 (call those "v1" when comparing). "studio" is the
default now: what the demo-drag benchmark measured best (benchmarks/README.md). A preset lists
only the fields it sets; the learning rate comes from the model's registry entry, not the preset.
"""
from __future__ import annotations

PRESETS: dict[str, dict[str, object]] = {
    "paper": {"track_metric": "l2", "r1": None, "r2": None, "stall_steps": 60, "coarse_blocks": 0, "snap": 0.0,
              "auto_region": 0.0, "template_adapt": 0.0, "stall_restarts": 0, "motion_step": 1.0},
    # Measured on the demo drags (benchmarks/README.md): coarser blocks for context, snapping clicks off a
    # thin part onto it, and a soft hold on what lies far from the drag. template_adapt, stall_restarts and
    # motion_step did not help there and stay off.
    "studio": {"track_metric": "l2", "r1": None, "r2": None, "stall_steps": 60, "coarse_blocks": 2, "snap": 1.5,
               "auto_region": 10.0, "template_adapt": 0.0, "stall_restarts": 0, "motion_step": 1.0},
}
