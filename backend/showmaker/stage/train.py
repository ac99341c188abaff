"""Depth-guided stage reconstruction with 3D Gaussians (METHOD.md section 2, eq. 4-7).

    L = (1 - l_ssim) L1 + l_ssim (1 - SSIM) + l_d L_depth + l_tv L_tv

The photometric terms and the depth term see background pixels only (actors masked out); L_depth is the
log-L1 of eq. 5 between the rendered expected depth (eq. 4) and the aligned monocular depth D^; L_tv is
the total variation of the rendered depth (eq. 6). Densification and pruning follow 3DGS
(``splat.densify``). Optional background images (other episodes of the same set) are simply more views
with an all-background mask.

Frames: images [F, H, W, 3] float in [0, 1] (sRGB), masks [F, H, W] bool (True = background),
K [F, 3, 3], viewmats [F, 4, 4] (OpenCV world-to-camera), depths [F, H, W] (aligned, stage units; NaN or
0 where unknown) or None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..splat import GaussianSet, rasterization
from ..splat.densify import DensifyConfig, DensifyState, make_optimizers, step_post_backward
from ..splat.losses import depth_log_l1, depth_tv, photometric_loss

SH_C0 = 0.28209479177387814


@dataclass
class StageTrainConfig:
    """Everything that shapes a stage reconstruction (hashed into the stage's cache key).

    iterations: optimisation steps (official code: 15,000).
    lambda_ssim, lambda_depth, lambda_tv: eq. 7's weights (0.2 as 3DGS; 0.2 and 0.5 from the official code).
    depth_guidance: use L_depth and L_tv (off = plain 3DGS, for the ablation and the no-depth mode).
    sh_degree: final SH degree; raised by one every ``sh_degree_interval`` steps.
    lr_*: Adam learning rates (3DGS values; means scaled by the scene scale and decayed exponentially to
        lr_means_final over the run).
    init_opacity: activated opacity of the initial Gaussians. max_init_points: subsample larger clouds.
    checkpoint_every: steps between checkpoints (0 = never).
    """

    iterations: int = 15_000
    lambda_ssim: float = 0.2
    lambda_depth: float = 0.2
    lambda_tv: float = 0.5
    depth_guidance: bool = True
    sh_degree: int = 3
    sh_degree_interval: int = 1000
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    init_opacity: float = 0.1
    max_init_points: int = 200_000
    checkpoint_every: int = 1000
    seed: int = 0
    densify: DensifyConfig = field(default_factory=DensifyConfig)

    @classmethod
    def preset(cls, name: str) -> "StageTrainConfig":
        """Named presets: ``tiny`` (CI-sized, seconds), ``preview`` (CPU, minutes), ``full`` (GPU, the
        method's 15,000 iterations)."""
        if name == "tiny":
            return cls(iterations=150, sh_degree=1, sh_degree_interval=75, checkpoint_every=50,
                       densify=DensifyConfig(refine_start=30, refine_stop=120, refine_every=30, reset_every=0,
                                             max_gaussians=20_000))
        if name == "preview":
            return cls(iterations=1500, sh_degree=2, sh_degree_interval=400, checkpoint_every=250,
                       densify=DensifyConfig(refine_start=200, refine_stop=1200, refine_every=100,
                                             reset_every=600, max_gaussians=150_000))
        if name == "full":
            return cls()
        raise ValueError(f"unknown stage preset {name!r}; expected one of tiny, preview, full")


@dataclass
class StageViews:
    """Training views on the compute device (see module docstring for shapes and frames)."""

    images: torch.Tensor
    masks: torch.Tensor
    Ks: torch.Tensor
    viewmats: torch.Tensor
    depths: torch.Tensor | None

    @property
    def n(self) -> int:
        return self.images.shape[0]


def init_params(points: np.ndarray, colors: np.ndarray, cfg: StageTrainConfig, device) -> dict[str, torch.nn.Parameter]:
    """Gaussians at the sparse stage points ``points`` [N, 3] with colours ``colors`` [N, 3] in [0, 1].

    Initial scale = mean distance to the 3 nearest neighbours (isotropic), as 3DGS.
    """
    rng = np.random.default_rng(cfg.seed)
    if len(points) > cfg.max_init_points:
        keep = rng.choice(len(points), cfg.max_init_points, replace=False)
        points, colors = points[keep], colors[keep]
    if len(points) < 4:
        raise ValueError(f"stage initialisation needs sparse points; got {len(points)}")
    pts = torch.as_tensor(points, dtype=torch.float32, device=device)
    knn = torch.cat([torch.cdist(pts[s:s + 4096], pts).topk(4, largest=False).values[:, 1:]
                     for s in range(0, len(pts), 4096)])
    dist = knn.mean(-1).clamp_min(1e-7)
    n = len(pts)
    n_sh = (cfg.sh_degree + 1) ** 2
    sh0 = ((torch.as_tensor(colors, dtype=torch.float32, device=device) - 0.5) / SH_C0).unsqueeze(1)
    quats = torch.zeros(n, 4, device=device)
    quats[:, 0] = 1
    return {
        "means": torch.nn.Parameter(pts),
        "scales": torch.nn.Parameter(torch.log(dist)[:, None].repeat(1, 3)),
        "quats": torch.nn.Parameter(quats),
        "opacities": torch.nn.Parameter(torch.full((n,), math.log(cfg.init_opacity / (1 - cfg.init_opacity)), device=device)),
        "sh0": torch.nn.Parameter(sh0),
        "shN": torch.nn.Parameter(torch.zeros(n, n_sh - 1, 3, device=device)),
    }


def render(params, viewmats, Ks, width, height, sh_degree: int, render_mode="RGB+ED", backgrounds=None):
    """Render the Gaussians in ``params`` for C cameras -> (rgb [C, H, W, 3], depth [C, H, W, 1] | None,
    alpha [C, H, W, 1], meta)."""
    colors = torch.cat([params["sh0"], params["shN"]], 1)
    out, alpha, meta = rasterization(
        means=params["means"], quats=params["quats"], scales=torch.exp(params["scales"]),
        opacities=torch.sigmoid(params["opacities"]), colors=colors, viewmats=viewmats, Ks=Ks,
        width=width, height=height, sh_degree=sh_degree, render_mode=render_mode, backgrounds=backgrounds,
    )
    rgb = out[..., :3]
    depth = out[..., 3:4] if out.shape[-1] > 3 else None
    return rgb, depth, alpha, meta


class StageTrainer:
    """Runs eq. 7 on a set of views; resumable from a checkpoint dict.

    ``scene_scale`` is the scene radius in stage units (densification thresholds and the means' LR scale).
    """

    def __init__(self, views: StageViews, points, colors, scene_scale: float, cfg: StageTrainConfig, device="cpu"):
        self.views, self.cfg, self.scene_scale, self.device = views, cfg, scene_scale, device
        self.params = init_params(points, colors, cfg, device)
        self.optimizers = make_optimizers(self.params, self._lrs(0))
        self.dstate = DensifyState(self.params["means"].shape[0], device)
        self.step = 0
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict] = []

    def _lrs(self, step: int) -> dict[str, float]:
        c = self.cfg
        t = min(step / max(c.iterations, 1), 1.0)
        lr_means = math.exp((1 - t) * math.log(c.lr_means) + t * math.log(c.lr_means_final)) * self.scene_scale
        return {"means": lr_means, "scales": c.lr_scales, "quats": c.lr_quats, "opacities": c.lr_opacities,
                "sh0": c.lr_sh0, "shN": c.lr_shN}

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs (tensors, numbers, lists and dicts only: loads with weights_only)."""
        return {
            "step": self.step,
            "params": {k: p.detach().cpu() for k, p in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "dstate": {"grad2d": self.dstate.grad2d.cpu(), "count": self.dstate.count.cpu()},
            "gen": self.gen.get_state(),
            "history": self.history,
        }

    def load_state_dict(self, sd: dict):
        self.params = {k: torch.nn.Parameter(v.to(self.device)) for k, v in sd["params"].items()}
        self.optimizers = make_optimizers(self.params, self._lrs(sd["step"]))
        for k, o in self.optimizers.items():
            o.load_state_dict(sd["optimizers"][k])
        self.dstate.grad2d = sd["dstate"]["grad2d"].to(self.device)
        self.dstate.count = sd["dstate"]["count"].to(self.device)
        self.gen.set_state(sd["gen"])
        self.history = list(sd["history"])
        self.step = sd["step"]

    # -- training ------------------------------------------------------------------------------------
    def train_step(self) -> dict:
        c, v = self.cfg, self.views
        i = int(torch.randint(v.n, (1,), generator=self.gen))
        for k, lr in self._lrs(self.step).items():
            self.optimizers[k].param_groups[0]["lr"] = lr
        sh_degree = min(self.step // c.sh_degree_interval, c.sh_degree)
        H, W = v.images.shape[1:3]
        mode = "RGB+ED" if c.depth_guidance else "RGB"
        rgb, depth, _, meta = render(self.params, v.viewmats[i:i + 1], v.Ks[i:i + 1], W, H, sh_degree, mode)
        meta["means2d"].retain_grad()
        mask = v.masks[i:i + 1]
        loss = photometric_loss(rgb, v.images[i:i + 1], mask, c.lambda_ssim)
        terms = {"photo": loss.item()}
        if c.depth_guidance:
            if v.depths is not None and c.lambda_depth > 0:
                ld = depth_log_l1(depth, v.depths[i:i + 1], mask)
                loss = loss + c.lambda_depth * ld
                terms["depth"] = ld.item()
            if c.lambda_tv > 0:
                ltv = depth_tv(depth)
                loss = loss + c.lambda_tv * ltv
                terms["tv"] = ltv.item()
        loss.backward()
        report = step_post_backward(self.step, self.params, self.optimizers, self.dstate, meta,
                                    self.scene_scale, c.densify, self.gen)
        for o in self.optimizers.values():
            o.step()
            o.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.params["quats"].data = torch.nn.functional.normalize(self.params["quats"].data, dim=-1)
        self.step += 1
        terms.update(loss=loss.item(), n=int(self.params["means"].shape[0]), **report)
        return terms

    def train(self, save_checkpoint: Callable[[dict], None] | None = None,
              check_cancelled: Callable[[], None] | None = None, progress: Callable[[float, str], None] | None = None,
              show_bar: bool = True):
        """Train until ``cfg.iterations``, checkpointing every ``cfg.checkpoint_every`` steps."""
        c = self.cfg
        bar = tqdm(total=c.iterations, initial=self.step, desc="stage", disable=not show_bar, leave=False)
        while self.step < c.iterations:
            terms = self.train_step()
            if self.step % 10 == 0 or self.step == c.iterations:
                self.history.append({"step": self.step, **{k: terms[k] for k in ("loss", "n")}})
                bar.set_postfix(loss=f"{terms['loss']:.4f}", gaussians=terms["n"])
                if progress:
                    progress(self.step / c.iterations, f"loss {terms['loss']:.4f}, {terms['n']} Gaussians")
            bar.update(1)
            if check_cancelled:
                check_cancelled()
            if save_checkpoint and c.checkpoint_every and self.step % c.checkpoint_every == 0 and self.step < c.iterations:
                save_checkpoint(self.state_dict())
        bar.close()
        return self.params


def to_gaussian_set(params) -> GaussianSet:
    """The trained parameter dict (gsplat trainer keys) as a detached :class:`GaussianSet`."""
    p = {k: v.detach() for k, v in params.items()}
    return GaussianSet(means=p["means"], quats=p["quats"], log_scales=p["scales"], opacity_logits=p["opacities"],
                       sh0=p["sh0"], shN=p["shN"])


def from_gaussian_set(gs: GaussianSet) -> dict[str, torch.Tensor]:
    """A :class:`GaussianSet` as the parameter dict that :func:`render` takes (not trainable)."""
    return {"means": gs.means, "quats": gs.quats, "scales": gs.log_scales, "opacities": gs.opacity_logits,
            "sh0": gs.sh0, "shN": gs.shN}
