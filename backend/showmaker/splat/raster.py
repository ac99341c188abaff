"""Tile-based alpha compositing of projected Gaussians in vectorised torch, with a hand-written backward.

The CPU counterpart of gsplat's ``rasterize_to_pixels`` (classic 3DGS blending, gsplat 1.5.3 cut-offs):
front to back over a tile's depth-sorted Gaussians, alpha = min(0.999, opacity * exp(-sigma)) with
sigma = 0.5 (a dx^2 + c dy^2) + b dx dy and (dx, dy) = mean2d - pixel centre; alpha < 1/255 is skipped; a
pixel stops before the Gaussian that would bring its transmittance T to 1e-4 or below.

Work is organised in rounds: a chunk of tiles (sorted by pair count, so they finish together) takes the
next ``pairs_per_round`` Gaussians of each of its tiles per round, as dense [tiles, K, pixels] blocks in
preallocated buffers: no Python loop over tiles, memory bounded by the chunk. The transmittance before the
round is carried per pixel, which makes early termination exact: T after each Gaussian is a running product
(monotone), so "blended" = (T after > 1e-4) is a prefix mask; a pixel's carried T is zeroed once it is done,
and a tile leaves the chunk when all its pixels are done or its list is exhausted. Weights are
w_k = alpha_k T_k, and the final T is T_in - sum(w).

The backward pass replays the same rounds front to back. With q_k = colour_k . dL/dC and
Z = C_out . dL/dC - T_final dL/dA per pixel, dL/dalpha_k = T_k q_k - (Z - sum_{j<=k} w_j q_j) / (1 - alpha_k).
The per-pair sums over pixels of dL/dsigma times 1, dx, dy, dx^2, dy^2, dx dy (all the conic and 2D-mean
gradients need) come from one matrix product with the tile's pixel-coordinate monomials.

Speed notes (CPU): exp is evaluated as exp2 (three times faster in torch) with log2(e) folded into the
per-row and per-column terms; colour sums are [D, K] x [K, pixels] matrix products.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .projection import ALPHA_THRESHOLD, MAX_ALPHA, TRANSMITTANCE_THRESHOLD
from .tiles import TileIntersections

# F.threshold_(x, t, 0) keeps x > t: with t the float32 just below a value v, it keeps x >= v.
_BELOW_ALPHA_THRESHOLD = float(np.nextafter(np.float32(ALPHA_THRESHOLD), np.float32(0)))
_MINUS_MAX_ALPHA = -float(np.float32(MAX_ALPHA))
_LOG2E = 1.0 / math.log(2.0)

PAIRS_PER_ROUND = 32  # Gaussians per tile per round
CHUNK_ELEMENTS = 1 << 20  # size of one [tiles, K, pixels] float32 work buffer (4 MiB)


@dataclass
class RasterPlan:
    """Tiles to render, grouped into chunks (all index tensors int64).

    tile_index [A]: global tile id (image * tiles_per_image + row * tile_width + col) of each non-empty tile,
    by descending pair count; start / count [A]: its range in ``flatten_ids``; x0 / y0 [A]: its top-left
    pixel; chunks: (begin, end) ranges of A processed together.
    """

    flatten_ids: Tensor
    tile_index: Tensor
    start: Tensor
    count: Tensor
    x0: Tensor
    y0: Tensor
    chunks: list[tuple[int, int]]
    n_images: int
    width: int
    height: int
    tile_size: int
    tile_width: int
    tile_height: int
    pairs_per_round: int

    @classmethod
    def build(cls, isect: TileIntersections, n_images: int, width: int, height: int,
              pairs_per_round: int = PAIRS_PER_ROUND, chunk_elements: int = CHUNK_ELEMENTS) -> "RasterPlan":
        ts, tw, th = isect.tile_size, isect.tile_width, isect.tile_height
        offsets = isect.isect_offsets.flatten().long()
        ends = torch.cat([offsets[1:], offsets.new_tensor([len(isect.flatten_ids)])])
        counts = ends - offsets
        tiles = torch.argsort(counts, descending=True, stable=True)
        tiles = tiles[: int((counts > 0).sum())]
        local = tiles % (tw * th)
        n_per_chunk = max(1, chunk_elements // (pairs_per_round * ts * ts))
        chunks = [(b, min(b + n_per_chunk, len(tiles))) for b in range(0, len(tiles), n_per_chunk)]
        return cls(isect.flatten_ids, tiles, offsets[tiles], counts[tiles], (local % tw) * ts, (local // tw) * ts,
                   chunks, n_images, width, height, ts, tw, th, pairs_per_round)

    @property
    def n_tiles(self) -> int:
        return self.n_images * self.tile_width * self.tile_height

    def buffer_size(self) -> int:
        """Elements of one work buffer: the largest chunk's [tiles, K, pixels]."""
        return max([(e - b) * self.pairs_per_round * self.tile_size ** 2 for b, e in self.chunks] + [1])


