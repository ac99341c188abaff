"""``GaussianSet``: a set of 3D Gaussians in their stored (pre-activation) form, as 3DGS trains them.

A scene is a union of sets (the stage, one set per actor); composing scenes is concatenation (``cat``).
All tensors share the first dimension N and live on one device; world frame.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .sh import sh_degree_from_bases


@dataclass
class GaussianSet:
    """means [N, 3] world centres; quats [N, 4] rotations (w, x, y, z), any norm; log_scales [N, 3] (scale =
    exp); opacity_logits [N] (opacity = sigmoid); sh0 [N, 1, 3] degree-0 SH; shN [N, K-1, 3] higher bands
    (K = 1, 4, 9 or 16; K-1 = 0 for constant colour). Colour seen from direction d: SH(d) + 0.5."""

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh0: Tensor
    shN: Tensor

    def __post_init__(self):
        n = self.means.shape[0]
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,), "sh0": (n, 1, 3)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"GaussianSet.{name} must be {list(shape)}, got {list(getattr(self, name).shape)}")
        if self.shN.dim() != 3 or self.shN.shape[0] != n or self.shN.shape[2] != 3:
            raise ValueError(f"GaussianSet.shN must be [N, K-1, 3], got {list(self.shN.shape)}")
        sh_degree_from_bases(self.shN.shape[1] + 1)

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """SH degree stored (0-3)."""
        return sh_degree_from_bases(self.shN.shape[1] + 1)

    @property
    def scales(self) -> Tensor:
        """Activated scales [N, 3]."""
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """Activated opacities in (0, 1) [N]."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        """All SH coefficients [N, K, 3] (the ``colors`` argument of ``rasterization`` with ``sh_degree``)."""
        return torch.cat([self.sh0, self.shN], 1)

    def to(self, device) -> "GaussianSet":
        return GaussianSet(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, index) -> "GaussianSet":
        """The subset selected by ``index`` (bool mask [N], integer indices or a slice)."""
        return GaussianSet(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def cat(sets: list["GaussianSet"]) -> "GaussianSet":
        """Concatenate sets of the same SH degree (scene composition)."""
        degrees = {s.sh_degree for s in sets}
        if len(degrees) != 1:
            raise ValueError(f"cannot concatenate Gaussian sets of SH degrees {sorted(degrees)}")
        return GaussianSet(**{f.name: torch.cat([getattr(s, f.name) for s in sets]) for f in fields(GaussianSet)})
