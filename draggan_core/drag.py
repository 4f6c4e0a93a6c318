"""The DragGAN editing loop: motion supervision and point tracking on generator features.

Each step renders the generator's features at one synthesis block, pulls the features around each
handle one pixel towards its target (motion supervision), optionally holds the features outside
the editable region fixed, takes an Adam step on the first W+ rows, and finds every handle again
by nearest-neighbour search against its initial feature (point tracking). It ends when every
handle is close enough to its target, at the step limit, on a stall, or when the caller stops.

Coordinates are image pixels, x right, y down, pixel centres at integers. Features are treated as
a continuous field over the image: the block's map is bilinearly sampled at image coordinates,
which equals resizing it to the image size and reading pixels, without allocating the resized map
(the 'fast' path). The 'reference' path does what the published implementation does (full
forward every step, feature map resized to image size) and exists for comparison.

StyleGAN3 feature maps extend past the image by a margin; FeatureField crops it first (the
generator's feature_geometry), so a feature sample and an image pixel correspond exactly.

What goes beyond the published algorithm is a DragConfig option whose logic lives in its own
module: coarser blocks for context (feature_layers), snapping, patch matching, adaptive
templates and the tie rule (tracking), the automatic fixed region and the pull on a coarser block (supervision);
the distance-scaled learning rate is distance_lr_factor below. presets.py names the published
settings ("paper", the defaults) and the demo benchmark's best ("studio").
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import precision
from .feature_layers import layered_field
from .features import IDENTITY, FeatureGeometry
from .presets import PRESETS
from .supervision import auto_fixed_region, coarse_offsets, coarse_weight
from .tracking import (PatchField, adapt_templates, best_candidates, best_near, search_between, snap_drags,
                       track_anchored, window_distances)
from .warp import displacement_at, displacement_field, warp_map
from .stylegan2 import Generator, Window, ws_from_seed

Point = tuple[float, float]
WINDOW_SHARE = 0.5  # a step computes a window of the feature block only while it is at most this share of the map
# The warp fit's learning rate against the session's: it moves the whole latent to a whole-map target in a
# fixed number of steps (measured on the demo drags: 5x the registry's 2e-3 lands a moved head in 100 steps).
WARP_LR_FACTOR = 5.0


@dataclasses.dataclass
class DragConfig:
    """Drag settings. None means "derived from the image size" as documented per field.

    The defaults are presets.PRESETS["paper"], the published algorithm; DragConfig.preset("studio")
    adds the mechanisms that helped on the demo benchmark (presets.py says why they are not the default).
    """

    learning_rate: float = 1e-3  # Adam; the paper uses 2e-3 for FFHQ, AFHQ cat and LSUN car models
    w_layers: int = 6  # optimise W+ rows [0, w_layers); the rest keep their initial values
    mask_lambda: float = 20.0  # weight of the fixed-region term
    feature_block: int | None = None  # None: default_feature_block(G) (the 128-px block / StyleGAN3 layer)
    r1: float | None = None  # motion-supervision disk radius; None: max(2, 3 * H / 512)
    r2: int | None = None  # tracking window half-size; None: max(4, round(12 * H / 512))
    stop_distance: float | None = None  # None: 1 px for up to 5 points, else 2 px, times max(1, H / 512)
    stall_steps: int = 60  # stop when the handles got no closer in this many steps (0: never)
    track_metric: str = "l2"  # 'l2' (the published code) or 'l1' (the paper's formula)
    coarse_blocks: int = 0  # also track and supervise on this many coarser blocks (feature_layers.py); 0: published
    stall_restarts: int = 0  # on a stall, restart Adam (moments cleared) this many times before stopping
    stall_rows: int = 0  # on a stall, optimise this many W+ rows (finer styles join) and go on, before the
    # restarts and once per session; 0: stop, as published
    shared_w: float = 0.0  # also optimise one W offset added to every W+ row, times this: the generator's own
    # edits (a head turned, a mouth opened) are moves in W, which W+ rows reach only piecewise; 0: W+ rows, as published
    stall_hold: float = 1.0  # when stall_rows lets the finer rows join, the automatic region's weight (auto_region)
    # is multiplied by this: finer rows can redraw what the coarse ones could not (an eye, whiskers); 1: unchanged
    template_adapt: float = 0.0  # per step, adapted template += rate * (tracked feature - it); 0: published
    motion_step: float = 1.0  # pixels of motion the loss asks for per step (capped at the distance left); 1: published
    coarse_motion: int = 0  # also pull on the block this many levels coarser, over r1 of its cells
    # (supervision.py); 0: off
    track_patch: float = 0.0  # track by a disk of this radius (px) around each candidate, not one pixel
    # (tracking.PatchField); 0: off
    lr_reach: float = 0.0  # farther than this (fraction of the image height) from the target, the learning rate
    # grows with the distance (distance_lr_factor, at most LR_BOOST_CAP times); 0: constant, as published
    auto_region: float = 0.0  # without a user mask, hold features far from the drag with this weight (supervision.py)
    snap: float = 0.0  # move a new handle on a featureless pixel to a distinctive one within snap * r2 px; its target
    # stays unless the snap leaves under half the drag, then moves with it (tracking.snap_drags); 0: never
    warp_steps: int = 0  # first fit the latent this many steps to the start's features warped by the points (warp.py),
    # then track and drag from there: moves a whole part rather than reshaping it; 0: off, as published
    warp_max_points: int = 0  # the warp fit only for drags of at most this many points (held ones included); 0: any.
    # One point can only ask for a move; several can ask to reshape, which the warp's blend of vectors gets wrong
    track_ties: float = 0.0  # of the candidates within (1 + this) x the best match, track to the one nearest where
    # the motion loss asked the content to go (tracking.best_near); 0: the best match, as published
    path: str = "fast"  # 'fast' or 'reference'
    precision: str = "auto"  # the per-step synthesis' number type: 'auto' (bf16 on CPUs with native bf16, else fp32),
    # 'fp32', 'bf16' or 'fp16' (draggan_core.precision)

    def __post_init__(self) -> None:
        if self.path not in ("fast", "reference"):
            raise ValueError("path must be 'fast' or 'reference'")
        if self.track_metric not in ("l1", "l2"):
            raise ValueError("track_metric must be 'l1' or 'l2'")
        precision.check(self.precision)
        if self.learning_rate <= 0 or self.w_layers < 1 or self.mask_lambda < 0:
            raise ValueError("learning_rate must be > 0, w_layers >= 1, mask_lambda >= 0")
        if self.coarse_blocks < 0 or self.stall_restarts < 0 or self.coarse_motion < 0 or self.stall_rows < 0:
            raise ValueError("coarse_blocks, coarse_motion, stall_restarts and stall_rows must be >= 0")
        if min(self.auto_region, self.snap, self.track_patch, self.lr_reach, self.track_ties, self.stall_hold,
               self.shared_w) < 0:
            raise ValueError("auto_region, snap, track_patch, lr_reach, track_ties, stall_hold and shared_w "
                             "must be >= 0")
        if self.warp_steps < 0 or self.warp_max_points < 0:
            raise ValueError("warp_steps and warp_max_points must be >= 0")
        if self.motion_step < 1:
            raise ValueError("motion_step must be >= 1")
        if not 0 <= self.template_adapt <= 1:
            raise ValueError("template_adapt must be in [0, 1]")

    @classmethod
    def preset(cls, name: str, **overrides) -> "DragConfig":
        """A named preset (presets.PRESETS: 'paper', 'quick', 'studio', 'move'), with some fields overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


