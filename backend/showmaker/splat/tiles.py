"""Gaussian-tile intersections, sorted by (image, tile, depth) like gsplat's ``isect_tiles`` +
``isect_offset_encode``, with one extra exact cull: a pair is dropped when the Gaussian's alpha >= 1/255
ellipse misses the rectangle spanned by the tile's pixel centres (the image is unchanged; there is just
less work).

Splats are "flat": M projected Gaussians (M = C * N unpacked, or nnz packed), each with an image id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

_CULL_MARGIN = 1e-3  # slack on sigma so that float rounding never drops a pair that contributes


@dataclass
class TileIntersections:
    """Sorted Gaussian-tile pairs.

    isect_ids [P] int64: gsplat's key (image << (32 + tile_bits)) | (tile << 32) | depth bits, ascending.
    flatten_ids [P] int32: the splat (row of the flat arrays) of each pair.
    isect_offsets [I, tile_height, tile_width] int32: index of each tile's first pair.
    tiles_per_gauss [M] int32: pairs per splat (after the cull).
    """

    isect_ids: Tensor
    flatten_ids: Tensor
    isect_offsets: Tensor
    tiles_per_gauss: Tensor
    tile_size: int
    tile_width: int
    tile_height: int


def _ellipse_x_range(conics: Tensor, tau: Tensor, dy_lo: Tensor, dy_hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x-extent of the ellipse a dx^2 + 2 b dx dy + c dy^2 <= 2 tau within the band dy in [dy_lo, dy_hi].

    conics [R, 3] (positive definite), tau, bounds [R]. Returns (lo, hi, hit) [R]: dx in [lo, hi] holds every
    point of the ellipse inside the band; hit is False when the band misses the ellipse. The right end
    (-b dy + sqrt(2 a tau - det dy^2)) / a is concave in dy, so its maximum over the band is at its stationary
    point dy = -b sqrt(2 tau / (det c)) clamped into the band; the left end mirrors it.
    """
    a, b, c = conics.unbind(-1)
    det = a * c - b * b
    half = torch.sqrt(2 * tau * a / det)  # the ellipse's dy half-extent
    lo_y, hi_y = torch.maximum(dy_lo, -half), torch.minimum(dy_hi, half)
    stat = b * torch.sqrt(2 * tau / (det * c))

    def end(dy, sign):
        return (-b * dy + sign * torch.sqrt(torch.clamp_min(2 * a * tau - det * dy * dy, 0))) / a

    hi = end(torch.clamp(-stat, lo_y, hi_y), 1.0)
    lo = end(torch.clamp(stat, lo_y, hi_y), -1.0)
    return lo, hi, lo_y <= hi_y


def _spread(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For items with ``counts`` [V]: (item index, rank within the item) of each of sum(counts) entries, as
    int32 (these are the largest arrays of the rasterizer)."""
    i32 = dict(dtype=torch.int32, device=counts.device)
    item = torch.repeat_interleave(torch.arange(len(counts), **i32), counts)
    starts = (torch.cumsum(counts, 0) - counts).to(torch.int32)
    return item, torch.arange(len(item), **i32) - starts.index_select(0, item)


@torch.no_grad()
def intersect_tiles(
    means2d: Tensor,  # [M, 2]
    radii: Tensor,  # [M, 2] int
    depths: Tensor,  # [M]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    image_ids: Tensor,  # [M] int64
    n_images: int,
    width: int,
    height: int,
    tile_size: int = 16,
) -> TileIntersections:
    """All (splat, tile) pairs whose tile lies in the splat's box [mean - radius, mean + radius] (tile
    ranges as gsplat: floor / ceil of mean/tile_size -/+ radius/tile_size, clamped to the grid) and whose
    ellipse {alpha >= 1/255} reaches the rectangle of the tile's pixel centres, sorted by image, tile, then
    depth (ties: splat order). The ellipse is cut per tile row, so large splats cost per row, not per tile."""
    ts = tile_size
    tw, th = math.ceil(width / ts), math.ceil(height / ts)
    tile_bits = (tw * th).bit_length()
    M = means2d.shape[0]
    vis = ((radii > 0).all(-1)).nonzero().squeeze(1)
    depth_bits = depths.float().contiguous().view(torch.int32).long() & 0xFFFFFFFF  # monotone for depth > 0
    vis = vis[torch.argsort(depths[vis], stable=True)]  # pairs are generated front to back
    mean, rad = means2d[vis].float(), radii[vis].float()
    lo_t = torch.floor(mean / ts - rad / ts).clamp(min=0).long()
    hi_t = torch.ceil(mean / ts + rad / ts).long()
    lo_t[:, 0].clamp_(max=tw)
    lo_t[:, 1].clamp_(max=th)
    hi_t[:, 0].clamp_(min=0, max=tw)
    hi_t[:, 1].clamp_(min=0, max=th)

    # One entry per (splat, tile row): the tile columns its ellipse reaches within that row's pixel centres.
    row_of, rank = _spread((hi_t[:, 1] - lo_t[:, 1]).clamp(min=0))
    ty = lo_t[row_of, 1] + rank
    g = vis[row_of]
    m = mean[row_of]
    tau = torch.log(opacities[g].float() / ALPHA_THRESHOLD) + _CULL_MARGIN
    y_lo = (ty * ts).float() + 0.5
    y_hi = torch.clamp_max(ty * ts + ts, height).float() - 0.5
    dx_lo, dx_hi, hit = _ellipse_x_range(conics[g].float(), tau, m[:, 1] - y_hi, m[:, 1] - y_lo)
    # pixel centres x = mean.x - dx in [mean.x - dx_hi, mean.x - dx_lo]; tile tx holds [tx ts + 0.5, tx ts + ts - 0.5]
    tx_lo = torch.maximum(torch.ceil((m[:, 0] - dx_hi - ts + 0.5) / ts).long(), lo_t[row_of, 0])
    tx_hi = torch.minimum(torch.floor((m[:, 0] - dx_lo - 0.5) / ts).long() + 1, hi_t[row_of, 0])

    # Pairs come front to back, so a stable sort by (image, tile) leaves each tile's list in depth order.
    pair_row, rank = _spread(torch.where(hit, tx_hi - tx_lo, 0).clamp(min=0))
    key_type = torch.int32 if n_images << tile_bits < 2 ** 31 else torch.int64
    row_key = ((image_ids[g] << tile_bits) | (ty * tw + tx_lo)).to(key_type)  # (image << tile_bits) | tile
    keys, order = torch.sort(row_key.index_select(0, pair_row) + rank.to(key_type), stable=True)
    flatten_ids = g.int().index_select(0, pair_row.index_select(0, order))
    keys = keys.long()
    isect_ids = (keys << 32) | depth_bits.index_select(0, flatten_ids)
    per_tile = torch.bincount(keys, minlength=n_images << tile_bits).view(n_images, -1)[:, : tw * th].flatten()
    offsets = (torch.cumsum(per_tile, 0) - per_tile).to(torch.int32).reshape(n_images, th, tw)
    tiles_per_gauss = torch.bincount(flatten_ids, minlength=M).to(torch.int32)
    return TileIntersections(isect_ids, flatten_ids, offsets, tiles_per_gauss, ts, tw, th)
