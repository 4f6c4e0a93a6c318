"""Point tracking: the nearest-neighbour search in a window, its anchored adaptive form, and match margins.

The published tracker compares every candidate with the handle's *initial* feature: it never
drifts, but a part that changes look as it moves (an ear that turns, a mouth that opens) can
match a look-alike better than itself. An anchored adaptive template also compares with a slowly
updated copy of the feature where the handle was tracked, and sums both distances, so the
original still holds it. match_margins says how unambiguous each match is (best against
second-best distance), for the benchmark's failure diagnosis. snap_to_features moves a handle set
on a featureless pixel to the nearest distinctive one, which the tracker can hold; snap_drags does
that for whole drags and keeps each target, unless the snap would swallow most of the drag: then
the target moves with the handle (the user's drag vector stays). best_near breaks near-ties towards
where the motion asked the content to go (a mouth's line that opens into two lips).
PatchField makes every one of them compare a small disk of features around each candidate instead
of a single pixel: the neighbourhood the motion loss moves, which a look-alike pixel rarely shares.
"""
from __future__ import annotations

import torch


class PatchField:
    """A feature field whose sample at a point is the features of a disk of points around it, concatenated.

    Tracking against such samples matches a patch (the sum of squared feature differences over the
    disk, for the 'l2' metric) rather than one pixel. A part that changes look as it moves (a lip
    line that opens) leaves a pixel that still looks like the old part; its neighbourhood does not.
    `offsets` [P, 2] are image-pixel offsets (drag.disk_offsets); the samples are scaled by
    1 / sqrt(P), so a patch distance is the root-mean-square over the disk of per-point distances.
    """

    def __init__(self, field, offsets: torch.Tensor):
        self.field, self.offsets, self.size = field, offsets, field.size

    def sample(self, xy: torch.Tensor) -> torch.Tensor:
        """xy [M, 2] -> [M, P * C]: the disk's features around each point, in the offsets' order."""
        q = (xy[:, None, :] + self.offsets[None]).reshape(-1, 2)
        return self.field.sample(q).reshape(len(xy), -1) / len(self.offsets) ** 0.5


def square_offsets(r: int) -> torch.Tensor:
    """Integer (dx, dy) offsets of the square [-r, r]^2, in raster order."""
    ys, xs = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).to(torch.float32)


