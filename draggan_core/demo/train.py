"""Train the embedded demo generator by regression on the procedural cartoon-head world.

Why regression rather than a GAN: the world is rendered deterministically from a parameter
vector, so for every z we know the exact image the generator should draw (z -> parameters ->
render). Fitting that mapping with an L1 + SSIM loss converges far faster on a CPU than
adversarial training, and every latent direction keeps a clear geometric meaning (ear angle,
mouth opening, ...), which is what makes drags on the result meaningful.

The parameters of a latent are Phi(z_hat[:P]), z_hat the z the mapping network sees (z scaled to
unit RMS) and Phi the normal CDF, i.e. uniform in [0, 1] like world.sample_params.

Usage (resumes automatically from <workdir>/state.pt, which holds the optimiser too):
    python -m draggan_core.demo.train --workdir out/demo_train --iters 20000 --lr-decay-iters 5000
    python -m draggan_core.demo.train --workdir out/demo_train --export draggan_core/demo/demo_model.safetensors
    python -m draggan_core.demo.train --workdir out/more --iters 10000 --init-from draggan_core/demo/demo_model.safetensors \
        --channel-base 4096 --gradient-weight 1      # widened (grow.py) and with an edge term (objective.py)
    python -m draggan_core.demo.train --evaluate draggan_core/demo/demo_model.safetensors
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import ops
from ..devices import DEVICE_CHOICES, pick_device
from ..formats import native
from ..losses import multiscale_ssim
from ..stylegan2 import Generator, GeneratorConfig, compute_w_avg
from . import world
from .grow import grow, grown_config
from .objective import Objective
from .targets import TargetRenderer

DEMO_CONFIG = GeneratorConfig(z_dim=32, w_dim=128, img_resolution=128, mapping_layers=4,
                              channel_base=2048, channel_max=128, w_avg_beta=None)


def params_from_z(z: torch.Tensor) -> torch.Tensor:
    """World parameters [N, P] in [0, 1] for latents z [N, z_dim]."""
    z_hat = ops.normalize_2nd_moment(z)
    return torch.special.ndtr(z_hat[:, : world.NUM_PARAMS])


def render_targets(z: torch.Tensor, size: int, renderer: TargetRenderer | None = None) -> torch.Tensor:
    """The images the generator should draw for z: [N, 3, size, size] in [-1, 1]."""
    return (renderer or TargetRenderer(size))(params_from_z(z).numpy())


@torch.no_grad()
def evaluate(G: Generator, n: int = 16, device: torch.device | str = "cpu") -> dict[str, float]:
    """The model card's quality: L1 and 3-scale SSIM against the world on seeds 0..n-1 at psi 1.

    Images in [-1, 1]; seeds drawn as NVIDIA's tools draw them, so seed s is `draggan generate --seed s --psi 1`.
    """
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in range(n)])).float()
    target = render_targets(z, G.img_resolution)
    img = G.synthesis(G.mapping(z.to(device)), noise_mode="const").cpu()
    return {"l1": float((img - target).abs().mean()), "ssim": float(multiscale_ssim(img, target).mean())}


def initial_config(init_from: str | None, resolution: int | None = None, channel_base: int | None = None,
                   channel_max: int | None = None) -> GeneratorConfig:
    """The config a new run trains: the --init-from model's (else DEMO_CONFIG's), grown as asked."""
    cfg = DEMO_CONFIG
    if init_from:
        from ..checkpoint import load_generator
        cfg = load_generator(init_from).cfg
    return grown_config(copy.deepcopy(cfg), resolution, channel_base, channel_max)


def saved_config(workdir: Path) -> GeneratorConfig | None:
    """The config of the run saved in `workdir` (None: no run there, or one saved before configs were kept)."""
    path = workdir / "state.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return GeneratorConfig.from_dict(json.loads(state["config"])) if "config" in state else None


class Trainer:
    """Holds the generator, its EMA copy, the optimiser and the RNG; saves and restores all of them."""

    def __init__(self, workdir: Path, seed: int, lr: float, batch: int, ema_beta: float,
                 init_from: str | None = None, mapping_lr_boost: float = 100.0, device: str = "cpu",
                 config: GeneratorConfig | None = None, objective: Objective | None = None,
                 render_workers: int = 0):
        self.workdir, self.batch, self.ema_beta = workdir, batch, ema_beta
        self.objective = objective or Objective()
        self.device = pick_device(device)
        torch.manual_seed(seed)
        self.G = Generator(copy.deepcopy(config or DEMO_CONFIG)).train()
        self.iteration = 0
        self.seconds = 0.0  # training time over all runs, for the model card
        self.earlier = {"iterations": 0, "minutes": 0.0}  # history of an --init-from model
        if init_from:
            self._start_from(init_from)
        self.G.to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.renderer = TargetRenderer(self.G.img_resolution, render_workers)
        self.opt = self._optimizer(lr, mapping_lr_boost)
        self.rng = torch.Generator().manual_seed(seed)
        self.log: list[dict] = []

    def _start_from(self, path: str) -> None:
        """Take an exported model's weights, grown to this trainer's config (same config: a plain copy)."""
        from ..checkpoint import load_generator
        self.G = grow(load_generator(path), self.G.cfg).train()
        meta = native.read_metadata(path) if path.endswith(".safetensors") else {}
        self.earlier = {"iterations": int(meta.get("trained_iterations", 0)),
                        "minutes": float(meta.get("train_minutes", 0))}

    def _optimizer(self, lr: float, mapping_lr_boost: float) -> torch.optim.Optimizer:
        """Adam with momentum; the mapping network's rate is raised by `mapping_lr_boost`.

        StyleGAN's mapping layers carry a 0.01 learning-rate multiplier (kept in the released
        config, as the architecture defines it), which steadies adversarial training but leaves
        the mapping all but frozen under regression: the synthesis network then has to undo a
        random z -> w map and images stay blurred. Measured from the 8,500-iteration model,
        300 more iterations: smoothed loss 0.428 with (beta1 0, no boost), 0.387 with (0.9, 100).
        """
        mapping = list(self.G.mapping.parameters())
        in_mapping = {id(p) for p in mapping}
        synthesis = [p for p in self.G.parameters() if id(p) not in in_mapping]
        groups = [{"params": synthesis}, {"params": mapping, "lr": lr * mapping_lr_boost}]
        for group in groups:
            group["base_lr"] = group.get("lr", lr)
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99))

    def set_lr_scale(self, scale: float) -> None:
        """Scale every group's learning rate relative to its base rate (for the final decay)."""
        for group in self.opt.param_groups:
            group["lr"] = group["base_lr"] * scale

    @property
    def state_path(self) -> Path:
        return self.workdir / "state.pt"

    def save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        torch.save({"G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "opt": self.opt.state_dict(),
                    "rng": self.rng.get_state(), "iteration": self.iteration, "seconds": self.seconds,
                    "log": self.log, "earlier": self.earlier, "config": json.dumps(self.G.cfg.to_dict())}, tmp)
        os.replace(tmp, self.state_path)

    def load(self) -> bool:
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        self.G.load_state_dict(state["G"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt.load_state_dict(state["opt"])
        for group in self.opt.param_groups:  # states saved before the decay option kept no base rate
            group.setdefault("base_lr", group["lr"])
        self.rng.set_state(state["rng"].cpu())
        self.iteration, self.seconds, self.log = state["iteration"], state["seconds"], state["log"]
        self.earlier = state.get("earlier", self.earlier)
        return True

    def step(self) -> torch.Tensor:
        """One iteration; returns the loss as a tensor on the device, not a float: reading it would wait for
        the GPU, and not waiting lets this process draw and render the next batch while the GPU works."""
        t0 = time.perf_counter()
        z = torch.randn(self.batch, self.G.z_dim, generator=self.rng)
        target = render_targets(z, self.G.img_resolution, self.renderer).to(self.device)
        z = z.to(self.device)
        img = self.G.synthesis(self.G.mapping(z), noise_mode="const", fused_modconv=False)
        loss = self.objective(img, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - self.ema_beta)
        self.iteration += 1
        self.seconds += time.perf_counter() - t0
        return loss.detach()

    def evaluate(self, n: int = 16) -> dict[str, float]:
        """The model card's L1 and SSIM for the EMA generator (the one exported)."""
        return evaluate(self.G_ema, n, self.device)


def lr_scale(iteration: int, iters: int, decay_iters: int) -> float:
    """1 until the last `decay_iters` iterations, then down linearly to 0.1 at `iters`.

    A regression target has no noise of its own: the remaining error at a constant rate is mostly
    the optimiser's step noise, which a final decay removes (the EMA alone only averages it).
    """
    left = iters - iteration
    if decay_iters <= 0 or left >= decay_iters:
        return 1.0
    return 0.1 + 0.9 * max(left, 0) / decay_iters


def time_lr_scale(elapsed: float, budget: float, decay: float) -> float:
    """The same decay for a run bounded by time (seconds): 1, then down to 0.1 over the budget's last `decay`.

    A run on a lent GPU has minutes, not a known number of iterations; its rate is only known once
    it runs, so the decay is placed by the clock.
    """
    return lr_scale(int(elapsed * 1000), int(budget * 1000), int(decay * 1000))


def export(trainer: Trainer, path: str | Path) -> dict[str, float]:
    """Write the EMA generator with its w_avg in the project's format, plus training facts as metadata.

    Iterations and minutes include those of an --init-from model, so the file tells its whole history.
    The file is written beside its destination and renamed, so a reader never sees half a model.
    """
    G = trainer.G_ema
    G.mapping.w_avg.copy_(compute_w_avg(G))
    metrics = trainer.evaluate()
    iterations = trainer.earlier["iterations"] + trainer.iteration
    minutes = trainer.earlier["minutes"] + trainer.seconds / 60
    meta = {"name": "demo", "trained_iterations": str(iterations), "batch": str(trainer.batch),
            "train_minutes": f"{minutes:.0f}", "eval": json.dumps(metrics),
            "objective": json.dumps(trainer.objective.to_dict()),
            "world_params": json.dumps(list(world.PARAM_NAMES))}
    tmp = Path(f"{path}.tmp")
    native.write(G, str(tmp), metadata=meta)
    os.replace(tmp, path)
    print(f"exported {path}: {metrics}")
    return metrics


def parser() -> argparse.ArgumentParser:
    """The command line; its own function so that run_config can report a size conflict through it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="out/demo_train",
                   help="the run's state (weights, EMA, optimiser, RNG, log): resumed from if present")
    p.add_argument("--iters", type=int, default=20000, help="train until this many iterations in total")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema-beta", type=float, default=0.998)
    p.add_argument("--lr-decay-iters", type=int, default=0,
                   help="lower the learning rate linearly to 10%% over the last N iterations before --iters")
    p.add_argument("--minutes", type=float, default=0,
                   help="also stop after this many minutes of this invocation (0: no time limit)")
    p.add_argument("--lr-decay-minutes", type=float, default=0,
                   help="with --minutes: lower the learning rate linearly to 10%% over its last N minutes")
    p.add_argument("--render-workers", type=int, default=0,
                   help="render the world's targets in N processes (0: in the training process); "
                        "a GPU run needs them to keep the GPU busy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="where the generator trains (auto: CUDA, then MPS, then the CPU); the world renders on the CPU")
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--export", default=None, help="write the trained model here when done")
    p.add_argument("--export-every", type=int, default=0,
                   help="also write <workdir>/model.safetensors every N iterations (a usable model mid-run)")
    p.add_argument("--init-from", default=None,
                   help="start from an exported demo model (its weights and config; grown if the options below ask)")
    p.add_argument("--mapping-lr-boost", type=float, default=100.0,
                   help="multiply the mapping network's learning rate (it carries StyleGAN's 0.01 multiplier)")
    arch = p.add_argument_group("capacity (a new run; with --init-from the model is grown without changing its images)")
    arch.add_argument("--resolution", type=int, default=None, help="image size (default: 128, or the init model's)")
    arch.add_argument("--channel-base", type=int, default=None,
                      help="channels at resolution r are min(base / r, max): 4096 doubles the 32-128 px blocks "
                           "of the default 2048")
    arch.add_argument("--channel-max", type=int, default=None, help="the cap on any block's channels (default 128)")
    loss = p.add_argument_group("loss: L1 + the weighted terms")
    loss.add_argument("--ssim-weight", type=float, default=0.5, help="weight of 1 - 3-scale SSIM")
    loss.add_argument("--gradient-weight", type=float, default=0.0, help="weight of L1 on the image gradients")
    loss.add_argument("--laplacian-weight", type=float, default=0.0, help="weight of L1 on a Laplacian pyramid")
    p.add_argument("--evaluate", metavar="MODEL", default=None,
                   help="only print the model card's L1 and SSIM of an exported model, as JSON")
    return p


def run_config(p: argparse.ArgumentParser, args: argparse.Namespace, workdir: Path) -> GeneratorConfig:
    """A saved run keeps its config; a new one takes the init model's or the default, grown as asked."""
    saved = saved_config(workdir)
    if saved is None:
        return initial_config(args.init_from, args.resolution, args.channel_base, args.channel_max)
    if grown_config(saved, args.resolution, args.channel_base, args.channel_max) != saved:
        p.error(f"{workdir} holds a run of another size; to grow it, --export it and start a new --workdir "
                f"with --init-from")
    return saved


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.evaluate:
        from ..checkpoint import load_generator
        print(json.dumps(evaluate(load_generator(args.evaluate))))
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    objective = Objective(args.ssim_weight, args.gradient_weight, args.laplacian_weight)
    trainer = Trainer(workdir, args.seed, args.lr, args.batch, args.ema_beta, args.init_from,
                      args.mapping_lr_boost, args.device, run_config(p, args, workdir), objective,
                      args.render_workers)
    try:
        train_loop(trainer, args, workdir)
    finally:
        trainer.renderer.close()
    if args.export:
        export(trainer, args.export)
    return 0


def train_loop(trainer: Trainer, args: argparse.Namespace, workdir: Path) -> None:
    """Resume if there is a run, then step until --iters or --minutes, saving and exporting as asked."""
    if trainer.load():
        print(f"resumed at iteration {trainer.iteration}")
    start, start_iter, smoothed = time.time(), trainer.iteration, None
    budget = args.minutes * 60
    done = trainer.iteration >= args.iters
    while not done:
        scale = lr_scale(trainer.iteration, args.iters, args.lr_decay_iters)
        if budget:
            scale = min(scale, time_lr_scale(time.time() - start, budget, args.lr_decay_minutes * 60))
        trainer.set_lr_scale(scale)
        loss = trainer.step()
        smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss  # stays on the device
        elapsed = time.time() - start
        done = trainer.iteration >= args.iters or bool(budget and elapsed >= budget)
        if trainer.iteration % 10 == 0 or done:
            rate = (trainer.iteration - start_iter) / elapsed
            eta = (args.iters - trainer.iteration) / max(rate, 1e-9)
            if budget:
                eta = min(eta, budget - elapsed)
            bar = "#" * int(trainer.iteration / args.iters * 30)
            sys.stdout.write(f"\r[{bar:<30}] {trainer.iteration}/{args.iters} loss {float(smoothed):.4f} "
                             f"{rate:.2f} it/s eta {eta / 60:.0f} min ")
            sys.stdout.flush()
        if trainer.iteration % args.save_every == 0 or done:
            trainer.log.append({"iteration": trainer.iteration, "loss": float(smoothed), "time": time.time(),
                                **trainer.evaluate()})
            trainer.save()
            print(f"\n{json.dumps(trainer.log[-1])}")
        if args.export_every and trainer.iteration % args.export_every == 0:
            export(trainer, workdir / "model.safetensors")

if __name__ == "__main__":
    sys.exit(main())