def _rows(table: Tensor, index: Tensor) -> Tensor:
    """table[index] for an integer index of any shape (index_select: much faster than indexing on CPU)."""
    return table.index_select(0, index.flatten()).view(*index.shape, *table.shape[1:])


class _Tables:
    """Per-splat inputs [M, ...] as float32, plus one padding row (index M: opacity 0, so alpha 0) that fills
    the ragged end of a tile's list. ``colors1`` has an extra channel of ones (its blend is sum(w))."""

    def __init__(self, means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor):
        self.M = M = opacities.numel()
        def pad(t: Tensor, d: int) -> Tensor:
            return torch.cat([t.detach().float().reshape(M, d), t.new_zeros(1, d, dtype=torch.float32)])

        self.means2d, self.conics, self.colors = pad(means2d, 2), pad(conics, 3), pad(colors, colors.shape[-1])
        self.colors1 = torch.cat([self.colors, torch.ones_like(self.colors[:, :1])], 1)
        self.log_opac = torch.log(pad(opacities, 1).squeeze(1))  # padding row: -inf


@dataclass
class _Round:
    """One round of a chunk: n active tiles x k pairs. ``slot`` [n] indexes the chunk's per-tile state;
    ``fid`` [n, k] the splats (M = padding); ``mx, my`` [n, k] the 2D means relative to the tile centre;
    ``u`` [ts] pixel-centre offsets from the tile centre (the same along x and y); ``t_in`` [n, P] the running
    transmittance before the round (0 where a pixel is done). The consumer sets ``t_out``, the running
    transmittance after the round's last pair (values <= 1e-4 mean done)."""

    slot: Tensor
    fid: Tensor
    mx: Tensor
    my: Tensor
    u: Tensor
    k: int
    t_in: Tensor
    t_out: Tensor | None = None

    @property
    def dx(self) -> Tensor:
        """mean2d.x - pixel centre x, per column: [n, k, ts]."""
        return self.mx[..., None] - self.u

    @property
    def dy(self) -> Tensor:
        """mean2d.y - pixel centre y, per row: [n, k, ts]."""
        return self.my[..., None] - self.u


def _chunk_rounds(plan: RasterPlan, tables: _Tables, begin: int, end: int):
    """Iterate the rounds of the chunk [begin, end) of ``plan``'s tiles (see ``_Round``)."""
    device = tables.means2d.device
    ts, kb = plan.tile_size, plan.pairs_per_round
    rng = torch.arange(ts, device=device)
    x0, y0 = plan.x0[begin:end], plan.y0[begin:end]
    inside = ((y0[:, None, None] + rng[:, None]) < plan.height) & ((x0[:, None, None] + rng[None, :]) < plan.width)
    t_run = inside.reshape(end - begin, ts * ts).float()  # pixels beyond the image start done
    u = rng.float() + (0.5 - ts / 2)
    slot = torch.arange(end - begin, device=device)
    r = 0
    while len(slot):
        tile = slot + begin
        rem = _rows(plan.count, tile) - r * kb
        k = min(kb, int(rem.max()))
        kr = torch.arange(k, device=device)
        pidx = (_rows(plan.start, tile) + r * kb)[:, None] + kr
        fid = _rows(plan.flatten_ids, pidx.clamp_max(len(plan.flatten_ids) - 1))
        fid = torch.where(kr < rem[:, None], fid, tables.M)
        m = _rows(tables.means2d, fid)
        x0, y0 = _rows(plan.x0, tile) + ts / 2, _rows(plan.y0, tile) + ts / 2
        rd = _Round(slot, fid, m[..., 0] - x0[:, None], m[..., 1] - y0[:, None], u, k, t_run)
        yield rd
        t_run = F.threshold(rd.t_out, TRANSMITTANCE_THRESHOLD, 0.0)
        live = (rem > kb) & (t_run.amax(1) > 0)
        slot, t_run = slot[live], t_run[live]
        r += 1


