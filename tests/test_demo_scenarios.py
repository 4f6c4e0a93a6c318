"""The demo drags and their ground truth: points from the world's landmarks before and after the edit,
a latent that encodes the edited parameters, and no 'drag' that hardly moves anything."""
from __future__ import annotations

import numpy as np
import pytest

from draggan_core.demo import world
from draggan_core.demo.scenarios import MIN_MOVE, SCENARIOS, make_drag, z_for_params
from draggan_core.demo.train import DEMO_CONFIG, params_from_z
from draggan_core.stylegan2 import seed_to_z

Z_DIM, SIZE = DEMO_CONFIG.z_dim, 128


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_points_are_the_worlds_landmarks_before_and_after_the_edit(name):
    scenario, made = SCENARIOS[name], 0
    for seed in range(10):
        try:
            drag = make_drag(name, seed, Z_DIM, SIZE)
        except ValueError as e:
            assert "hardly changes" in str(e)
            continue
        made += 1
        before, after = world.landmarks(drag.params_before, SIZE), world.landmarks(drag.params_after, SIZE)
        n = len(scenario.landmarks)
        for k, mark in enumerate(scenario.landmarks):
            assert np.allclose(drag.handles[k], np.clip(before[mark], 0, SIZE - 1))
            assert np.allclose(drag.targets[k], np.clip(after[mark], 0, SIZE - 1))
        assert drag.handles[n:] == drag.targets[n:]  # anchors stay where they are
        assert max(np.hypot(*np.subtract(t, h)) for h, t in zip(drag.handles[:n], drag.targets[:n])) >= MIN_MOVE
        changed = np.flatnonzero(~np.isclose(drag.params_before, drag.params_after))
        assert {world.PARAM_NAMES[i] for i in changed} <= {"left_ear_angle", "left_ear_length", "right_ear_angle",
                                                           "right_ear_length", "mouth_open", "tongue", "head_yaw",
                                                           "head_x"}
    assert made >= 5, f"{name}: only {made} of 10 seeds give a drag"


def test_the_edited_latent_encodes_exactly_the_edited_parameters():
    drag = make_drag("right_ear_up", 3, Z_DIM, SIZE)
    assert np.allclose(params_from_z(drag.z_after)[0].numpy(), np.clip(drag.params_after, 1e-3, 1 - 1e-3), atol=1e-5)
    assert np.allclose(params_from_z(drag.z_before)[0].numpy(), drag.params_before)
    z1 = seed_to_z(3, Z_DIM)
    same = z_for_params(params_from_z(z1)[0].numpy(), z1)
    assert np.allclose(params_from_z(same).numpy(), params_from_z(z1).numpy(), atol=1e-5)


def test_an_edit_that_hardly_moves_the_points_is_refused_with_the_reason():
    trivial = [seed for seed in range(10) if _refused("open_mouth", seed)]
    assert trivial, "seeds whose mouth is already open should be refused"
    with pytest.raises(ValueError, match=r"open_mouth hardly changes seed \d+ \(its points move \d\.\d px\)"):
        make_drag("open_mouth", trivial[0], Z_DIM, SIZE)


def _refused(name: str, seed: int) -> bool:
    try:
        make_drag(name, seed, Z_DIM, SIZE)
    except ValueError:
        return True
    return False
