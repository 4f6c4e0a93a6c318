"""The world's renders a training batch regresses to, drawn on several CPU cores when asked.

On a GPU the demo generator's training step takes milliseconds, while the world's numpy renderer
needs about 3 ms per 128-px image on one core: rendered in the training process, a batch of 32
would leave the GPU idle most of the time. A render is a pure function of the world's parameters,
so splitting a batch over worker processes gives exactly the targets one process gives, and a run
stays reproducible whatever the worker count.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from . import world


class TargetRenderer:
    """Renders batches of world parameters as [N, 3, size, size] images in [-1, 1], in `workers` processes.

    workers 0 renders in the calling process. Workers are spawned, not forked: a training process
    may already hold a CUDA context, which a forked child must not inherit.
    """

    def __init__(self, size: int, workers: int = 0):
        if workers < 0:
            raise ValueError("render workers must be 0 or more")
        self.size, self.workers = size, workers
        self._pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                      if workers else None)

    def __call__(self, params: np.ndarray) -> torch.Tensor:
        if self._pool is None or len(params) < 2:
            rgb = world.render_batch(params, size=self.size)
        else:
            chunks = [c for c in np.array_split(params, min(self.workers, len(params))) if len(c)]
            rgb = np.concatenate(list(self._pool.map(world.render_batch, chunks, [self.size] * len(chunks))))
        return torch.from_numpy(rgb).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "TargetRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