@dataclasses.dataclass
class DragStep:
    """Progress after one step; `preview` is a [1, 3, H, W] image every preview_every steps."""

    step: int
    handles: list[Point]
    targets: list[Point]
    loss: float
    distance: float  # largest handle-to-target distance in pixels
    elapsed: float  # seconds since run() started
    done: bool = False
    reason: str | None = None  # 'reached', 'max_steps', 'stalled' or 'stopped' when done
    preview: torch.Tensor | None = None


def default_feature_block(G: Generator) -> int:
    """Index of the block whose output is 128 px high for models of >= 256 px, else the last block.

    StyleGAN3 generators choose their own layer (stylegan3.Generator.default_feature_layer: the
    last layer before ToRGB whose sampling rate is closest to 128 samples across the image, or
    to the full resolution for models under 256 px).
    """
    if hasattr(G, "default_feature_layer"):
        return G.default_feature_layer()
    resolutions = G.synthesis.block_resolutions
    if G.img_resolution >= 256 and 128 in resolutions:
        return resolutions.index(128)
    return len(resolutions) - 1


def num_feature_layers(G: Generator) -> int:
    """How many feature maps synthesis(return_features=True) returns (blocks for StyleGAN2, layers for StyleGAN3)."""
    n = getattr(G, "num_feature_layers", None)
    return int(n) if n is not None else len(G.synthesis.block_resolutions)


def feature_geometry(G: Generator, k: int) -> FeatureGeometry:
    """How feature map k lies over the image (identity for StyleGAN2 blocks, margin crop for StyleGAN3)."""
    fn = getattr(G, "feature_geometry", None)
    return fn(k) if fn is not None else IDENTITY


def stop_distance_for(n_points: int, height: int) -> float:
    return (1.0 if n_points <= 5 else 2.0) * max(1.0, height / 512)


LR_BOOST_CAP = 4.0  # distance_lr_factor's largest factor


def distance_lr_factor(distance: float, height: int, reach: float, cap: float = LR_BOOST_CAP) -> float:
    """How much to raise the learning rate for a handle `distance` px from its target (DragConfig.lr_reach).

    Adam moves each latent coordinate by at most about the learning rate per step, so an edit that
    needs a large change of the latent (turning or moving a head: W+ coordinates change by up to 3-4
    on the demo model) cannot arrive within the step limit at the rate that suits a small one. The
    factor is distance / (reach * height), at least 1 (the published rate near the target, where
    precision matters) and at most `cap`. reach 0: always 1.
    """
    if reach <= 0:
        return 1.0
    return float(min(cap, max(1.0, distance / (reach * height))))