def _alphas(out: Tensor, rd: _Round, con: Tensor, log_opac: Tensor) -> Tensor:
    """Write alpha (clamped at 0.999, 0 below 1/255) into out [n, k, ts*ts] (rows = y, columns = x)."""
    n, k, _ = out.shape
    ts = len(rd.u)
    a, b, c = (con * _LOG2E).unbind(-1)
    dx, dy = rd.dx, rd.dy
    out4 = out.view(n, k, ts, ts)
    row = (log_opac * _LOG2E)[..., None] - 0.5 * c[..., None] * dy * dy  # [n, k, ts]
    torch.add(row[..., :, None], (-0.5 * a[..., None] * dx * dx)[..., None, :], out=out4)
    out4.addcmul_((-b[..., None] * dy)[..., :, None], dx[..., None, :])
    out.exp2_()
    out.clamp_max_(MAX_ALPHA)
    return F.threshold_(out, _BELOW_ALPHA_THRESHOLD, 0.0)


def _transmittance(t_after: Tensor, one_minus: Tensor, t_in: Tensor):
    """t_after[:, j] = t_in * prod_{i<=j} one_minus[:, i] (one_minus and t_after may be the same tensor)."""
    out, factors = t_after.unbind(1), one_minus.unbind(1)
    torch.mul(factors[0], t_in, out=out[0])
    for j in range(1, len(out)):
        torch.mul(factors[j], out[j - 1], out=out[j])


def _prefix_sum_(x: Tensor, first: Tensor):
    """In place x[:, j] = first + sum_{i<=j} x[:, i] along dim 1."""
    cols = x.unbind(1)
    cols[0].add_(first)
    for j in range(1, len(cols)):
        cols[j].add_(cols[j - 1])


def _blended_(t_after: Tensor) -> Tensor:
    """Turn t_after into the blend mask in place: 1 where t_after > 1e-4 (the Gaussian is blended), else 0."""
    return F.threshold_(t_after, TRANSMITTANCE_THRESHOLD, 0.0).sign_()


def _crossing(rd: _Round) -> bool:
    """Whether a pixel of the round reaches T <= 1e-4 (only then the blended mask is not all ones)."""
    return bool(((rd.t_out <= TRANSMITTANCE_THRESHOLD) & (rd.t_in > 0)).any())


def rasterize_forward(plan: RasterPlan, tables: _Tables) -> tuple[Tensor, Tensor]:
    """Blend every tile: -> (colour [n_tiles, P, D] without background, final T [n_tiles, P])."""
    device = tables.means2d.device
    P, D = plan.tile_size ** 2, tables.colors.shape[1]
    out_c = torch.zeros(plan.n_tiles, P, D, device=device)
    out_t = torch.ones(plan.n_tiles, P, device=device)
    w_buf, t_buf = (torch.empty(plan.buffer_size(), device=device) for _ in range(2))
    for begin, end in plan.chunks:
        acc = torch.zeros(end - begin, D + 1, P, device=device)  # colours and sum(w), channels first
        for rd in _chunk_rounds(plan, tables, begin, end):
            n, k = len(rd.slot), rd.k
            w, t_after = (b[: n * k * P].view(n, k, P) for b in (w_buf, t_buf))
            _alphas(w, rd, _rows(tables.conics, rd.fid), _rows(tables.log_opac, rd.fid))
            torch.neg(w, out=t_after).add_(1.0)
            _transmittance(t_after, t_after, rd.t_in)
            w[:, 1:].mul_(t_after[:, :-1])  # w = alpha * T_before
            w[:, 0].mul_(rd.t_in)
            rd.t_out = t_after[:, k - 1].clone()
            if _crossing(rd):
                w.mul_(_blended_(t_after))
            acc.index_add_(0, rd.slot, torch.bmm(_rows(tables.colors1, rd.fid).transpose(1, 2), w))
        tiles = plan.tile_index[begin:end]
        out_c[tiles] = acc[:, :D].transpose(1, 2)
        out_t[tiles] = 1.0 - acc[:, D]
    return out_c, out_t


def _pixel_monomials(u: Tensor) -> Tensor:
    """[ts*ts, 6]: 1, x, y, x^2, y^2, x y of each pixel centre relative to the tile centre (rows = y)."""
    y, x = torch.meshgrid(u, u, indexing="ij")
    x, y = x.flatten(), y.flatten()
    return torch.stack([torch.ones_like(x), x, y, x * x, y * y, x * y], 1)


