"""Shared fixtures: small random generators with non-default sizes, so nothing can hard-code 512."""
from __future__ import annotations

import os

import pytest
import torch

from draggan_core.stylegan2 import Generator, GeneratorConfig


def make_generator(seed: int = 0, **overrides) -> Generator:
    """A random generator whose every parameter (noise strengths and biases too) is non-trivial."""
    cfg = dict(z_dim=24, w_dim=40, img_resolution=32, channel_base=512, channel_max=48, mapping_layers=3)
    cfg.update(overrides)
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(**cfg))
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1 + 0.05 * torch.rand(()).item())
            elif name.endswith("bias") and "affine" not in name:
                p.normal_(0, 0.1)
        G.mapping.w_avg.normal_(0, 0.5)
    return G.eval().requires_grad_(False)


@pytest.fixture
def small_generator() -> Generator:
    return make_generator()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) a skipped `slow` test is a failure: .ci/run installs the editors those tests
    drive, so a skip there means the set-up broke, not that the machine lacks something."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and item.get_closest_marker("slow") is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {report.longrepr}"