def disk_offsets(radius: float) -> torch.Tensor:
    """Integer (dx, dy) offsets within a closed disk, on the exact pixel grid."""
    r = int(math.floor(radius))
    ys, xs = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    keep = xs ** 2 + ys ** 2 <= radius ** 2
    return torch.stack([xs[keep], ys[keep]], dim=1).to(torch.float32)


class FeatureField:
    """A feature map seen as a function of image coordinates.

    sparse: bilinear sampling of the block's own map at pixel centres ((x + 0.5) * w / W - 0.5),
    identical to resizing it to the image size at integer pixels. dense: the map is first resized
    to the image size (the published implementation), then sampled.

    `geometry` first crops what lies outside the image (StyleGAN3 margins), so that the rest covers
    the image exactly: sample k then sits at image coordinate (k + 0.5) * H / h - 0.5.

    `window`: fmap holds only this window of a map of `map_size` samples (a drag step computes the
    features around its handles only: DragSession.step_window); points must be sampled inside it.
    """

    def __init__(self, fmap: torch.Tensor, size: tuple[int, int], dense: bool = False,
                 geometry: FeatureGeometry | None = None, window: Window | None = None,
                 map_size: tuple[int, int] | None = None):
        self.size = size
        self.dense = dense
        fmap = fmap.to(torch.float32)
        if geometry is not None:
            fmap = geometry.apply(fmap)
        if window is not None and (dense or map_size is None or (geometry is not None and not geometry.is_identity)):
            raise ValueError("a window of a feature map needs the sparse path, its map size and no geometry crop")
        if dense and tuple(fmap.shape[2:]) != size:
            fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
        self.fmap = fmap
        self.window, self.map_size = window, map_size

    def sample(self, xy: torch.Tensor) -> torch.Tensor:
        """xy [M, 2] image coordinates -> features [M, C]."""
        H, W = self.size
        if self.dense:
            gx, gy = xy[:, 0] / max(W - 1, 1) * 2 - 1, xy[:, 1] / max(H - 1, 1) * 2 - 1
            align = True
        elif self.window is not None:  # map sample k at (k + 0.5) * H / h - 0.5, less the window's corner
            (h, w), (hc, wc) = self.map_size, self.fmap.shape[2:]
            fx = (xy[:, 0] + 0.5) * w / W - 0.5 - self.window.left
            fy = (xy[:, 1] + 0.5) * h / H - 0.5 - self.window.top
            gx, gy = (fx + 0.5) / wc * 2 - 1, (fy + 0.5) / hc * 2 - 1
            align = False
        else:
            gx, gy = (xy[:, 0] + 0.5) / W * 2 - 1, (xy[:, 1] + 0.5) / H * 2 - 1
            align = False
        grid = torch.stack([gx, gy], dim=-1).reshape(1, 1, -1, 2)
        out = F.grid_sample(self.fmap, grid, mode="bilinear", padding_mode="border", align_corners=align)
        return out[0, :, 0].t()

    def masked_l1(self, other: "FeatureField", fixed: torch.Tensor) -> torch.Tensor:
        """Mean |F - F0| over the fixed region, at the map's own resolution (fixed: [H, W] float, 1 = fixed)."""
        if self.window is not None or other.window is not None:
            raise ValueError("the fixed-region term needs whole feature maps")
        weight = fixed
        if tuple(fixed.shape) != tuple(self.fmap.shape[2:]):
            weight = F.adaptive_avg_pool2d(fixed[None, None], self.fmap.shape[2:])[0, 0]
        diff = (self.fmap - other.fmap).abs().mean(dim=1)[0]
        return (diff * weight).sum() / weight.sum().clamp_min(1e-8)


def motion_steps(delta: torch.Tensor, step: float, least: float = 1.0) -> torch.Tensor:
    """Per handle, the motion [N, 2] one step asks for along delta = target - handle: `step` px, never
    past the target, at least `least` px (the published unit step)."""
    dist = delta.norm(dim=1, keepdim=True)
    return delta / dist.clamp_min(1e-8) * dist.clamp(max=step).clamp(min=least)


def motion_loss(field: FeatureField, handles: torch.Tensor, targets: torch.Tensor, offsets: torch.Tensor,
                min_distance: float = 1.0, step: float = 1.0) -> torch.Tensor:
    """Sum over handles of mean |sg(F(q)) - F(q + d)| over the disk q around the handle, d = unit(t - p).

    Only the shifted samples carry gradient, so the content at q is pulled to q + d. Handles within
    min_distance of their target are not supervised. step > 1 asks for that many pixels of motion
    per step (never past the target); the published loss asks for one.
    """
    delta = targets - handles
    dist = delta.norm(dim=1, keepdim=True)
    active = (dist[:, 0] > min_distance)
    if not bool(active.any()):
        return handles.new_zeros(())
    d = motion_steps(delta[active], step)
    q = handles[active, None, :] + offsets[None]  # [N, K, 2]
    n, k = q.shape[:2]
    both = field.sample(torch.cat([q.reshape(-1, 2), (q + d[:, None]).reshape(-1, 2)]))
    src, dst = both[: n * k].detach(), both[n * k:]
    per_point = (dst - src).abs().reshape(n, -1).mean(dim=1)
    return per_point.sum()


