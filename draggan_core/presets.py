"""Named DragConfig settings: the published algorithm and this project's defaults.

"paper" is DragGAN as published (L2 nearest-neighbour tracking against the initial handle feature,
r1 / r2 scaled by the image size, one feature block, a plain Adam run that ends on a stall) and
equals DragConfig's defaults. "studio" is what the demo-drag benchmark measured best
(benchmarks/README.md, issue 17, tenth round, the sharp demo model, both in one run: landed 90% against
43%, content 1.0 px from the targets against 3.3, paired MSE 2.69 against 4.90; fifth round, the previous
model: 62% against 24%, 5.8 s of dragging per landed drag against 10.4),
and not the default: its coarse blocks make a tiny 64-px model's drag move about half as far in the same steps, its
learning rate grows up to 4x on long drags, which the editor tests' small models were not
measured with, and its coarse blocks and automatic region read whole feature maps, so its steps
cannot use the step window (drag.DragSession.step_window): 1.6x the published step's time at
128 px, 4.6x at 512. A drag of one point gets studio's warp fit first (warp_max_points 1): one
point can only say "move this", and the fit carries the part under it, outline and all (19 of 20
one-point head moves land, none without it; 150 steps, where 100 left long moves 1-3 px short); a drag of more points can ask for a reshape (a turn,
an ear beside a held one), which the warp's blend of vectors gets wrong, so it skips the fit. On a
stall, studio lets all the W+ rows join the published six and goes on (stall_rows): a small part
(an open mouth) changes shape only through the finer rows (6 of 13 open mouths land, none before),
while rows open from the start let a turned head be redrawn instead of turned. Its tracker breaks
near-ties (track_ties 0.15) towards where the motion asked the content to go: a closed mouth's line
opens into two lips and a gap that match its template about as well, and the published tracker
stays behind while the lip arrives (open mouths 6 -> 9 of 13, turns 13 -> 16 of 20, with the
automatic region's tighter reach of supervision.py; tolerance 0.25 since the shared offset below).
Once the finer rows join, the soft hold grows 2.5x (stall_hold): they can redraw an eye or the
whiskers beside a mouth (open mouths' paired MSE 5.49 -> 4.01, below no edit). Beside the first six
rows it moves one W offset every row shares (shared_w 4): a W+ drag can carry a nose sideways by
shifting and tilting the head, a move in W turns it as the generator draws a turn (turns 16 -> 19 of
20, all drags 81 -> 83 of 92, 54 steps per drag instead of 104; 4% more per step).
"quick" is the published algorithm with studio's snapping and learning rate
only: it lands 34%, fewer than studio, but keeps the step window and has no warp fit.
"move" is quick after a warp fit (DragConfig.warp_steps, warp.py) for any number of points: the
drag block's features are first fitted to the start's warped by the points, so what lies under
them moves with them, then the loop tracks and refines. Two points dragged the same way move the
whole picture too, so a head meant to turn shifts instead: not a default (47% of the demo drags
land, but the paired MSE is worse than no edit). Snapping keeps the
user's target unless the snap would swallow more than half of the drag (then the target moves with the handle: a box-aligned drag in the GIMP e2e test
once changed no pixel because its handle was snapped next to its target). A
preset lists only the fields it sets; the learning rate comes from the model's registry entry.
"""
from __future__ import annotations

DEFAULT = "paper"  # what DragConfig's defaults equal, and what the daemon, the CLI and the editors start on

PRESETS: dict[str, dict[str, object]] = {
    "paper": {"track_metric": "l2", "r1": None, "r2": None, "stall_steps": 60, "coarse_blocks": 0, "snap": 0.0,
              "auto_region": 0.0, "template_adapt": 0.0, "stall_restarts": 0, "motion_step": 1.0, "lr_reach": 0.0,
              "coarse_motion": 0, "track_patch": 0.0, "warp_steps": 0, "warp_max_points": 0, "stall_rows": 0,
              "track_ties": 0.0, "stall_hold": 1.0, "shared_w": 0.0},
    # studio's snapping and distance-scaled learning rate, nothing that reads whole maps
    "quick": {"track_metric": "l2", "r1": None, "r2": None, "stall_steps": 60, "coarse_blocks": 0, "snap": 1.5,
              "auto_region": 0.0, "template_adapt": 0.0, "stall_restarts": 0, "motion_step": 1.0, "lr_reach": 0.015,
              "coarse_motion": 0, "track_patch": 0.0, "warp_steps": 0, "warp_max_points": 0},
    # Measured on the demo drags (benchmarks/README.md): coarser blocks for context, snapping clicks off a
    # thin part onto it, a soft hold on what lies far from the drag, a learning rate that grows with the
    # distance left, the warp fit for one-point drags, on a stall the finer W+ rows (and a stronger hold),
    # near-ties tracked towards the motion, and a W offset all rows share. template_adapt, stall_restarts, motion_step, coarse_motion and track_patch did not
    # help there and stay off, nor did the warp fit for more points.
    "studio": {"track_metric": "l2", "r1": None, "r2": None, "stall_steps": 60, "coarse_blocks": 2, "snap": 1.5,
               "auto_region": 10.0, "template_adapt": 0.0, "stall_restarts": 0, "motion_step": 1.0,
               "lr_reach": 0.015, "warp_steps": 150, "warp_max_points": 1, "stall_rows": 12, "track_ties": 0.25,
               "stall_hold": 2.5, "shared_w": 4.0},
    # quick after a warp fit: the content under the points moves with them first (a part's position)
    "move": {"track_metric": "l2", "r1": None, "r2": None, "stall_steps": 60, "coarse_blocks": 0, "snap": 1.5,
             "auto_region": 0.0, "template_adapt": 0.0, "stall_restarts": 0, "motion_step": 1.0, "lr_reach": 0.015,
             "coarse_motion": 0, "track_patch": 0.0, "warp_steps": 100, "warp_max_points": 0},
}
