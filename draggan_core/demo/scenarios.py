"""Meaningful drags on the demo model, with their ground truth from the procedural world.

A scenario changes one geometric part of a seed's world parameters (raise an ear, open the
mouth, turn or move the head). The handles are landmarks of the seed's image; the targets are the
same landmarks after the change, so every target is reachable by construction, and the world
renders the expected result. Drags use truncation psi = 1, where the generator's image of a seed is
trained to be the world's render of params_from_z(z).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from .. import ops
from ..stylegan2 import seed_to_z
from . import world
from .train import params_from_z

Edit = Callable[[np.ndarray], np.ndarray]
# Edits go this far towards a parameter's end, not all the way: params_from_z reaches 0 and 1 only
# at infinite z, and latents far outside the training distribution render poorly.
FAR = 0.9
# A drag whose points move less than this (pixels at 128 px) is no drag: a seed whose mouth is
# already open, say, would count as "reached" after one step. Twice the drag loop's stop distance.
MIN_MOVE = 2.0


def _raise_ear(side: str) -> Edit:
    def edit(p: np.ndarray) -> np.ndarray:
        i = world.PARAM_NAMES.index(f"{side}_ear_length")
        p = world.set_param(p, f"{side}_ear_length", min(FAR, float(p[i]) + 0.4))
        return world.set_param(p, f"{side}_ear_angle", FAR)
    return edit


def _open_mouth(p: np.ndarray) -> np.ndarray:
    return world.set_param(world.set_param(p, "mouth_open", FAR), "tongue", 1 - FAR)


def _turn_head(p: np.ndarray) -> np.ndarray:
    yaw = float(p[world.PARAM_NAMES.index("head_yaw")])
    return world.set_param(p, "head_yaw", 1 - FAR if yaw > 0.5 else FAR)


def _shift_head(p: np.ndarray) -> np.ndarray:
    x = float(p[world.PARAM_NAMES.index("head_x")])
    return world.set_param(p, "head_x", 1 - FAR if x > 0.5 else FAR)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    edit: Edit
    landmarks: tuple[str, ...]  # dragged points
    anchors: tuple[str, ...] = ()  # points that should stay where they are (handle = target)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("left_ear_up", _raise_ear("left"), ("left_ear_tip",), ("right_ear_tip",)),
    Scenario("right_ear_up", _raise_ear("right"), ("right_ear_tip",), ("left_ear_tip",)),
    Scenario("open_mouth", _open_mouth, ("mouth_bottom",), ("nose",)),
    Scenario("turn_head", _turn_head, ("nose", "mouth_top")),
    Scenario("move_head", _shift_head, ("head_center",)),
]}


@dataclasses.dataclass
class Drag:
    """One concrete drag: points in image pixels plus the world's before/after parameters."""

    scenario: str
    seed: int
    handles: list[tuple[float, float]]
    targets: list[tuple[float, float]]
    params_before: np.ndarray
    params_after: np.ndarray
    z_before: torch.Tensor
    z_after: torch.Tensor


def z_for_params(params: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A latent whose world parameters are `params`, keeping `like`'s remaining (unused) directions.

    params_from_z reads the unit-RMS z, so we build a unit-RMS z directly: the first entries are
    the normal quantiles of the parameters, the rest is `like`'s tail rescaled to make the RMS 1.
    """
    q = torch.special.ndtri(torch.as_tensor(np.clip(params, 1e-3, 1 - 1e-3), dtype=torch.float32))
    z_dim = like.shape[1]
    tail = ops.normalize_2nd_moment(like)[0, len(q):]
    room = z_dim - float(q.square().sum())
    if room <= 0:
        raise ValueError("parameters too extreme to be reached by a unit-RMS latent")
    tail = tail * (room / float(tail.square().sum().clamp_min(1e-8))) ** 0.5
    return torch.cat([q, tail])[None]


def _inside(point: tuple[float, float], size: int) -> tuple[float, float]:
    return min(max(point[0], 0.0), size - 1.0), min(max(point[1], 0.0), size - 1.0)


def make_drag(name: str, seed: int, z_dim: int, size: int = 128) -> Drag:
    """The drag of scenario `name` on the image of `seed` (latents of z_dim entries, images of size px)."""
    scenario = SCENARIOS[name]
    z1 = seed_to_z(seed, z_dim)
    p1 = params_from_z(z1)[0].numpy()
    p2 = scenario.edit(p1)
    before, after = world.landmarks(p1, size), world.landmarks(p2, size)
    move = max(float(np.hypot(*np.subtract(after[k], before[k]))) for k in scenario.landmarks)
    if move < MIN_MOVE * size / 128:
        raise ValueError(f"{name} hardly changes seed {seed} (its points move {move:.1f} px); try another seed")
    handles = [before[k] for k in scenario.landmarks] + [before[k] for k in scenario.anchors]
    targets = [after[k] for k in scenario.landmarks] + [before[k] for k in scenario.anchors]
    return Drag(name, seed, [_inside(h, size) for h in handles], [_inside(t, size) for t in targets], p1, p2, z1,
                z_for_params(p2, z1))