def track_points(field: FeatureField, handles: torch.Tensor, templates: torch.Tensor, r2: int,
                 metric: str = "l2") -> torch.Tensor:
    """New handle positions: the pixel within +-r2 of each (rounded) handle whose feature is nearest its template.

    All handles are searched in one batched lookup. Candidates outside the image are excluded;
    ties go to the first candidate in raster order.
    """
    return best_candidates(*window_distances(field, handles, templates, r2, metric))


class CoarsePull(NamedTuple):
    """A coarser block's field (scaled to weigh like the drag block) and its disk in image pixels."""

    field: FeatureField
    offsets: torch.Tensor


def _as_points(points: Sequence[Sequence[float]], name: str) -> list[Point]:
    out = []
    for p in points:
        if len(p) != 2 or not all(math.isfinite(float(v)) for v in p):
            raise ValueError(f"{name} must be (x, y) pairs of finite numbers, got {p!r}")
        out.append((float(p[0]), float(p[1])))
    return out


class _StallCounter:
    """Counts steps without the largest handle distance improving by at least half a pixel."""

    def __init__(self, patience: int):
        self.patience, self.best, self.since_best = patience, float("inf"), 0

    def update(self, distance: float) -> bool:
        if distance < self.best - 0.5:
            self.best, self.since_best = distance, 0
        else:
            self.since_best += 1
        return bool(self.patience) and self.since_best >= self.patience


