"""Tests for the procedural cat-head world that the demo generator is trained on.

Benchmarks trust `landmarks` as ground truth for "did the part really move", so most
tests check that the rendered pixels agree with the landmarks, not just that they exist.
"""

import itertools

import numpy as np
import pytest
from PIL import Image

from draggan_core.demo import world
from draggan_core.demo.world import NUM_PARAMS, PARAM_NAMES, landmarks, render, set_param

SIZE = 128
GEOMETRY_PARAMS = [
    "head_x", "head_y", "head_size", "head_yaw", "head_tilt",
    "left_ear_angle", "left_ear_length", "right_ear_angle", "right_ear_length",
    "left_eye_open", "right_eye_open", "gaze_x", "gaze_y", "mouth_open", "tongue",
]  # fmt: skip


def cat(**values: float) -> np.ndarray:
    """Mid-range head with open eyes, closed mouth, dark brown fur on a light background."""
    params = np.full(NUM_PARAMS, 0.5, np.float32)
    settings = {
        "left_eye_open": 1.0, "right_eye_open": 1.0, "mouth_open": 0.0, "tongue": 0.0,
        "fur_hue": 2 / 3, "fur_light": 0.0, "bg_light": 1.0, **values,
    }  # fmt: skip
    for name, value in settings.items():
        params = set_param(params, name, value)
    return params


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def dark(image: np.ndarray) -> np.ndarray:
    """Fur and outline pixels of `cat()`: everything darker than the light background."""
    return luminance(image) < 128


def point(params: np.ndarray, name: str) -> np.ndarray:
    return np.array(landmarks(params)[name])


