"""What the worker thread does with the generator: make sessions, invert real images and run drag jobs.

These functions run only on the worker of the session's device (see jobs.py and lanes.py), so they
may use that device freely. They speak in the client's pixels at their edges and in the model's
pixels inside, through the session's Mapping (a generated picture at any size) or LayerMapping (a
region of a real layer, fitted into the model's image by draggan_core.region, or an oriented quad
aligned the way the model was trained by draggan_core.alignment, and composited back into the
full layer).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from typing import Callable

import numpy as np
import torch
from PIL import Image

from draggan_core.alignment import FRAMINGS, AlignedMapping, OrientedBox
from draggan_core.drag import DragConfig, DragSession
from draggan_core.images import to_pil
from draggan_core.invert import InversionConfig, Inverter, session_key
from draggan_core.region import RegionMapping, composite, select_region

from . import pngread
from .errors import ApiError, bad_request
from .geometry import LayerMapping, Mapping, Point
from .jobs import CANCELLED, DONE, Job, JobStore
from .lanes import Lane
from .models import LoadedModel
from .sessions import Session, SessionState, SessionStore, copy_drag
from .validation import AlignRequest, DragRequest, GenerateRequest, SessionRequest

SAME_PICTURE_TOLERANCE = 8.0  # mean absolute difference in 8-bit levels, after resizing to the model's size


def encode_png(image: Image.Image, fast: bool = False) -> bytes:
    """PNG bytes; previews trade size for speed because they are encoded on the GPU's thread."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1 if fast else 6)
    return buf.getvalue()


def generate(lane: Lane, store: SessionStore, req: GenerateRequest) -> tuple[Session, bytes]:
    """A new session on the image of a seed, on `lane`'s device: its latent is known, so it can be dragged at once."""
    model = lane.models.load(req.model)
    drag = DragSession(model.G, req.seed, config=lane.new_drag_config(model.entry.learning_rate),
                       truncation_psi=req.psi)
    height, width = model.size
    session = Session(model, drag, Mapping(width, height, width, height), id=store.new_id(), lane=lane.index)
    session.start_states()
    store.add(session)
    return session, encode_png(to_pil(drag.image()))


def session_like(store: SessionStore, source: Session, image: Image.Image) -> Session:
    """A new session for `image`, which must show source's current picture at any size (e.g. a
    scaled layer). Other pictures are edited through inversion (start_inversion). The copy starts
    in source's current state (not a running drag's half-way latent), and its initial state is
    source's, so a reset of the copy goes back to the original picture too."""
    if isinstance(source.mapping, LayerMapping):
        raise bad_request(f"session {source.id} edits a real layer; from_session works with sessions from "
                          f"/generate (send the layer again without from_session instead)", "bad_combination")
    height, width = source.model.size
    mapping = Mapping(image.width, image.height, width, height)
    initial, now = source.initial_state, source.current_state
    current = np.asarray(to_pil(now.drag.image()), dtype=np.float32)
    sent = np.asarray(mapping.image_to_model(image), dtype=np.float32)
    difference = float(np.abs(current - sent).mean())
    if difference > SAME_PICTURE_TOLERANCE:
        raise ApiError(409, "different_picture",
                       f"the image differs from session {source.id}'s picture (mean difference {difference:.1f} "
                       f"levels); send it without from_session to edit it through GAN inversion")
    drag = copy_drag(now.drag)
    session = Session(source.model, drag, mapping, handles=mapping.to_client(drag.handle_list()),
                      targets=mapping.to_client(drag.target_list()), id=store.new_id(), lane=source.lane)
    states = [initial.renamed([], [])]
    if now is not initial:
        states.append(now.renamed(session.handles, session.targets))
    session.start_states(states)
    return store.add(session)


def drag_config(session: Session, req: DragRequest) -> DragConfig:
    return DragConfig.preset(req.preset, learning_rate=req.learning_rate or session.model.entry.learning_rate,
                             w_layers=req.w_layers, mask_lambda=req.mask_lambda, r1=req.r1, r2=req.r2,
                             precision=session.drag.config.precision)