def rasterize_backward(plan: RasterPlan, tables: _Tables, g_color: Tensor, z: Tensor, absgrad: bool):
    """Gradients of the blend. g_color [n_tiles, P, D] = dL/dC, z [n_tiles, P] = C_out . dL/dC - T dL/dA.

    Returns per-splat (v_means2d [M, 2], v_conics [M, 3], v_colors [M, D], v_opacities [M],
    |v_means2d| summed per pixel [M, 2] or None).
    """
    device = tables.means2d.device
    P, D = plan.tile_size ** 2, tables.colors.shape[1]
    # Per-splat gradients, one row per splat (+ padding): mean2d (2), conic (3), opacity * dL/dopacity (1),
    # colour (D), summed |d mean2d| (2, with absgrad).
    grads = torch.zeros(tables.M + 1, 6 + D + 2 * absgrad, device=device)
    bufs = [torch.empty(plan.buffer_size(), device=device) for _ in range(6)]
    for begin, end in plan.chunks:
        tiles = plan.tile_index[begin:end]
        g_ct, z_c = g_color[tiles].transpose(1, 2).contiguous(), z[tiles].clone()  # [n, D, P], [n, P]
        cum = torch.zeros(end - begin, P, device=device)  # sum of w q over the pairs replayed so far
        for rd in _chunk_rounds(plan, tables, begin, end):
            n, k, fid = len(rd.slot), rd.k, rd.fid
            alpha, d_sigma, one_minus, t_after, t_before, q = (b[: n * k * P].view(n, k, P) for b in bufs)
            con = _rows(tables.conics, fid)
            _alphas(alpha, rd, con, _rows(tables.log_opac, fid))
            torch.neg(alpha, out=d_sigma)  # dalpha/dsigma = -alpha, 0 where clamped at 0.999
            F.threshold_(d_sigma, _MINUS_MAX_ALPHA, 0.0)
            torch.neg(alpha, out=one_minus).add_(1.0)
            _transmittance(t_after, one_minus, rd.t_in)
            t_before[:, 0] = rd.t_in
            t_before[:, 1:] = t_after[:, :-1]
            rd.t_out = t_after[:, k - 1].clone()
            crossing = _crossing(rd)
            w = alpha.mul_(t_before)
            if crossing:
                w.mul_(_blended_(t_after))  # t_after now holds the mask
            g_t = _rows(g_ct, rd.slot)
            torch.bmm(_rows(tables.colors, fid), g_t, out=q)  # q = colour . dL/dC per pixel
            v_col = torch.bmm(w, g_t.transpose(1, 2))  # [n, k, D]
            s = w.mul_(q)  # running sum of w q
            _prefix_sum_(s, _rows(cum, rd.slot))
            cum.index_copy_(0, rd.slot, s[:, k - 1])
            s.sub_(_rows(z_c, rd.slot)[:, None, :]).div_(one_minus).addcmul_(q, t_before)  # dL/dalpha
            if crossing:
                s.mul_(t_after)
            g_sigma = s.mul_(d_sigma)
            pair = [_sigma_grads(g_sigma, rd, con), v_col]
            if absgrad:
                pair.append(_abs_mean2d_grads(g_sigma, rd, con, q))
            grads.index_add_(0, fid.flatten(), torch.cat(pair, -1).flatten(0, 1))
            # A finished pixel has nothing behind it to differentiate: Z - sum(w q) becomes 0 there.
            done = (rd.t_out <= TRANSMITTANCE_THRESHOLD) & (rd.t_in > 0)
            z_c.index_copy_(0, rd.slot, torch.where(done, _rows(cum, rd.slot), _rows(z_c, rd.slot)))
    grads = grads[:-1]
    opac = torch.exp(tables.log_opac[:-1])
    v_op = grads[:, 5] / torch.where(opac > 0, opac, torch.ones_like(opac))
    return grads[:, :2], grads[:, 2:5], grads[:, 6:6 + D], v_op, grads[:, 6 + D:] if absgrad else None


def _sigma_grads(g_sigma: Tensor, rd: _Round, con: Tensor) -> Tensor:
    """Per-pair [n, k, 6] gradients (mean2d x y, conic a b c, opacity * dL/dopacity) from g_sigma = dL/dsigma
    [n, k, ts*ts] per pixel (0 where alpha is clamped, skipped or not blended)."""
    n, k, P = g_sigma.shape
    s0, su, sv, suu, svv, suv = (g_sigma.view(n * k, P) @ _pixel_monomials(rd.u)).view(n, k, 6).unbind(-1)
    mx, my = rd.mx, rd.my
    sx, sy = mx * s0 - su, my * s0 - sv  # sums of g dx, g dy
    sxx = mx * mx * s0 - 2 * mx * su + suu
    syy = my * my * s0 - 2 * my * sv + svv
    sxy = mx * my * s0 - mx * sv - my * su + suv
    a, b, c = con.unbind(-1)
    return torch.stack([a * sx + b * sy, b * sx + c * sy, 0.5 * sxx, sxy, 0.5 * syy, -s0], -1)