def near(image_mask: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    ys, xs = np.mgrid[: image_mask.shape[0], : image_mask.shape[1]]
    return image_mask & ((xs + 0.5 - center[0]) ** 2 + (ys + 0.5 - center[1]) ** 2 < radius**2)


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


# ---------------------------------------------------------------- parameters and API


def test_parameter_table_is_consistent():
    assert NUM_PARAMS == len(PARAM_NAMES) == len(set(PARAM_NAMES))
    assert tuple(world.PARAM_RANGES) == PARAM_NAMES
    lows = world.physical(np.zeros(NUM_PARAMS))
    highs = world.physical(np.ones(NUM_PARAMS))
    for name, (lo, hi, meaning) in world.PARAM_RANGES.items():
        assert lows[name] == pytest.approx(lo) and highs[name] == pytest.approx(hi) and meaning


def test_sample_params_shape_range_and_seed():
    params = world.sample_params(np.random.default_rng(3), 500)
    assert params.shape == (500, NUM_PARAMS) and params.dtype == np.float32
    assert params.min() >= 0.0 and params.max() <= 1.0
    assert np.array_equal(params, world.sample_params(np.random.default_rng(3), 500))


def test_set_param_returns_a_changed_copy():
    params = np.full(NUM_PARAMS, 0.5, np.float32)
    changed = set_param(params, "mouth_open", 0.9)
    assert params[PARAM_NAMES.index("mouth_open")] == 0.5
    assert changed[PARAM_NAMES.index("mouth_open")] == pytest.approx(0.9)
    assert np.count_nonzero(changed != params) == 1
    with pytest.raises(KeyError):
        set_param(params, "wings", 1.0)


def test_render_is_deterministic_with_expected_shape():
    params = world.sample_params(np.random.default_rng(0), 4)
    image = render(params[0])
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert render(params[0].copy()).tobytes() == image.tobytes()
    batch = world.render_batch(params)
    assert batch.shape == (4, SIZE, SIZE, 3) and batch.dtype == np.uint8
    assert all(np.array_equal(batch[i], render(params[i])) for i in range(4))
    assert render(params[0], 64).shape == (64, 64, 3)


def test_landmarks_cover_the_semantic_points_and_scale_with_size():
    params = world.sample_params(np.random.default_rng(1), 1)[0]
    small, large = landmarks(params, 64), landmarks(params, 128)
    required = {"left_ear_tip", "right_ear_tip", "left_eye", "right_eye", "nose",
                "mouth_top", "mouth_bottom", "chin", "head_center"}  # fmt: skip
    assert required <= set(large)
    for name in large:
        assert np.allclose(np.array(large[name]), 2 * np.array(small[name]))


# ---------------------------------------------------------------- framing


def test_every_landmark_stays_inside_the_frame_at_the_range_extremes():
    names = GEOMETRY_PARAMS[:9] + ["mouth_open", "tongue"]
    for corner in itertools.product((0.0, 1.0), repeat=len(names)):
        params = cat(**dict(zip(names, corner)))
        for x, y in landmarks(params).values():
            assert 2.0 < x < SIZE - 2.0 and 2.0 < y < SIZE - 2.0


def test_the_head_never_touches_the_image_border():
    """The background is a vertical gradient, so an untouched border is row-uniform."""
    rng = np.random.default_rng(2)
    params = world.sample_params(rng, 24)
    params[:, :9] = rng.integers(0, 2, (24, 9))  # pose and ears at their extremes
    for image in world.render_batch(params).astype(int):
        assert np.abs(image[:, 0] - image[:, -1]).max() <= 1
        for row in (image[0], image[-1]):
            assert np.abs(row - row[0]).max() <= 1


# ---------------------------------------------------------------- continuity and antialiasing


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_a_tiny_parameter_change_makes_a_tiny_image_change(name):
    for params in world.sample_params(np.random.default_rng(4), 3):
        value = params[PARAM_NAMES.index(name)]
        nudged = set_param(params, name, value + (1e-3 if value < 0.5 else -1e-3))
        difference = np.abs(render(nudged).astype(int) - render(params).astype(int))
        assert difference.mean() < 0.15 and difference.max() <= 12


@pytest.mark.parametrize("name", GEOMETRY_PARAMS)
def test_a_large_geometry_change_makes_a_large_image_change(name):
    tiny = np.abs(render(cat(**{name: 0.5})).astype(int) - render(cat(**{name: 0.501})).astype(int)).mean()
    large = np.abs(render(cat(**{name: 0.0})).astype(int) - render(cat(**{name: 1.0})).astype(int)).mean()
    assert large > 0.1 and large > 50 * tiny


def test_edges_are_antialiased_like_a_supersampled_box_filter():
    for params in world.sample_params(np.random.default_rng(5), 3):
        image = render(params).astype(int)
        supersampled = np.asarray(Image.fromarray(render(params, 4 * SIZE)).resize((SIZE, SIZE), Image.BOX))
        difference = np.abs(image - supersampled.astype(int))
        assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 8
    # The head outline crosses pixels partially, so their values lie between fur and background.
    row = luminance(render(cat()))[int(point(cat(), "head_center")[1])]
    inside, outside = row.min(), row.max()
    assert np.count_nonzero((row > inside + 10) & (row < outside - 10)) >= 2


def test_evaluating_parts_in_windows_loses_nothing(monkeypatch):
    """Each part is only evaluated in a box around it; the boxes must hold every touched pixel."""
    params = world.sample_params(np.random.default_rng(6), 4)
    params[:, 3:5] = [[0, 0], [1, 1], [0, 1], [1, 0]]  # extreme yaw and tilt stress the boxes
    sizes = (SIZE, 2 * SIZE)
    windowed = [render(p, size) for p in params for size in sizes]
    monkeypatch.setattr(world.Canvas, "window", lambda self, points, margin: (slice(None), slice(None)))
    whole = [render(p, size) for p in params for size in sizes]
    for a, b in zip(windowed, whole):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


# ---------------------------------------------------------------- semantics: pixels agree with landmarks


def topmost_dark_row(image: np.ndarray, x: float) -> int:
    columns = dark(image)[:, int(x) - 2 : int(x) + 3]
    return int(np.argmax(columns.any(axis=1)))


def test_raising_the_left_ear_moves_its_tip_up_and_the_ear_pixels_follow():
    low = cat(left_ear_angle=0.4, left_ear_length=0.1)
    high = cat(left_ear_angle=1.0, left_ear_length=1.0)
    tip_low, tip_high = point(low, "left_ear_tip"), point(high, "left_ear_tip")
    assert tip_high[1] < tip_low[1] - 8
    for params, tip in ((low, tip_low), (high, tip_high)):
        assert abs(topmost_dark_row(render(params), tip[0]) - tip[1]) <= 2.5
    # The other ear is independent.
    assert np.allclose(point(low, "right_ear_tip"), point(high, "right_ear_tip"))
    right_half = slice(int(point(low, "head_center")[0]) + 4, None)
    assert np.array_equal(render(low)[:, right_half], render(high)[:, right_half])


def test_ear_length_alone_moves_the_tip_along_the_ear():
    short, long = cat(right_ear_length=0.0), cat(right_ear_length=1.0)
    assert point(long, "right_ear_tip")[1] < point(short, "right_ear_tip")[1] - 5
    for params in (short, long):
        tip = point(params, "right_ear_tip")
        assert abs(topmost_dark_row(render(params), tip[0]) - tip[1]) <= 2.5


def test_opening_the_mouth_darkens_the_space_between_the_lips():
    closed, opened = cat(mouth_open=0.0), cat(mouth_open=1.0)
    top, bottom = point(opened, "mouth_top"), point(opened, "mouth_bottom")
    assert np.allclose(point(closed, "mouth_top"), top)
    assert bottom[1] > point(closed, "mouth_bottom")[1] + 6
    # Upper half of the opening: the tongue rests in the lower half.
    rows = slice(int(top[1] + 0.3 * (bottom[1] - top[1])), int(top[1] + 0.55 * (bottom[1] - top[1])) + 1)
    columns = slice(int(top[0]) - 2, int(top[0]) + 3)
    opened_luminance = luminance(render(opened))[rows, columns].mean()
    assert opened_luminance < luminance(render(closed))[rows, columns].mean() - 60


def test_the_tongue_sticks_out_below_the_mouth():
    params = cat(mouth_open=0.3, tongue=1.0)
    tip, bottom = point(params, "tongue_tip"), point(params, "mouth_bottom")
    assert tip[1] > bottom[1] + 4
    image = render(params).astype(int)
    pixel = image[int((tip[1] + bottom[1]) / 2), int(tip[0])]
    assert pixel[0] > pixel[1] + 60  # tongue pink on brown fur: red clearly above green
    assert np.abs(render(cat(mouth_open=0.3, tongue=0.0)).astype(int) - image).sum() > 0


def pupil_pixels(image: np.ndarray) -> np.ndarray:
    return image.max(axis=-1) < 40


def test_closing_an_eye_removes_its_pupil_pixels():
    light_fur = {"fur_hue": 1.0, "fur_light": 1.0}  # so that only the pupils are near black
    opened, closed = cat(**light_fur), cat(left_eye_open=0.0, **light_fur)
    eye = point(opened, "left_eye")
    radius = 0.3 * world.physical(opened)["head_size"] * SIZE
    assert np.count_nonzero(near(pupil_pixels(render(opened)), eye, radius)) >= 10
    assert np.count_nonzero(near(pupil_pixels(render(closed)), eye, radius)) == 0
    other = point(opened, "right_eye")
    assert np.count_nonzero(near(pupil_pixels(render(closed)), other, radius)) >= 10


def test_gaze_moves_the_pupil_pixels_with_the_pupil_landmarks():
    light_fur = {"fur_hue": 1.0, "fur_light": 1.0}
    left, right = cat(gaze_x=0.0, **light_fur), cat(gaze_x=1.0, **light_fur)
    radius = 0.3 * world.physical(left)["head_size"] * SIZE
    eye = point(left, "left_eye")
    shift = point(right, "left_pupil") - point(left, "left_pupil")
    assert shift[0] > 2 and abs(shift[1]) < 1e-6
    pupils = [centroid(near(pupil_pixels(render(params)), eye, radius)) for params in (left, right)]
    moved = pupils[1] - pupils[0]
    assert np.abs(moved - shift).max() < 1.0


def test_head_position_moves_the_head_center_and_the_whole_silhouette():
    left, right = cat(head_x=0.0), cat(head_x=1.0)
    shift = point(right, "head_center") - point(left, "head_center")
    assert shift[0] == pytest.approx(0.1 * SIZE, abs=1e-3) and shift[1] == pytest.approx(0.0, abs=1e-6)
    moved = centroid(dark(render(right))) - centroid(dark(render(left)))
    assert np.abs(moved - shift).max() < 0.5
    lower = cat(head_y=1.0)
    assert point(lower, "head_center")[1] - point(cat(head_y=0.0), "head_center")[1] > 5


def test_turning_the_head_moves_the_face_further_than_the_skull():
    ahead, turned = cat(head_yaw=0.5), cat(head_yaw=1.0)
    assert np.allclose(point(ahead, "head_center"), point(turned, "head_center"))
    nose_shift = point(turned, "nose")[0] - point(ahead, "nose")[0]
    assert nose_shift > 4
    assert point(turned, "right_eye")[0] - point(ahead, "right_eye")[0] < nose_shift


def test_tilting_clockwise_raises_the_left_ear_and_lowers_the_right():
    upright, tilted = cat(head_tilt=0.5), cat(head_tilt=1.0)
    assert point(tilted, "left_ear_tip")[1] < point(upright, "left_ear_tip")[1] - 2
    assert point(tilted, "right_ear_tip")[1] > point(upright, "right_ear_tip")[1] + 2
    assert np.allclose(point(tilted, "head_center"), point(upright, "head_center"))


# ---------------------------------------------------------------- fitting


def test_fit_params_recovers_the_landmarks_from_a_nearby_start():
    rng = np.random.default_rng(8)
    truth = world.sample_params(rng, 1)[0]
    start = np.clip(truth + rng.normal(0.0, 0.08, NUM_PARAMS).astype(np.float32), 0.0, 1.0)
    fitted = world.fit_params(render(truth), init=start, steps=4, starts=1)
    expected, found = landmarks(truth), landmarks(fitted)
    errors = [np.hypot(*np.subtract(expected[n], found[n])) for n in expected if n != "tongue_tip"]
    assert np.mean(errors) < 0.75 and max(errors) < 2.0