def with_config(drag: DragSession, config: DragConfig) -> DragSession:
    """The DragSession under new settings. Step size and mask weight change in place, keeping the
    optimiser's moments and the tracked templates; other settings (a preset's blocks, snapping, region)
    are fixed at construction, so changing them restarts from the current latent."""
    same_but_rates = dataclasses.replace(drag.config, learning_rate=config.learning_rate,
                                         mask_lambda=config.mask_lambda)
    if same_but_rates != config:
        return DragSession(drag.G, drag.latent(), config=config)
    drag.config = config
    drag.set_learning_rate(config.learning_rate)
    return drag


def largest_distance(handles: list[Point], targets: list[Point]) -> float:
    return max(math.dist(h, t) for h, t in zip(handles, targets))


def run_drag(session: Session, req: DragRequest, start: SessionState | None, keep_states: int, job: Job,
             between_steps: Callable[[], None]) -> str:
    """Drag the session's image from `start` (a kept state; None: the session's current state). Done
    (also when stopped) records the new state, keeping at most `keep_states`; on cancel or failure
    the session goes back to its state before the job and no state is recorded."""
    before = (copy_drag(session.drag), session.handles, session.targets, session.state_id)

    def put_back() -> None:
        session.drag, session.handles, session.targets, session.state_id = before

    mapping = session.mapping
    try:
        if start is not None:
            session.restore(start)
        drag = session.drag = with_config(session.drag, drag_config(session, req))
        drag.set_points(mapping.to_model(req.handles), mapping.to_model(req.targets))
        drag.set_mask(None if req.mask is None else mapping.mask_to_model(req.mask))
        for step in drag.run(max_steps=req.steps, preview_every=req.preview_every, should_stop=job.should_stop):
            handles = mapping.to_client(step.handles)
            # The preview goes first: a client that sees step k may fetch step k's preview at once.
            if step.preview is not None and not step.done:
                job.preview_png = picture_png(session, req, step.preview, fast=True)[0]
                job.preview_step = step.step
            job.progress(step.step, handles, step.loss, largest_distance(handles, req.targets))
            between_steps()
        result_png, changed = picture_png(session, req, step.preview)
        made = SessionState.of(drag, job.handles, req.targets, job_id=job.id)
    except BaseException:
        put_back()
        raise
    if job.close():
        put_back()
        return CANCELLED
    job.result_png, job.result_size, job.reason = result_png, (mapping.width, mapping.height), step.reason
    job.changed = changed
    job.preview_png, job.preview_step = job.result_png, step.step  # the latest picture is the result
    session.handles, session.targets = made.handles, made.targets
    session.add_state(made, keep_states)
    job.state_id = made.id
    return DONE


def state_png(session: Session) -> bytes:
    """The picture of the session's current state at the client's size (real layers: the full layer
    with the state's render composited in, as a drag's result without a mask)."""
    render = session.current_state.drag.image()
    if isinstance(session.mapping, LayerMapping):
        return layer_png(session, render, reference=session.reference, feather=DragRequest.feather)[0]
    return encode_png(session.mapping.image_to_client(to_pil(render)))


def picture_png(session: Session, req: DragRequest, render: torch.Tensor, fast: bool = False
                ) -> tuple[bytes, dict | None]:
    """A drag's picture for the client: the render at the client's size (generated sessions), or the
    full layer with the edit composited into its region: outside the mask the layer's own bytes,
    without a mask the pixels the edit changed against the reconstruction, feathered (real layers)."""
    if isinstance(session.mapping, LayerMapping):
        return layer_png(session, render, mask=req.mask, reference=session.reference, feather=req.feather, fast=fast)
    return encode_png(session.mapping.image_to_client(to_pil(render)), fast=fast), None


# ----------------------------------------------------------------------------- real images: inversion

# Model-size defaults take too long on a CPU. Pivotal tuning does most of the work there: the demo
# model's W / W+ / PTI at 30 / 10 / 100 steps (these factors) reach 35 dB after 5.0 s and stop at
# 45 dB after 12.9 s on two cores, where 200 / 80 / 100 took 9.3 s and 24.1 s to the same 45 dB
# (benchmarks/README.md, "Time to PSNR", issue 19).
CPU_STEP_FACTORS = {"w": 0.06, "w+": 0.05, "pti": 0.4}


