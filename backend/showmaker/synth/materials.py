"""Blender shader node materials of the synthetic set (needs ``bpy``).

Tiled materials read texture coordinates from the mesh's UV map (metres along each face) and their base
tint from the ``tint`` colour attribute (linear RGB), and add a slow, unique world-space variation so that
no two patches of wall or floor look the same to a feature matcher.
"""
from __future__ import annotations

import bpy
import numpy as np

__all__ = ["MATERIALS", "actor_material", "image_material", "srgb_to_linear", "stage_material"]


def srgb_to_linear(c):
    """sRGB-encoded values in [0, 1] (any shape) -> linear (IEC 61966-2-1)."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class _Graph:
    """Small helper to build a node tree: ``g.node(type, **inputs)`` creates and wires a node."""

    def __init__(self, mat: bpy.types.Material):
        self.nt = mat.node_tree  # Blender 5 gives every new material a node tree
        self.nt.nodes.clear()

    def node(self, kind: str, props: dict | None = None, **inputs):
        n = self.nt.nodes.new(kind)
        for k, v in (props or {}).items():
            setattr(n, k, v)
        for k, v in inputs.items():
            sock = n.inputs[k.replace("_", " ")]
            if isinstance(v, bpy.types.NodeSocket):
                self.nt.links.new(v, sock)
            else:
                sock.default_value = v
        return n

    def math(self, op: str, a, b):
        """A binary math node ``op(a, b)`` on sockets or numbers; returns its output socket."""
        n = self.nt.nodes.new("ShaderNodeMath")
        n.operation = op
        for sock, v in zip(n.inputs[:2], (a, b)):
            if isinstance(v, bpy.types.NodeSocket):
                self.nt.links.new(v, sock)
            else:
                sock.default_value = v
        return n.outputs[0]

    def mix(self, a, b, fac, blend: str = "MIX"):
        """Mix two colours (sockets or RGBA tuples) by ``fac``."""
        n = self.nt.nodes.new("ShaderNodeMix")
        n.data_type, n.blend_type = "RGBA", blend
        for sock, v in ((n.inputs[0], fac), (n.inputs[6], a), (n.inputs[7], b)):
            if isinstance(v, bpy.types.NodeSocket):
                self.nt.links.new(v, sock)
            else:
                sock.default_value = v
        return n.outputs[2]

    def output(self, color, roughness: float = 0.6):
        bsdf = self.node("ShaderNodeBsdfPrincipled", Base_Color=color, Roughness=roughness)
        self.node("ShaderNodeOutputMaterial", Surface=bsdf.outputs[0])

    def uv(self):
        return self.node("ShaderNodeUVMap", {"uv_map": "UVMap"}).outputs[0]

    def tint(self):
        return self.node("ShaderNodeAttribute", {"attribute_name": "tint"}).outputs["Color"]

    def variation(self, color, amount: float = 0.3):
        """Multiply ``color`` by a slow world-space noise in [1 - amount/2, 1 + amount/2]."""
        pos = self.node("ShaderNodeTexCoord").outputs["Object"]
        noise = self.node("ShaderNodeTexNoise", Vector=pos, Scale=1.3, Detail=4.0).outputs["Fac"]
        f = self.math("MULTIPLY_ADD", noise, amount)
        f = self.math("ADD", f, 1.0 - amount)  # noise is centred near 0.5
        return self.mix(color, self.node("ShaderNodeCombineColor", Red=f, Green=f, Blue=f).outputs[0], 1.0,
                        "MULTIPLY")


def _wood_floor(g: _Graph):
    uv, tint = g.uv(), g.tint()
    dark = g.mix(tint, (0.55, 0.5, 0.45, 1.0), 1.0, "MULTIPLY")
    brick = g.node("ShaderNodeTexBrick", {"offset": 0.37, "offset_frequency": 1}, Vector=uv, Color1=tint, Color2=dark,
                   Mortar=(0.05, 0.03, 0.02, 1.0), Scale=1.0, Mortar_Size=0.004, Brick_Width=1.1, Row_Height=0.16,
                   Bias=0.0)
    grain = g.node("ShaderNodeTexWave", {"wave_type": "BANDS", "bands_direction": "X"}, Vector=uv, Scale=4.0,
                   Distortion=8.0, Detail=3.0).outputs["Fac"]
    col = g.mix(brick.outputs["Color"], (0.25, 0.15, 0.08, 1.0), g.math("MULTIPLY", grain, 0.35))
    g.output(g.variation(col), 0.45)


def _wallpaper(g: _Graph):
    uv, tint = g.uv(), g.tint()
    stripes = g.node("ShaderNodeTexWave", {"wave_type": "BANDS", "bands_direction": "X", "wave_profile": "SAW"},
                     Vector=uv, Scale=2.2).outputs["Fac"]
    dots = g.node("ShaderNodeTexVoronoi", {"feature": "F1"}, Vector=uv, Scale=9.0, Randomness=0.7)
    flower = g.math("LESS_THAN", dots.outputs["Distance"], 0.18)
    accent = g.mix(tint, (0.35, 0.12, 0.1, 1.0), 0.6)
    col = g.mix(tint, g.mix(tint, (0.9, 0.9, 0.85, 1.0), 0.5), g.math("GREATER_THAN", stripes, 0.8))
    col = g.mix(col, g.mix(accent, dots.outputs["Color"], 0.35), flower)
    g.output(g.variation(col, 0.4), 0.8)


def _fabric(g: _Graph):
    uv, tint = g.uv(), g.tint()
    weave = g.node("ShaderNodeTexNoise", Vector=uv, Scale=35.0, Detail=2.0).outputs["Fac"]
    col = g.mix(tint, (0.0, 0.0, 0.0, 1.0), g.math("MULTIPLY", weave, 0.35))
    g.output(g.variation(col, 0.35), 0.9)


def _pattern(g: _Graph):
    uv, tint = g.uv(), g.tint()
    check = g.node("ShaderNodeTexChecker", Vector=uv, Color1=tint, Color2=(0.9, 0.85, 0.7, 1.0), Scale=12.0)
    g.output(check.outputs["Color"], 0.8)


def _wood(g: _Graph):
    uv, tint = g.uv(), g.tint()
    grain = g.node("ShaderNodeTexWave", {"wave_type": "BANDS", "bands_direction": "X"}, Vector=uv, Scale=6.0,
                   Distortion=10.0, Detail=4.0).outputs["Fac"]
    col = g.mix(tint, (0.1, 0.05, 0.02, 1.0), g.math("MULTIPLY", grain, 0.45))
    g.output(g.variation(col, 0.25), 0.4)


def _painted(g: _Graph):
    g.output(g.variation(g.tint(), 0.2), 0.5)


def _rug(g: _Graph):
    uv, tint = g.uv(), g.tint()
    magic = g.node("ShaderNodeTexMagic", {"turbulence_depth": 3}, Vector=uv, Scale=2.5, Distortion=1.5)
    col = g.mix(tint, magic.outputs["Color"], 0.55)
    g.output(g.variation(col, 0.2), 0.95)


#: Tiled stage materials by name: ``builder(graph)`` fills a new material's node tree.
MATERIALS = {"wood_floor": _wood_floor, "wallpaper": _wallpaper, "fabric": _fabric, "pattern": _pattern,
             "wood": _wood, "painted": _painted, "rug": _rug}


def stage_material(name: str) -> bpy.types.Material:
    """A new material built by ``MATERIALS[name]``."""
    mat = bpy.data.materials.new(name)
    MATERIALS[name](_Graph(mat))
    return mat


def image_material(name: str, pixels: np.ndarray) -> bpy.types.Material:
    """A matte material showing ``pixels`` [H, W, 3] sRGB in [0, 1] (row 0 at the top) on UVs [0, 1]."""
    h, w = pixels.shape[:2]
    img = bpy.data.images.new(name, w, h, alpha=False)
    rgba = np.concatenate([pixels[::-1], np.ones((h, w, 1), pixels.dtype)], -1)
    img.pixels.foreach_set(rgba.astype(np.float32).ravel())
    img.pack()
    mat = bpy.data.materials.new(name)
    g = _Graph(mat)
    tex = g.node("ShaderNodeTexImage", {"image": img, "interpolation": "Linear"}, Vector=g.uv())
    g.output(tex.outputs["Color"], 0.7)
    return mat


def actor_material(name: str, srgb: tuple[float, float, float], roughness: float) -> bpy.types.Material:
    """A plain matte material of sRGB colour ``srgb`` with a faint cloth/skin noise."""
    mat = bpy.data.materials.new(name)
    g = _Graph(mat)
    lin = tuple(srgb_to_linear(srgb)) + (1.0,)
    pos = g.node("ShaderNodeTexCoord").outputs["Object"]
    noise = g.node("ShaderNodeTexNoise", Vector=pos, Scale=60.0, Detail=1.0).outputs["Fac"]
    col = g.mix(lin, (0.0, 0.0, 0.0, 1.0), g.math("MULTIPLY", noise, 0.15))
    g.output(col, roughness)
    return mat