def _abs_mean2d_grads(g_sigma: Tensor, rd: _Round, con: Tensor, scratch: Tensor) -> Tensor:
    """Per-pair [n, k, 2] sums over pixels of |dL/dmean2d| (gsplat's absgrad); scratch is a free buffer."""
    n, k, _ = g_sigma.shape
    ts = len(rd.u)
    a, b, c = con.unbind(-1)
    dx, dy = rd.dx, rd.dy
    g4, s4 = g_sigma.view(n, k, ts, ts), scratch.view(n, k, ts, ts)
    out = []
    for p, r in ((a, b), (b, c)):  # per pixel d sigma / d mean = (a dx + b dy, b dx + c dy)
        torch.add((p[..., None] * dx)[..., None, :], (r[..., None] * dy)[..., :, None], out=s4)
        out.append(s4.mul_(g4).abs_().sum((2, 3)))
    return torch.stack(out, -1)


def _to_tiles(img: Tensor, plan: RasterPlan) -> Tensor:
    """[I, H, W, X] -> [n_tiles, ts*ts, X] (zero padded to whole tiles)."""
    I, H, W, X = img.shape
    ts, tw, th = plan.tile_size, plan.tile_width, plan.tile_height
    img = F.pad(img, (0, 0, 0, tw * ts - W, 0, th * ts - H))
    return img.view(I, th, ts, tw, ts, X).permute(0, 1, 3, 2, 4, 5).reshape(I * th * tw, ts * ts, X)


def _from_tiles(tiles: Tensor, plan: RasterPlan) -> Tensor:
    """[n_tiles, ts*ts, X] -> [I, H, W, X]."""
    ts, tw, th = plan.tile_size, plan.tile_width, plan.tile_height
    X = tiles.shape[-1]
    img = tiles.view(plan.n_images, th, tw, ts, ts, X).permute(0, 1, 3, 2, 4, 5).reshape(
        plan.n_images, th * ts, tw * ts, X)
    return img[:, : plan.height, : plan.width].contiguous()


class RasterizeToPixels(torch.autograd.Function):
    """(means2d [M, 2], conics [M, 3], colors [M, D], opacities [M], backgrounds [I, D] | None, plan, absgrad)
    -> (render_colors [I, H, W, D], render_alphas [I, H, W, 1]). Inputs may carry leading dims that flatten
    to M (e.g. [C, N, 2]); their gradients come back in the same shape. With ``absgrad`` the summed
    per-pixel absolute gradient of ``means2d`` is stored as ``means2d.absgrad`` during backward."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, plan: RasterPlan, absgrad: bool):
        tables = _Tables(means2d, conics, colors, opacities)
        c_tiles, t_tiles = rasterize_forward(plan, tables)
        if backgrounds is not None:
            image_of_tile = torch.arange(plan.n_tiles, device=c_tiles.device) // (plan.tile_width * plan.tile_height)
            c_tiles += t_tiles[..., None] * backgrounds.detach().float()[image_of_tile][:, None, :]
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, c_tiles, t_tiles)
        ctx.plan, ctx.absgrad = plan, absgrad
        dtype = means2d.dtype
        return _from_tiles(c_tiles, plan).to(dtype), (1.0 - _from_tiles(t_tiles[..., None], plan)).to(dtype)

    @staticmethod
    def backward(ctx, g_colors, g_alphas):
        means2d, conics, colors, opacities, backgrounds, c_tiles, t_tiles = ctx.saved_tensors
        plan = ctx.plan
        g_c = _to_tiles(g_colors.float(), plan)
        z = (c_tiles * g_c).sum(-1) - t_tiles * _to_tiles(g_alphas.float(), plan)[..., 0]
        tables = _Tables(means2d, conics, colors, opacities)
        v_mean, v_con, v_col, v_op, v_abs = rasterize_backward(plan, tables, g_c, z, ctx.absgrad)
        if v_abs is not None:
            means2d.absgrad = v_abs.reshape(means2d.shape).to(means2d.dtype)
        v_bg = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_bg = (t_tiles[..., None] * g_c).view(plan.n_images, -1, g_c.shape[-1]).sum(1).to(backgrounds.dtype)
        cast = lambda g, like: g.reshape(like.shape).to(like.dtype)  # noqa: E731
        return (cast(v_mean, means2d), cast(v_con, conics), cast(v_col, colors), cast(v_op, opacities), v_bg,
                None, None)