def invert_config(model: LoadedModel, device: torch.device, req: SessionRequest) -> tuple[InversionConfig, int]:
    """The inversion's settings (every step count explicit, so equal settings give equal session
    keys) and its total step budget. Defaults scale with the model's size (InversionConfig) and
    are cut to CPU_STEP_FACTORS of that on a CPU; the request may set each stage's steps within
    the limits."""
    base = InversionConfig().resolved(model.G)
    cpu = device.type == "cpu"

    def pick(asked: int | None, default: int, stage: str, floor: int) -> int:
        return asked if asked is not None else max(floor, round(default * (CPU_STEP_FACTORS[stage] if cpu else 1.0)))
    inv = req.invert
    w = pick(inv.steps_w, base.w_steps, "w", 20)
    wplus = pick(inv.steps_wplus, base.wplus_steps, "w+", 10)
    pti = pick(inv.steps_pti, base.pti_steps, "pti", 10) if inv.pti else 0
    stages = ("w",) + (("w+",) if wplus else ()) + (("pti",) if pti else ())
    config = InversionConfig(stages=stages, w_steps=w, wplus_steps=wplus or None, pti_steps=pti or None)
    return config, w + wplus + pti


def model_identity(model: LoadedModel) -> str:
    """Names the checkpoint for session keys without hashing its weights: name, path, size, mtime."""
    path = model.entry.path
    try:
        st = path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "?"
    return f"{model.entry.name}:{path}:{stamp}"


def aligned_mapping(model: LoadedModel, layer_size: tuple[int, int], align: AlignRequest) -> AlignedMapping:
    """The oriented quad of an alignment: landmarks through the model's framing (FFHQ, demo), or a box
    as given (any model; its height defaults to the model's aspect). 400 bad_align when it cannot be
    used: landmarks for a model trained on centred crops, swapped eyes, a box missing the layer."""
    framing = FRAMINGS[model.entry.framing]
    try:
        if align.landmarks is not None:
            if not framing.uses_landmarks:
                raise bad_request(f"model {model.entry.name!r} was trained on centred crops (framing 'centre'), not "
                                  f"on faces aligned by their eyes and mouth: align it with 'align': {{'box': "
                                  f"{{center, width, angle}}}} around the subject instead", "bad_align")
            return AlignedMapping.from_landmarks(layer_size, model.size, framing, align.landmarks)
        b = align.box
        mh, mw = model.size
        box = OrientedBox(b.center, b.width, b.height if b.height is not None else b.width * mh / mw, b.angle)
        return AlignedMapping.create(layer_size, model.size, box)
    except ValueError as e:
        raise bad_request(f"cannot use that alignment: {e}", "bad_align") from None


def layer_mapping(model: LoadedModel, layer_size: tuple[int, int], req: SessionRequest
                  ) -> RegionMapping | AlignedMapping:
    """How the layer meets the model: an aligned quad, or the region (explicit, or the selection's
    bounding box grown by the margin, or the whole layer) fitted into the model's image."""
    if req.align is not None:
        return aligned_mapping(model, layer_size, req.align)
    try:
        if req.region is not None:
            rect = req.region
        elif req.selection_bbox is not None:
            rect = select_region(layer_size, req.selection_bbox, margin=req.margin, model_size=model.size)
        else:
            rect = None
        return RegionMapping.create(layer_size, model.size, rect)
    except ValueError as e:
        raise bad_request(f"cannot use that region: {e}", "bad_region") from None