def window(field, handles: torch.Tensor, r2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates [N, K, 2] within +-r2 of each rounded handle and their features [N, K, C].

    field is a drag.FeatureField (anything with size and sample).
    """
    cand = handles.round()[:, None, :] + square_offsets(r2).to(handles.device)[None]
    n, k = cand.shape[:2]
    return cand, field.sample(cand.reshape(-1, 2)).reshape(n, k, -1)


def feature_distance(feats: torch.Tensor, templates: torch.Tensor, metric: str) -> torch.Tensor:
    """[N, K] distances of candidate features [N, K, C] to templates [N, C] ('l2' or 'l1')."""
    diff = feats - templates[:, None, :]
    return diff.norm(dim=-1) if metric == "l2" else diff.abs().sum(dim=-1)


def outside_excluded(dist: torch.Tensor, cand: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Distances with candidates outside the image set to inf."""
    H, W = size
    inside = (cand[..., 0] >= 0) & (cand[..., 0] <= W - 1) & (cand[..., 1] >= 0) & (cand[..., 1] <= H - 1)
    return dist.masked_fill(~inside, float("inf"))


def window_distances(field, handles: torch.Tensor, templates: torch.Tensor, r2: int,
                     metric: str = "l2") -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates [N, K, 2] and their distances [N, K] to the templates; inf outside the image."""
    cand, feats = window(field, handles, r2)
    return cand, outside_excluded(feature_distance(feats, templates, metric), cand, field.size)


def best_candidates(cand: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Per handle the candidate of least distance; ties go to the first in raster order."""
    return cand[torch.arange(len(cand), device=cand.device), dist.argmin(dim=1)]


def best_near(cand: torch.Tensor, dist: torch.Tensor, prefer: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Per handle, of the candidates within (1 + tolerance) x the least distance, the one nearest `prefer` [N, 2].

    A part that changes look as it moves can leave two places that match its template about as well:
    a closed mouth's line opens into two lips and a dark gap between them, and the line's template
    matches the gap or the lip that stays as well as the lip being dragged, so the published
    tracker stays behind while the lip arrives. The step's own motion says which one moved:
    DragSession prefers where the motion loss asked the content to go (one step towards the
    target). Near-ties only: a clearly better match elsewhere still wins.
    """
    near = dist <= dist.amin(dim=1, keepdim=True) * (1 + tolerance)
    reach = (cand - prefer[:, None]).norm(dim=-1).masked_fill(~near, float("inf"))
    return cand[torch.arange(len(cand), device=cand.device), reach.argmin(dim=1)]


def track_anchored(field, handles: torch.Tensor, templates: torch.Tensor, adapted: torch.Tensor, r2: int,
                   metric: str = "l2") -> torch.Tensor:
    """New handle positions by the summed distance to the initial and to the adapted template.

    With adapted == templates this is the published tracker (twice the distance, same argmin).
    """
    cand, feats = window(field, handles, r2)
    dist = feature_distance(feats, templates, metric) + feature_distance(feats, adapted, metric)
    return best_candidates(cand, outside_excluded(dist, cand, field.size))


def adapt_templates(adapted: torch.Tensor, tracked: torch.Tensor, rate: float) -> torch.Tensor:
    """Move the adapted templates a fraction `rate` towards the features found at the tracked handles."""
    return adapted + rate * (tracked - adapted)


def match_margins(field, handles: torch.Tensor, templates: torch.Tensor, r2: int) -> torch.Tensor:
    """Per handle, (second - best) / second feature distance in its window, second-best taken > 1 px from the best.

    0 means another, separate place matches as well (the tracker may jump there); near 1 means one
    clear match.
    """
    cand, dist = window_distances(field, handles, templates, r2)
    best = dist.argmin(dim=1)
    rows = torch.arange(len(handles), device=handles.device)
    near = (cand - cand[rows, best][:, None]).abs().amax(dim=-1) <= 1
    d1 = dist[rows, best]
    d2 = dist.masked_fill(near, float("inf")).amin(dim=1)
    return ((d2 - d1) / d2.clamp_min(1e-8)).clamp(0, 1)


SNAP_CHUNK = 64  # candidates scored at once by snap_to_features


def distinctiveness(field, points: torch.Tensor, r: int) -> torch.Tensor:
    """Per point, the feature distance to the most similar place more than 1 px away within +-r.

    Small on flat background or fur (the tracker could slide anywhere), large on a corner or a
    tip (one clear match): what makes a handle trackable.
    """
    cand, dist = window_distances(field, points, field.sample(points), r)
    near = (cand - points.round()[:, None]).abs().amax(dim=-1) <= 1
    return dist.masked_fill(near, float("inf")).amin(dim=1)


def snap_to_features(field, handles: torch.Tensor, radius: float, r: int, keep: float = 0.5) -> torch.Tensor:
    """Handles moved to the nearest distinctive pixel within `radius` when they sit on a featureless one.

    A handle whose distinctiveness is at least `keep` times the best within its disk stays; any
    other moves to the nearest pixel of the disk that reaches that level (ties: raster order).
    A click just off a thin part (an ear tip drawn a few pixels short) then holds the part.
    """
    offsets = square_offsets(int(radius)).to(handles.device)
    offsets = offsets[offsets.norm(dim=1) <= radius]
    cand = handles.round()[:, None, :] + offsets[None]  # [N, K, 2]
    n, k = cand.shape[:2]
    H, W = field.size
    inside = (cand[..., 0] >= 0) & (cand[..., 0] <= W - 1) & (cand[..., 1] >= 0) & (cand[..., 1] <= H - 1)
    flat = cand.reshape(-1, 2)
    # In chunks: each candidate searches (2r + 1)^2 pixels, which at 512 px (r = 12, a disk of
    # ~1,000 candidates) would otherwise hold ~0.6 G feature values at once.
    score = torch.cat([distinctiveness(field, flat[i: i + SNAP_CHUNK], r) for i in range(0, len(flat), SNAP_CHUNK)])
    score = score.reshape(n, k).masked_fill(~inside, 0)
    own = distinctiveness(field, handles, r)
    good = score >= keep * score.amax(dim=1, keepdim=True)
    reach = offsets.norm(dim=1)[None].expand(n, k).masked_fill(~good, float("inf"))
    nearest = cand[torch.arange(n, device=handles.device), reach.argmin(dim=1)]
    stays = own >= keep * score.amax(dim=1)
    return torch.where(stays[:, None], handles, nearest)


SNAP_MIN_LEFT = 0.5  # snap_drags keeps a target when at least this share of the drag is left after the snap


def snap_drags(field, handles: torch.Tensor, targets: torch.Tensor, movable: torch.Tensor, radius: float,
               r: int, min_left: float = SNAP_MIN_LEFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Snap the movable handles (snap_to_features); per drag, keep its target or move it with the handle.

    A click a few pixels off a thin part (an ear tip the generator draws short of where the user
    sees it) means "this part, to that target": the target stays, and the part lands there. But a
    snap that leaves less than `min_left` of the drag's length to go (a click on a flat region
    snapped to something near the target) did not find the part the user meant to drag that far,
    and keeping the target would leave the drag nothing to do: there the target moves with the
    handle, so the user's drag vector stays. Moved targets are kept inside the image.
    """
    snapped = snap_to_features(field, handles, radius, r)
    new_h = torch.where(movable[:, None], snapped, handles)
    asked, left = (targets - handles).norm(dim=1), (targets - new_h).norm(dim=1)
    follow = movable & (left < min_left * asked)
    H, W = field.size
    limit = torch.tensor([W - 1, H - 1], dtype=targets.dtype, device=targets.device)
    moved = torch.minimum((targets + (new_h - handles)).clamp_min(0), limit)
    return new_h, torch.where(follow[:, None], moved, targets)


def search_between(field, starts: torch.Tensor, ends: torch.Tensor, templates: torch.Tensor, r2: int,
                   metric: str = "l2") -> torch.Tensor:
    """Per handle, the best match of its template anywhere from `starts` to `ends` (+-r2 around that path).

    After a jump the content made in one go (DragSession's warp fit), a handle is somewhere between
    where it was and where the warp put it, farther than the tracker's +-r2 step reaches. One square
    around the path's midpoint covers it; handles are searched one by one, their squares differ.
    """
    found = []
    for i in range(len(starts)):
        reach = int(torch.ceil((ends[i] - starts[i]).norm() / 2)) + r2
        middle = ((starts[i] + ends[i]) / 2)[None]
        found.append(best_candidates(*window_distances(field, middle, templates[i:i + 1], reach, metric))[0])
    return torch.stack(found).to(starts.dtype) if found else starts
