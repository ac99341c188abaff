"""3D Gaussian splatting core: rasterization (gsplat on CUDA, a vectorised torch rasterizer elsewhere),
spherical harmonics, the Gaussian set and its standard 3DGS PLY files."""
from .gaussians import GaussianSet
from .ply import load_ply, save_ply
from .rendering import rasterization

__all__ = ["GaussianSet", "load_ply", "rasterization", "save_ply"]
