"""Adaptive density control of 3DGS (clone, split, prune, opacity reset), as in 3DGS / gsplat's default
strategy, working on either rasterizer path.

Parameters live in a dict of ``torch.nn.Parameter`` (keys as gsplat's trainer: ``means`` [N, 3],
``quats`` [N, 4] (wxyz), ``scales`` [N, 3] (log), ``opacities`` [N] (logit), ``sh0`` [N, 1, 3],
``shN`` [N, K-1, 3]) with one Adam optimiser per key, so that Gaussians can be added and removed with
their optimiser state kept in step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import quat_to_matrix


@dataclass
class DensifyConfig:
    """Densification schedule and thresholds (gsplat DefaultStrategy defaults; 3DGS paper values).

    grow_grad2d: mean screen-space gradient (in NDC-like units, see ``step_post_backward``) above which a
        Gaussian is cloned (small) or split (large).
    grow_scale3d / prune_scale3d: thresholds on the largest scale, relative to the scene scale.
    prune_opa: Gaussians less opaque than this are removed.
    refine_start / refine_stop / refine_every: iterations between which densification runs, and how often.
    reset_every: opacity reset period (0 disables). max_gaussians: hard cap (never grow past it).
    """

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    max_gaussians: int = 3_000_000


class DensifyState:
    """Running statistics of the screen-space gradients between refinements."""

    def __init__(self, n: int, device):
        self.grad2d = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)

    def select(self, keep: torch.Tensor):
        self.grad2d, self.count = self.grad2d[keep], self.count[keep]

    def extend(self, n: int):
        """Append zeroed statistics for ``n`` new Gaussians."""
        self.grad2d = torch.cat([self.grad2d, self.grad2d.new_zeros(n)])
        self.count = torch.cat([self.count, self.count.new_zeros(n)])

    def reset(self):
        self.grad2d.zero_()
        self.count.zero_()


def make_optimizers(params: dict[str, torch.nn.Parameter], lrs: dict[str, float]) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter (eps 1e-15 as 3DGS)."""
    return {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in params.items()}


@torch.no_grad()
def _edit_params(params, optimizers, fn):
    """Replace every parameter p by ``fn(p)`` and apply the same row edit to its Adam moments."""
    for k, p in list(params.items()):
        new = torch.nn.Parameter(fn(p.data), requires_grad=p.requires_grad)
        opt = optimizers[k]
        state = opt.state.pop(p, None)
        opt.param_groups[0]["params"] = [new]
        if state is not None:
            for sk in ("exp_avg", "exp_avg_sq"):
                state[sk] = fn(state[sk])
            opt.state[new] = state
        params[k] = new


@torch.no_grad()
def duplicate(params, optimizers, state: DensifyState, mask: torch.Tensor):
    """Clone the Gaussians in ``mask`` [N] bool (appended at the end; their Adam moments start at 0)."""
    idx = mask.nonzero().squeeze(1)
    n_old = mask.shape[0]
    _edit_params(params, optimizers, lambda t: torch.cat([t, t[idx]]))
    for k, p in params.items():
        st = optimizers[k].state.get(p)
        if st:
            for sk in ("exp_avg", "exp_avg_sq"):
                st[sk][n_old:] = 0
    state.extend(len(idx))


@torch.no_grad()
def split(params, optimizers, state: DensifyState, mask: torch.Tensor, n_split: int = 2,
          generator: torch.Generator | None = None):
    """Replace each Gaussian in ``mask`` by ``n_split`` samples drawn from it, scales / 1.6 (3DGS).
    ``generator`` (a CPU generator) makes the samples reproducible."""
    idx = mask.nonzero().squeeze(1)
    keep = ~mask
    scales = torch.exp(params["scales"][idx])  # [S, 3]
    R = quat_to_matrix(params["quats"][idx])  # [S, 3, 3]
    offsets = torch.einsum("sij,nsj->nsi", R, scales * torch.randn(n_split, len(idx), 3, generator=generator).to(scales.device))
    new_means = (params["means"][idx] + offsets).reshape(-1, 3)
    new_scales = torch.log(scales / 1.6).repeat(n_split, 1)

    n_keep = int(keep.sum())
    for k in list(params.keys()):
        p = params[k]
        if k == "means":
            extra = new_means
        elif k == "scales":
            extra = new_scales
        else:
            extra = p.data[idx].repeat(n_split, *([1] * (p.dim() - 1)))
        new = torch.nn.Parameter(torch.cat([p.data[keep], extra]), requires_grad=p.requires_grad)
        opt = optimizers[k]
        st = opt.state.pop(p, None)
        opt.param_groups[0]["params"] = [new]
        if st:
            for sk in ("exp_avg", "exp_avg_sq"):
                v = st[sk]
                st[sk] = torch.cat([v[keep], torch.zeros_like(v[idx]).repeat(n_split, *([1] * (v.dim() - 1)))])
            opt.state[new] = st
        params[k] = new
    state.select(keep)
    state.extend(n_split * len(idx))
    assert params["means"].shape[0] == n_keep + n_split * len(idx)