def start_inversion(lane: Lane, store: SessionStore, jobs: JobStore, req: SessionRequest, client: str
                    ) -> tuple[Session, Job | None, bool]:
    """A session on a real layer, on `lane`'s device: (session, its invert job or None, reused).

    The layer meets the model through layer_mapping (a region or an aligned quad). A session made
    from the same layer, mapping, model and inversion settings is returned as it is (reused);
    otherwise a new session is opened and an invert job queued for it. Runs on the lane's worker, so two
    equal requests placed on the same device cannot both start one (on several devices two that arrive
    together may, each on its own device: both sessions work, the later one is the one found again).
    """
    model = lane.models.load(req.model)
    layer = pngread.pixels(req.image)  # RGBA from validation; the session keeps this one full-size copy
    lh, lw = layer.shape[:2]
    region = layer_mapping(model, (lh, lw), req)
    config, total = invert_config(model, lane.device, req)
    inv_key = session_key(region.crop(layer), model_identity(model), config)
    placed = json.dumps(region.to_dict(), sort_keys=True)  # the region, or the quad and its landmarks
    key = hashlib.sha256(f"{inv_key}:{placed}".encode() + hashlib.sha256(layer).digest()
                         + f"{layer.shape}".encode()).hexdigest()
    found = store.find(key)
    if found is not None:
        running = jobs_get(jobs, found.invert_job) if not found.ready else None
        return found, running, True
    target, valid = region.crop_and_fit(layer)
    if float(valid.sum()) < 1:
        what, code = ("aligned quad", "bad_align") if region.oriented else ("region", "bad_region")
        raise bad_request(f"the {what} is fully transparent: there is nothing to edit", code)
    job_id = jobs.new_id()
    session = Session(model, None, LayerMapping(region), layer=layer, key=key, invert_job=job_id, active_job=job_id,
                      id=store.new_id(), lane=lane.index)
    store.add(session)

    def on_end(job: Job, state: str) -> None:
        if state == DONE:
            store.release(session)
        else:  # cancelled or failed: the session has nothing to drag, and a new request starts afresh
            store.discard(session)

    job = Job("invert", session.id, total, id=job_id, on_end=on_end, client=client, lane=lane.index,
              work=lambda job, between: run_invert(session, target, valid, config, req.invert.preview_every,
                                                   lane.new_drag_config(model.entry.learning_rate), job, between))
    try:
        lane.worker.submit(job)
    except ApiError:  # the queue is full: no session without its inversion
        store.discard(session)
        raise
    jobs.add(job)  # after submit is safe: this runs on the worker, so the job cannot start before it returns
    return session, job, False


def jobs_get(jobs: JobStore, jid: str | None) -> Job | None:
    try:
        return jobs.get(jid) if jid is not None else None
    except ApiError:
        return None


def _quality(stage) -> dict:
    return {"psnr": round(float(stage.psnr), 3), "ssim": round(float(stage.ssim), 5), "steps": stage.steps,
            "seconds": round(float(stage.seconds), 3), "stopped": stage.stopped}


def layer_png(session: Session, edited: torch.Tensor, mask: Image.Image | None = None, reference=None,
              feather: int = 0, fast: bool = False) -> tuple[bytes, dict | None]:
    """The full-size layer with `edited` (model-size render) composited into its region: PNG RGBA and
    the changed rectangle (None: nothing changed)."""
    region = session.mapping.region_mapping
    m = None if mask is None else np.asarray(mask)  # grayscale from validation
    out = composite(session.layer, region, edited, mask=m, reference=reference, feather=feather)
    png = encode_png(Image.fromarray(out.layer, "RGBA"), fast=fast)
    return png, (out.changed.to_dict() if out.changed is not None else None)


def run_invert(session: Session, target: np.ndarray, valid: np.ndarray, config: InversionConfig, preview_every: int,
               drag_settings: DragConfig, job: Job, between_steps: Callable[[], None]) -> str:
    """Invert the session's region: W -> W+ -> PTI (as configured), then open its drag with
    drag_settings. A stop keeps the best result so far; the tuned generator copy stays in the session
    (memory only, never on disk)."""
    model = session.model
    inverter = Inverter(model.G, target, valid, config)
    offsets, done_before, stage = {}, 0, None
    for s in config.stages:
        offsets[s] = done_before
        done_before += {"w": config.w_steps, "w+": config.wplus_steps, "pti": config.pti_steps}[s]
    job.psnr = inverter.quality["start"].psnr
    for step in inverter.run(should_stop=job.should_stop, preview_every=preview_every):
        total_step = offsets[step.stage] + step.step
        if step.preview is not None and not step.done:  # the preview first, as in run_drag
            job.preview_png, _ = layer_png(session, step.preview, fast=True)
            job.preview_step = total_step
        job.invert_progress(total_step, step.stage, step.step, step.steps, step.loss, step.psnr)
        stage = step
        between_steps()
    if job.close():
        return CANCELLED
    result = inverter.result()
    reference = result.image()
    session.inversion, session.reference = result, reference
    session.drag = DragSession(result.generator, result.ws, config=drag_settings)
    session.start_states()
    job.state_id = session.state_id
    job.quality = {name: _quality(q) for name, q in result.quality.items()}
    job.result_png, job.changed = layer_png(session, reference)
    job.result_size = (session.mapping.width, session.mapping.height)
    job.preview_png, job.preview_step = job.result_png, job.step
    job.psnr = result.quality[list(result.quality)[-1]].psnr
    job.reason = "stopped" if result.stopped else (stage.reason if stage is not None and stage.reason else "finished")
    return DONE
