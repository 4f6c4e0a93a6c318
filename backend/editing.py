"""What the worker thread does with the generator: make sessions and run drag jobs.

These functions run only on the worker (see jobs.py), so they may use the GPU freely. They speak
in the client's pixels at their edges and in the model's pixels inside, through the session's
Mapping.
"""
from __future__ import annotations

import copy
import io
import math
from typing import Callable

import numpy as np
from PIL import Image

from draggan_core.drag import DragConfig, DragSession
from draggan_core.images import to_pil

from .errors import ApiError
from .geometry import Mapping, Point
from .jobs import CANCELLED, DONE, Job
from .models import ModelCatalogue
from .sessions import Session, SessionStore
from .validation import DragRequest, GenerateRequest

SAME_PICTURE_TOLERANCE = 8.0  # mean absolute difference in 8-bit levels, after resizing to the model's size


def encode_png(image: Image.Image, fast: bool = False) -> bytes:
    """PNG bytes; previews trade size for speed because they are encoded on the GPU's thread."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1 if fast else 6)
    return buf.getvalue()


def copy_drag(drag: DragSession) -> DragSession:
    """An independent copy of a DragSession's state (latent, optimiser, points); the generator is shared."""
    return copy.deepcopy(drag, {id(drag.G): drag.G})


def generate(catalogue: ModelCatalogue, store: SessionStore, req: GenerateRequest) -> tuple[Session, bytes]:
    """A new session on the image of a seed: its latent is known, so it can be dragged at once."""
    model = catalogue.load(req.model)
    drag = DragSession(model.G, req.seed, config=DragConfig(learning_rate=model.entry.learning_rate),
                       truncation_psi=req.psi)
    height, width = model.size
    session = store.add(Session(model, drag, Mapping(width, height, width, height)))
    return session, encode_png(to_pil(drag.image()))


def session_like(store: SessionStore, source: Session, image: Image.Image) -> Session:
    """A new session for `image`, which must show source's current picture at any size (e.g. a
    scaled layer). Anything else would need GAN inversion, which the daemon does not have yet."""
    height, width = source.model.size
    mapping = Mapping(image.width, image.height, width, height)
    current = np.asarray(to_pil(source.drag.image()), dtype=np.float32)
    sent = np.asarray(mapping.image_to_model(image), dtype=np.float32)
    difference = float(np.abs(current - sent).mean())
    if difference > SAME_PICTURE_TOLERANCE:
        raise ApiError(501, "inversion_unavailable",
                       f"the image differs from session {source.id}'s picture (mean difference {difference:.1f} "
                       f"levels); editing other images needs GAN inversion, which this daemon does not have yet")
    drag = copy_drag(source.drag)
    session = Session(source.model, drag, mapping, handles=mapping.to_client(drag.handle_list()),
                      targets=mapping.to_client(drag.target_list()))
    return store.add(session)


def drag_config(session: Session, req: DragRequest) -> DragConfig:
    return DragConfig(learning_rate=req.learning_rate or session.model.entry.learning_rate, w_layers=req.w_layers,
                      mask_lambda=req.mask_lambda, r1=req.r1, r2=req.r2)


def with_config(drag: DragSession, config: DragConfig) -> DragSession:
    """The DragSession under new settings. Step size and mask weight change in place, keeping the
    optimiser's moments and the tracked templates; other settings are fixed at construction, so
    changing them restarts from the current latent."""
    old = drag.config
    if (old.w_layers, old.r1, old.r2) != (config.w_layers, config.r1, config.r2):
        return DragSession(drag.G, drag.latent(), config=config)
    drag.config = config
    drag.set_learning_rate(config.learning_rate)
    return drag


def largest_distance(handles: list[Point], targets: list[Point]) -> float:
    return max(math.dist(h, t) for h, t in zip(handles, targets))


def run_drag(session: Session, req: DragRequest, job: Job, between_steps: Callable[[], None]) -> str:
    """Drag the session's image; on cancel or failure the session goes back to its state before the job."""
    before = copy_drag(session.drag)
    mapping = session.mapping
    try:
        drag = session.drag = with_config(session.drag, drag_config(session, req))
        drag.set_points(mapping.to_model(req.handles), mapping.to_model(req.targets))
        drag.set_mask(None if req.mask is None else mapping.mask_to_model(req.mask))
        for step in drag.run(max_steps=req.steps, preview_every=req.preview_every, should_stop=job.should_stop):
            handles = mapping.to_client(step.handles)
            # The preview goes first: a client that sees step k may fetch step k's preview at once.
            if step.preview is not None and not step.done:
                job.preview_png = encode_png(mapping.image_to_client(to_pil(step.preview)), fast=True)
                job.preview_step = step.step
            job.progress(step.step, handles, step.loss, largest_distance(handles, req.targets))
            between_steps()
    except BaseException:
        session.drag = before
        raise
    if job.close():
        session.drag = before
        return CANCELLED
    result = mapping.image_to_client(to_pil(step.preview))
    job.result_png, job.result_size, job.reason = encode_png(result), result.size, step.reason
    job.preview_png, job.preview_step = job.result_png, step.step  # the latest picture is the result
    session.handles, session.targets = job.handles, req.targets
    return DONE