@torch.no_grad()
def remove(params, optimizers, state: DensifyState, mask: torch.Tensor):
    """Remove the Gaussians in ``mask`` [N] bool."""
    keep = ~mask
    _edit_params(params, optimizers, lambda t: t[keep])
    state.select(keep)


@torch.no_grad()
def reset_opacity(params, optimizers, value: float):
    """Clamp every opacity to at most ``value`` (activated), zeroing that parameter's Adam moments."""
    logit = torch.logit(torch.tensor(value)).item()
    p = params["opacities"]
    p.data.clamp_(max=logit)
    st = optimizers["opacities"].state.get(p)
    if st:
        st["exp_avg"].zero_()
        st["exp_avg_sq"].zero_()


@torch.no_grad()
def step_post_backward(
    step: int, params, optimizers, state: DensifyState, meta: dict, scene_scale: float, cfg: DensifyConfig,
    generator: torch.Generator | None = None,
) -> dict:
    """Accumulate screen-space gradients after ``loss.backward()`` and refine on schedule.

    ``meta`` is the rasterizer's meta with ``means2d`` (its ``.grad`` set: call ``retain_grad`` before
    backward), ``radii``, ``width``, ``height``, ``n_cameras``. Returns counts of what was done.
    """
    if step >= cfg.refine_stop:
        return {}
    g = meta["means2d"].grad
    if g is not None:
        g = g.detach().clone()
        g[..., 0] *= meta["width"] / 2.0 * meta["n_cameras"]
        g[..., 1] *= meta["height"] / 2.0 * meta["n_cameras"]
        radii = meta["radii"]
        visible = (radii > 0).all(-1) if radii.dim() == 3 else radii > 0  # [C, N]
        norms = g.norm(dim=-1) * visible  # [C, N]
        state.grad2d += norms.sum(0)
        state.count += visible.sum(0).float()
    report = {}
    if step > cfg.refine_start and step % cfg.refine_every == 0:
        avg = state.grad2d / state.count.clamp_min(1)
        big_grad = avg > cfg.grow_grad2d
        max_scale = torch.exp(params["scales"]).max(-1).values
        is_small = max_scale <= cfg.grow_scale3d * scene_scale
        room = max(cfg.max_gaussians - params["means"].shape[0], 0)
        clone_mask = big_grad & is_small
        split_mask = big_grad & ~is_small
        if int(clone_mask.sum()) + int(split_mask.sum()) > room:  # cap: keep the largest gradients
            order = torch.argsort(torch.where(big_grad, avg, -1.0), descending=True)
            allowed = torch.zeros_like(big_grad)
            allowed[order[: room // 2]] = True
            clone_mask &= allowed
            split_mask &= allowed
        n_clone, n_split = int(clone_mask.sum()), int(split_mask.sum())
        duplicate(params, optimizers, state, clone_mask)
        split_mask = torch.cat([split_mask, torch.zeros(n_clone, dtype=torch.bool, device=split_mask.device)])
        split(params, optimizers, state, split_mask, generator=generator)
        opac = torch.sigmoid(params["opacities"])
        prune = opac < cfg.prune_opa
        # Huge Gaussians (world space) go too; 3DGS starts this after the first opacity reset, and from the
        # start when resets are off (short runs), so that none grows without bound.
        if not cfg.reset_every or step > cfg.reset_every:
            prune |= torch.exp(params["scales"]).max(-1).values > cfg.prune_scale3d * scene_scale
        remove(params, optimizers, state, prune)
        state.reset()
        report = {"cloned": n_clone, "split": n_split, "pruned": int(prune.sum())}
    if cfg.reset_every and step > 0 and step % cfg.reset_every == 0:
        reset_opacity(params, optimizers, 2 * cfg.prune_opa)
    return report