class DragSession:
    """One image being edited: its latent, optimiser state, points and editable mask.

    Typical use::

        s = DragSession(G, seed, device="cpu")
        s.set_points(handles=[(x, y)], targets=[(x2, y2)])
        s.set_mask(mask)                  # [H, W], True/nonzero = editable; None = everything editable
        for step in s.run(max_steps=200, preview_every=10):
            ...                           # step.handles, step.loss; break to stop, keeping the state
        img = s.image()

    Mask semantics: the mask marks the *editable* region. Features outside it are held at their
    values when the mask was set, with weight config.mask_lambda (mean absolute difference over
    the fixed pixels). No mask, an empty mask or a full mask means everything is editable.

    A finished or stopped run can be continued: call run() again, or set_points() with more or
    moved points first. Points whose handle is where tracking left it keep their original
    template feature; new or moved handles take their template from the current image.
    """

    def __init__(self, G: Generator, ws_or_seed: int | torch.Tensor, device: str | torch.device | None = None,
                 config: DragConfig | None = None, truncation_psi: float = 0.7):
        self.G = G
        self.device = torch.device(device) if device is not None else next(G.parameters()).device
        if next(G.parameters()).device != self.device:
            raise ValueError(f"generator is on {next(G.parameters()).device}, session asked for {self.device}")
        self.config = config or DragConfig()
        self.precision = precision.resolve(self.config.precision, self.device, G.img_resolution)  # 'auto' made concrete
        self.dtype = precision.synthesis_dtype(self.precision, self.device)  # refuses fp16 on a CPU now, not at step 1
        self.size = G.img_size
        ws = ws_from_seed(G, ws_or_seed, truncation_psi) if isinstance(ws_or_seed, int) else ws_or_seed
        ws = self._check_latent(ws)
        self._split_rows(ws, min(self.config.w_layers, G.num_ws))
        self.base_lr = self.config.learning_rate  # the rate distance_lr_factor scales (set_learning_rate changes it)
        self.optimizer = torch.optim.Adam(self._parameters(), lr=self.base_lr)
        self.block = self.config.feature_block if self.config.feature_block is not None else default_feature_block(G)
        n_layers = num_feature_layers(G)
        if not 0 <= self.block < n_layers:
            raise ValueError(f"feature_block must be in [0, {n_layers - 1}]")
        self.geometry = feature_geometry(G, self.block)
        H = self.size[0]
        self.r1 = self.config.r1 if self.config.r1 is not None else max(2.0, 3 * H / 512)
        self.r2 = self.config.r2 if self.config.r2 is not None else max(4, round(12 * H / 512))
        self.disk = disk_offsets(self.r1).to(self.device)
        self.patch = disk_offsets(self.config.track_patch).to(self.device) if self.config.track_patch else None
        self.handles = torch.zeros(0, 2, device=self.device)
        self.targets = torch.zeros(0, 2, device=self.device)
        self.templates: torch.Tensor | None = None  # each handle's feature when it was set
        self.adapted: torch.Tensor | None = None  # the same, adapted as tracking goes (config.template_adapt)
        self.fixed: torch.Tensor | None = None
        self.fixed_reference: FeatureField | None = None
        self.auto_fixed: torch.Tensor | None = None  # config.auto_region's weights, used while no mask is set
        self.auto_reference: FeatureField | None = None
        self.hold = 1.0  # the automatic region's weight factor: config.stall_hold once the finer rows joined
        self.steps_done = 0
        self.warp_pending = False  # set_points asked for the warp fit (config.warp_steps) and run() has not done it

    # ------------------------------------------------------------------ state

    def _check_latent(self, ws: torch.Tensor) -> torch.Tensor:
        ws = torch.as_tensor(ws, dtype=torch.float32, device=self.device)
        if ws.ndim == 2 and ws.shape == (1, self.G.w_dim):
            ws = ws[:, None].repeat(1, self.G.num_ws, 1)
        if ws.ndim != 3 or ws.shape[0] != 1 or ws.shape[1:] != (self.G.num_ws, self.G.w_dim):
            raise ValueError(f"latent must be W [1, {self.G.w_dim}] or W+ [1, {self.G.num_ws}, {self.G.w_dim}], "
                             f"got {tuple(ws.shape)}")
        return ws.detach()

    def latent(self) -> torch.Tensor:
        """The current W+ latent [1, num_ws, w_dim] (detached), to save or to resume from."""
        return self._ws().detach()

    def _ws(self) -> torch.Tensor:
        """The W+ latent the next step renders, with gradient to what is optimised: the rows w_opt and, with
        config.shared_w, the offset w_shared every row shares.

        A W+ drag moves each of the first rows on its own, and the cheapest way for them to carry a nose
        sideways can be to shift or tilt the whole head (turned heads 16 of 20). One offset in W moves
        the latent the way the mapping network's own latents differ, which is how the generator draws a
        turned head or an open mouth (benchmarks/README.md, issue 17, tenth round, with the tie rule at 0.15:
        turns 20 of 20, all drags 85 of 92 instead of 81). Its scale makes Adam's per-coordinate step in W that many times a row's.
        """
        ws = torch.cat([self.w_opt, self.w_fixed], dim=1)
        return ws if self.w_shared is None else ws + self.config.shared_w * self.w_shared

    def _parameters(self) -> list[torch.Tensor]:
        """What Adam optimises: the rows w_opt and, with config.shared_w, the shared W offset."""
        return [self.w_opt] + ([self.w_shared] if self.w_shared is not None else [])

    def _features(self, full: bool, window: Window | None = None
                  ) -> tuple[FeatureField, torch.Tensor | None, "CoarsePull | None"]:
        """The feature block's field (window: only that part of it, see step_window), if full the image,
        and config.coarse_motion's coarser field."""
        ws = self._ws()
        dense = self.config.path == "reference"
        kwargs = self._synthesis_options()
        if full:
            img, feats = self.G.synthesis(ws, return_features=True, **kwargs)
        elif window is not None:
            img, feats = self.G.synthesis(ws, stop_at_block=self.block, window=window, **kwargs)
        else:
            img, feats = self.G.synthesis(ws, stop_at_block=self.block, **kwargs)
        map_size = self.G.synthesis.blocks()[self.block].resolution if window is not None else None
        fine = FeatureField(feats[self.block], self.size, dense=dense, geometry=self.geometry, window=window,
                            map_size=map_size)
        field = fine
        if self.config.coarse_blocks:
            field = layered_field(fine, feats, self.block, self.config.coarse_blocks,
                                  lambda k: feature_geometry(self.G, k))
        return field, img, self._coarse_pull(feats, fine)

    def _synthesis_options(self) -> dict:
        """How a drag step calls the synthesis network.

        Rows past w_opt are constants: grad_rows spares backward their (unread) weight gradients (with a
        shared W offset every row carries gradient).
        The non-fused modulated convolution shares one weight instead of forming a modulated copy
        per layer and step: 1.1-1.2x faster steps on a CPU (benchmarks/README.md, issue 19).
        """
        rows = self.w_opt.shape[1] if self.w_shared is None else self.G.num_ws
        return dict(noise_mode="const", grad_rows=rows, fused_modconv=False, dtype=self.dtype)

    def _coarse_pull(self, feats: list[torch.Tensor], fine: FeatureField) -> "CoarsePull | None":
        """The coarser block's field and disk for config.coarse_motion (None when off or no coarser block)."""
        k = max(0, self.block - self.config.coarse_motion)
        if not self.config.coarse_motion or k == self.block:
            return None
        fmap = feature_geometry(self.G, k).apply(feats[k].to(torch.float32))
        field = FeatureField(fmap * coarse_weight(fine.fmap, fmap), self.size)
        return CoarsePull(field, coarse_offsets(self.disk, self.size, tuple(fmap.shape[2:])))

    def step_window(self) -> Window | None:
        """The window of the feature block the next drag step reads; None where it reads the whole map.

        A step tracks each handle within +-r2 of its rounded position and supervises a disk of radius
        r1 around the tracked handle, shifted by up to motion_step pixels: it reads nothing farther
        from the handles (track_patch widens each candidate by its disk). So the generator computes only
        what that window depends on (stylegan2.SynthesisNetwork.window_plan), and the features there
        are the same. Not with a fixed region (a mask or the automatic region compare whole maps),
        coarser blocks or a coarse pull (read at their own scales), the reference path, or a StyleGAN3
        generator; nor when the window would cover more than WINDOW_SHARE of the map (handles far
        apart), where it saves little.
        """
        synthesis, config = self.G.synthesis, self.config
        if (not hasattr(synthesis, "window_plan") or config.path == "reference" or config.coarse_blocks
                or config.coarse_motion or self.fixed is not None or self.auto_fixed is not None
                or not len(self.handles)):
            return None
        h, w = synthesis.blocks()[self.block].resolution
        H, W = self.size
        # the tracking window (each candidate widened by its patch), the handle's rounding, the motion disk and
        # shift, and bilinear sampling's next sample
        reach = self.r2 + config.track_patch + 0.5 + self.r1 + config.motion_step + 1.0
        xs, ys = self.handles[:, 0].tolist(), self.handles[:, 1].tolist()

        def span(low: float, high: float, samples: int, pixels: int) -> tuple[int, int]:
            first = math.floor((low - reach + 0.5) * samples / pixels - 0.5) - 1
            last = math.ceil((high + reach + 0.5) * samples / pixels - 0.5) + 1
            return max(0, first), min(samples, last + 1)

        window = Window(*span(min(ys), max(ys), h, H), *span(min(xs), max(xs), w, W))
        return window if window.area <= WINDOW_SHARE * h * w else None

    @torch.no_grad()
    def field(self) -> FeatureField:
        """The current latent's feature field as tracking searches it (templates are its samples)."""
        return self._tracked(self._features(full=False)[0])

    def _tracked(self, field: FeatureField) -> FeatureField:
        """What tracking and snapping compare: the field itself, or its patches (config.track_patch)."""
        return PatchField(field, self.patch) if self.patch is not None else field

    def set_points(self, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]]) -> None:
        """Set handle and target points (image pixels). Unmoved tracked handles keep their templates."""
        hs, ts = _as_points(handles, "handles"), _as_points(targets, "targets")
        if len(hs) != len(ts) or not hs:
            raise ValueError("need the same, non-zero number of handles and targets")
        H, W = self.size
        for x, y in hs + ts:
            if not (0 <= x <= W - 1 and 0 <= y <= H - 1):
                raise ValueError(f"point ({x}, {y}) is outside the {W}x{H} image")
        new_h, new_t = torch.tensor(hs, device=self.device), torch.tensor(ts, device=self.device)
        kept = torch.zeros(len(hs), dtype=torch.bool, device=self.device)
        if self.templates is not None:
            n_old = min(len(hs), len(self.handles))
            kept[:n_old] = (new_h[:n_old] - self.handles[:n_old]).norm(dim=1) <= 0.5
        with torch.no_grad():
            full_field = self._features(full=False)[0]
            field = self._tracked(full_field)
            if self.config.snap:
                # Only new drags: a tracked handle is on its feature, and a point to hold (handle = target) stays put.
                # A target moves with its handle where the snap would swallow most of the drag (snap_drags).
                movable = ~kept & ((new_t - new_h).norm(dim=1) > 0)
                # Pixels, not patches: snapping looks for a distinctive pixel (patches would cost (2 r2 + 1)^2 x more).
                new_h, new_t = snap_drags(full_field, new_h, new_t, movable, self.config.snap * self.r2, self.r2)
            fresh = field.sample(new_h)
        templates, adapted = fresh.clone(), fresh.clone()
        for i in torch.nonzero(kept).flatten().tolist():
            templates[i], adapted[i] = self.templates[i], self.adapted[i]
        self.handles, self.targets, self.templates = new_h, new_t, templates
        self.adapted = adapted
        self.warp_pending = self._wants_warp(kept, new_h, new_t)
        self.auto_fixed = auto_fixed_region(self.size, self.handles, self.targets) if self.config.auto_region else None
        self.auto_reference = full_field if self.auto_fixed is not None else None  # a feature map: kept only when used

    def _wants_warp(self, kept: torch.Tensor, handles: torch.Tensor, targets: torch.Tensor) -> bool:
        """config.warp_steps for these points: a new drag moves (tracked handles and points held in place ask for
        no warp) and there are no more points than config.warp_max_points allows."""
        limit = self.config.warp_max_points
        if not self.config.warp_steps or (limit and len(handles) > limit):
            return False
        return bool((~kept & ((targets - handles).norm(dim=1) > 0)).any())

    def set_mask(self, mask: np.ndarray | torch.Tensor | None) -> None:
        """Editable region [H, W] (bool, or 0..1 / 0..255 for soft edges); None = everything editable."""
        if mask is None:
            self.fixed = self.fixed_reference = None
            return
        m = torch.as_tensor(np.array(mask) if not torch.is_tensor(mask) else mask).to(self.device)  # a writable copy
        if tuple(m.shape) != tuple(self.size):
            raise ValueError(f"mask must be {self.size[0]}x{self.size[1]} (HxW), got {tuple(m.shape)}")
        editable = m.to(torch.float32)
        if m.dtype == torch.uint8 and float(editable.max()) > 1:
            editable = editable / 255.0
        fixed = (1 - editable).clamp(0, 1)
        if float(fixed.sum()) == 0 or float(fixed.min()) == 1:
            self.fixed = self.fixed_reference = None  # all editable or nothing editable: no mask term
            return
        with torch.no_grad():
            self.fixed_reference = self._features(full=False)[0]
        self.fixed = fixed

    def _widen_rows(self) -> bool:
        """config.stall_rows: let the finer W+ rows join the optimised ones; False when there are none to add.

        The published six rows reach a 16-px style; a part that is small in the picture (a mouth on a
        128-px cat) changes shape only through finer rows, so its drag stalls with the six. Opening
        them from the start instead lets a long drag redraw what it should move (benchmarks/README.md,
        issue 17, eighth round: studio's turned heads landed 1 of 8 instead of 5 with twelve rows from
        the start), so they join only when the coarse rows stall: open mouths 6 of 13 instead of 0.
        The finer rows can also redraw what lies beyond the part (an eye narrowed, whiskers moved, a
        pink streak for a mouth: paired MSE worse than no edit), so the automatic region holds
        config.stall_hold times harder from then on (tenth round: the open mouths' MSE x100 5.49 -> 4.01,
        no edit 4.41, the same mouths landed). The rows and the hold stay for the session's later drags.
        """
        rows = min(self.config.stall_rows, self.G.num_ws)
        if rows <= self.w_opt.shape[1]:
            return False
        self._split_rows(self.latent(), rows)
        self._restart_optimizer()
        self.hold = self.config.stall_hold
        return True

    def _split_rows(self, ws: torch.Tensor, rows: int) -> None:
        """The latent's first `rows` W+ rows become the optimised ones (w_opt), the rest constants; the shared
        W offset (config.shared_w) starts again from zero, since ws already holds what it had moved."""
        self.w_opt = ws[:, :rows].clone().requires_grad_(True)
        self.w_fixed = ws[:, rows:].clone()
        self.w_shared = (torch.zeros(1, 1, ws.shape[2], device=ws.device, requires_grad=True)
                         if self.config.shared_w else None)

    def _restart_optimizer(self) -> None:
        """A fresh Adam at the current lr: after a stall its moments hold the old direction's history."""
        self.optimizer = torch.optim.Adam(self._parameters(), lr=self.base_lr)

    def set_learning_rate(self, lr: float) -> None:
        """Change the step size without losing Adam's moments (the base rate, when config.lr_reach scales it)."""
        self.base_lr = lr
        self._scale_learning_rate(1.0)

    def _scale_learning_rate(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor

    # ------------------------------------------------------------------ loop

    def stop_distance(self) -> float:
        if self.config.stop_distance is not None:
            return self.config.stop_distance
        return stop_distance_for(len(self.handles), self.size[0])

    def loss(self, field: FeatureField, coarse: "CoarsePull | None" = None) -> torch.Tensor:
        """The step's loss: motion on the drag block (and on a coarser one), plus the fixed region's term."""
        loss = motion_loss(field, self.handles, self.targets, self.disk, step=self.config.motion_step)
        if coarse is not None:
            loss = loss + motion_loss(coarse.field, self.handles, self.targets, coarse.offsets)
        if self.fixed is not None and self.config.mask_lambda > 0:
            loss = loss + self.config.mask_lambda * field.masked_l1(self.fixed_reference, self.fixed)
        elif self.fixed is None and self.auto_fixed is not None:
            loss = loss + self.config.auto_region * self.hold * field.masked_l1(self.auto_reference, self.auto_fixed)
        return loss

    def run(self, max_steps: int = 300, preview_every: int = 0,
            should_stop: Callable[[], bool] | None = None) -> Iterator[DragStep]:
        """Optimise until the handles reach their targets; yields a DragStep after every step.

        The caller may break out of the loop at any time (or make should_stop return True); the
        session then holds the latent of the last completed step and can continue later.
        """
        if self.templates is None:
            raise ValueError("set_points() first")
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        stop_at = self.stop_distance()
        start = time.perf_counter()
        first = 0
        if self.warp_pending:
            for step in self._warp_fit(max_steps, start, preview_every, should_stop):
                yield step
                if step.done:
                    return
            first = step.step
        stall = _StallCounter(self.config.stall_steps)
        restarts = 0
        reference = self.config.path == "reference"
        for i in range(first, max_steps):
            field, img, coarse = self._features(full=reference, window=None if reference else self.step_window())
            with torch.no_grad():
                self.handles = self._track(self._tracked(field))
            loss = self.loss(field, coarse)
            max_dist, loss_value, handles = self._summary(loss)
            reason = "reached" if max_dist <= stop_at else None
            if reason is None:
                if loss.requires_grad:  # not when every handle is within motion_loss's 1 px and nothing else pulls
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.config.lr_reach:
                        self._scale_learning_rate(distance_lr_factor(max_dist, self.size[0], self.config.lr_reach))
                    self.optimizer.step()
                self.steps_done += 1
                if stall.update(max_dist):
                    if self._widen_rows():
                        stall = _StallCounter(self.config.stall_steps)
                    elif restarts < self.config.stall_restarts:
                        restarts += 1
                        self._restart_optimizer()
                        stall = _StallCounter(self.config.stall_steps)
                    else:
                        reason = "stalled"
                elif i == max_steps - 1:
                    reason = "max_steps"
                elif should_stop is not None and should_stop():
                    reason = "stopped"
            preview = None
            if reason is not None or (preview_every and (i + 1) % preview_every == 0):
                # The reference path shows the image it rendered before the update, as the published code does.
                preview = img.detach() if reference and reason is None else self.image()
            yield DragStep(step=i + 1, handles=handles, targets=self.target_list(), loss=loss_value,
                           distance=max_dist, elapsed=time.perf_counter() - start, done=reason is not None,
                           reason=reason, preview=preview)
            if reason is not None:
                return

    def _warp_fit(self, max_steps: int, start: float, preview_every: int,
                  should_stop: Callable[[], bool] | None) -> Iterator[DragStep]:
        """config.warp_steps: fit the drag block's map to the start's map warped by the drags, then find the handles.

        The motion loss moves what is near a handle; this whole-map target (warp.py) also moves what the
        handle belongs to (a head's outline with its face). The feature block rather than the image: the
        same result on the demo drags, and at 512 px the block is a quarter of the image's cost. It yields
        a DragStep per step like the loop (the handles stay put until the fit ends: the tracker cannot
        follow a jump of many pixels), then searches each handle's template along its path
        (tracking.search_between) and leaves the drag loop a fresh optimiser. A stop during the fit ends
        it there, handles found; a fit that uses all of max_steps ends the run.
        """
        steps = min(self.config.warp_steps, max_steps)
        with torch.no_grad():
            target = self._warped_start_map()
        optimizer = torch.optim.Adam(self._parameters(), lr=self.base_lr * WARP_LR_FACTOR)
        for i in range(steps):
            loss = (self._block_map() - target).abs().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.steps_done += 1
            stopped = i < steps - 1 and should_stop is not None and should_stop()
            last = stopped or i == steps - 1
            if last:
                self._find_handles_after_warp()
            reason = "stopped" if stopped else "max_steps" if last and steps == max_steps else None
            preview = self.image() if last or (preview_every and (i + 1) % preview_every == 0) else None
            yield DragStep(step=i + 1, handles=self.handle_list(), targets=self.target_list(),
                           loss=float(loss.detach()), distance=float((self.targets - self.handles).norm(dim=1).max()),
                           elapsed=time.perf_counter() - start, done=reason is not None, reason=reason,
                           preview=preview)
            if last:
                return

    def _block_map(self) -> torch.Tensor:
        """The drag block's whole feature map [1, C, h, w] (fp32, margins cropped), with gradient to w_opt."""
        ws = self._ws()
        feats = self.G.synthesis(ws, stop_at_block=self.block, **self._synthesis_options())[1]
        return self.geometry.apply(feats[self.block].to(torch.float32))

    def _warped_start_map(self) -> torch.Tensor:
        """The target of the warp fit: the current map moved by the drags (held pixels of a mask stay)."""
        fmap = self._block_map()
        h, w = fmap.shape[2:]
        H, W = self.size
        scale = torch.tensor([w / W, h / H], device=self.device)
        to_map = lambda p: (p + 0.5) * scale - 0.5  # noqa: E731 (image pixels -> map samples, FeatureField's rule)
        editable = None
        if self.fixed is not None:
            editable = F.adaptive_avg_pool2d((1 - self.fixed)[None, None], (h, w))[0, 0]
        field = displacement_field((h, w), to_map(self.handles), to_map(self.targets), editable)
        return warp_map(fmap, field)

    @torch.no_grad()
    def _find_handles_after_warp(self) -> None:
        predicted = self.handles + displacement_at(self.handles, self.handles, self.targets)
        tracked = self._tracked(self._features(full=False)[0])
        metric = self.config.track_metric
        self.handles = search_between(tracked, self.handles, predicted, self.templates, self.r2, metric)
        self.warp_pending = False
        self._restart_optimizer()

    def _track(self, field: FeatureField) -> torch.Tensor:
        """The published search against the initial templates, with config.track_ties' tie rule, or the anchored
        adaptive one (template_adapt > 0)."""
        rate, metric = self.config.template_adapt, self.config.track_metric
        if not rate and self.config.track_ties:
            cand, dist = window_distances(field, self.handles, self.templates, self.r2, metric)
            return best_near(cand, dist, self._predicted_handles(), self.config.track_ties)
        if not rate:
            return track_points(field, self.handles, self.templates, self.r2, metric)
        handles = track_anchored(field, self.handles, self.templates, self.adapted, self.r2, metric)
        self.adapted = adapt_templates(self.adapted, field.sample(handles), rate)
        return handles

    def _predicted_handles(self) -> torch.Tensor:
        """Where each handle would be if the last step moved its content as the motion loss asked (config.motion_step
        towards its target, never past it)."""
        return self.handles + motion_steps(self.targets - self.handles, self.config.motion_step, least=0.0)

    def _summary(self, loss: torch.Tensor) -> tuple[float, float, list[Point]]:
        """Largest distance, loss and handle positions in one device-to-host copy (one sync per step)."""
        dist = (self.targets - self.handles).norm(dim=1).max()
        values = torch.cat([dist[None], loss.detach()[None], self.handles.reshape(-1)]).cpu().tolist()
        flat = values[2:]
        return values[0], values[1], [(flat[j], flat[j + 1]) for j in range(0, len(flat), 2)]

    def target_list(self) -> list[Point]:
        return [tuple(p) for p in self.targets.cpu().tolist()]

    def handle_list(self) -> list[Point]:
        return [tuple(p) for p in self.handles.cpu().tolist()]

    @torch.no_grad()
    def image(self) -> torch.Tensor:
        """Render the current latent: [1, 3, H, W] in [-1, 1]."""
        return self.G.synthesis(self.latent(), noise_mode="const")
