"""The torch rasterizer against the brute-force reference (values and gradients), edge cases, meta layout,
the shared garden data and, where CUDA and gsplat exist, gsplat itself.

Tolerances: images to 1e-4 absolute (float32 blending of O(100) terms is ~1e-6; 1e-4 leaves room for the
few pixels whose order of float operations differs). Gradients: our float32 against the reference's float64
autograd, to 1e-4 of the largest gradient of each tensor plus 1e-3 relative: a sum over ~1e3 pixel
contributions in float32 carries ~1e-6 relative error per term and the front-to-back backward divides by
(1 - alpha) >= 1e-3; observed errors are ~1e-6 of the largest gradient, while the bugs this caught gave
errors of 1e-4 to 1 of it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from showmaker.splat import rasterization
from showmaker.splat.raster import RasterizeToPixels, RasterPlan
from showmaker.splat.reference import reference_rasterization
from showmaker.splat.tiles import intersect_tiles

GARDEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsplat_test_garden.npz"
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def make_scene(n=70, cameras=2, width=37, height=29, seed=0, scale=0.3):
    """Random Gaussians in front of ``cameras`` cameras; non-square image, principal points off centre,
    a different focal length and position per camera."""
    g = torch.Generator().manual_seed(seed)
    viewmats = torch.eye(4).repeat(cameras, 1, 1)
    viewmats[:, 0, 3] = torch.linspace(0, 0.4, cameras)
    Ks = torch.tensor([[30.0, 0, 21.5], [0, 33.0, 12.0], [0, 0, 1]]).repeat(cameras, 1, 1)
    Ks[:, 0, 0] += torch.arange(cameras) * 4.0
    return {
        "means": torch.randn(n, 3, generator=g) * 0.7 + torch.tensor([0.0, 0.0, 3.0]),
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.rand(n, 3, generator=g) * scale + 0.02,
        "opacities": torch.rand(n, generator=g),
        "colors": torch.rand(n, 3, generator=g),
        "viewmats": viewmats, "Ks": Ks, "width": width, "height": height,
    }


def run(fn, scene, dtype=torch.float32, names=PARAMS + ("viewmats",), seed=1, **kw):
    """Render ``scene`` with ``fn`` in ``dtype``; backpropagate a random linear function of (colours, alphas).

    Tensors in ``kw`` are differentiated too. Returns (colours, alphas, meta, gradients by name, with
    "means2d" read from meta["means2d"] after ``retain_grad``)."""
    leaves = {k: v.clone().to(dtype).requires_grad_(k in names) for k, v in scene.items() if torch.is_tensor(v)}
    extra = {k: v.clone().to(dtype).requires_grad_() for k, v in kw.items() if torch.is_tensor(v)}
    kw = {k: v for k, v in kw.items() if not torch.is_tensor(v)}
    out, alpha, meta = fn(**leaves, width=scene["width"], height=scene["height"], **extra, **kw)
    grads = {}
    if out.requires_grad:
        if meta["means2d"].requires_grad:
            meta["means2d"].retain_grad()
        g = torch.Generator().manual_seed(seed)
        loss = (out * torch.rand(out.shape, generator=g).to(out.device, dtype)).sum()
        (loss + (alpha * torch.rand(alpha.shape, generator=g).to(out.device, dtype)).sum()).backward()
        grads = {k: leaves[k].grad for k in names} | {k: v.grad for k, v in extra.items()}
        if meta["means2d"].requires_grad:
            grads["means2d"] = meta["means2d"].grad
    return out.detach(), alpha.detach(), meta, grads


def assert_images_close(a, b, atol=1e-4):
    assert a.shape == b.shape
    err = (a.double() - b.double()).abs().max().item()
    assert err <= atol, f"max abs error {err:.3g}"


def assert_grads_close(ours, ref):
    for k, r in ref.items():
        if r is None and ours[k] is None:  # an input the render does not use (colours for depth modes)
            continue
        o, r = ours[k].double(), r.double()
        if k == "means2d":  # compare where the Gaussian is visible (elsewhere ours is 0, the reference's anything)
            visible = o.abs().sum(-1, keepdim=True) > 0
            o, r = o * visible, r * visible
        scale = r.abs().max().item()
        assert scale > 0, f"{k}: no gradient reached the reference"
        torch.testing.assert_close(o, r, atol=1e-4 * scale, rtol=1e-3, msg=lambda m: f"gradient of {k}: {m}")


def compare(scene, names=PARAMS + ("viewmats",), **kw):
    """Run ours (float32) and the reference (float64); assert images, alphas, radii and gradients agree."""
    out, alpha, meta, grads = run(rasterization, scene, names=names, **kw)
    ref, ref_alpha, ref_meta, ref_grads = run(reference_rasterization, scene, torch.float64, names=names, **kw)
    assert_images_close(out, ref)
    assert_images_close(alpha, ref_alpha)
    assert torch.equal(meta["radii"], ref_meta["radii"])
    vis = (meta["radii"] > 0).all(-1)
    for k in ("means2d", "depths", "conics"):
        torch.testing.assert_close(meta[k][vis].double(), ref_meta[k][vis].detach(), rtol=1e-5, atol=1e-5)
    if names:
        assert_grads_close(grads, ref_grads)
    return out, alpha, meta, grads


@pytest.mark.parametrize("mode", ["RGB", "D", "ED", "RGB+D", "RGB+ED"])
def test_matches_reference(mode):
    bg = torch.rand(2, 3, generator=torch.Generator().manual_seed(5))
    out, alpha, meta, _ = compare(make_scene(), names=PARAMS + ("viewmats",) if mode == "RGB+ED" else (),
                                  render_mode=mode, backgrounds=bg)
    assert out.shape == (2, 29, 37, {"RGB": 3, "D": 1, "ED": 1, "RGB+D": 4, "RGB+ED": 4}[mode])
    assert 0.2 < alpha.mean() < 0.9  # both empty and covered pixels
    assert meta["radii"].shape == (2, 70, 2)


def test_sh_and_per_camera_colors_match_reference():
    scene = make_scene(n=40)
    g = torch.Generator().manual_seed(3)
    compare(scene | {"colors": torch.randn(40, 16, 3, generator=g) * 0.3}, sh_degree=3)
    compare(scene | {"colors": torch.randn(2, 40, 9, 3, generator=g) * 0.3}, names=("colors",), sh_degree=1)
    compare(scene | {"colors": torch.rand(2, 40, 5, generator=g)}, names=("colors", "means"))  # [C, N, D]


def test_early_termination_and_many_rounds_match_reference():
    """Opaque crowds saturate pixels (T reaches 1e-4), clamp alpha at 0.999 (opacity 1) and give tiles many
    more pairs than one round holds; rounds of 4 pairs and chunks of 2 tiles must give the same image as the
    default plan and the reference."""
    scene = make_scene(n=160, cameras=1, width=40, height=33, scale=0.6)
    scene["opacities"] = 0.9 + 0.1 * scene["opacities"]
    scene["opacities"][::4] = 1.0
    scene["means"][0] = torch.tensor([0.0, 0.5 * 1.5 / 33, 1.5])  # in front, centred on pixel (21, 12): alpha 0.999
    out, alpha, meta, _ = compare(scene)
    assert (alpha > 1 - 2e-4).float().mean() > 0.3  # many pixels stopped at the transmittance cut-off
    C, N = meta["radii"].shape[:2]
    isect = intersect_tiles(meta["means2d"].detach().reshape(-1, 2), meta["radii"].reshape(-1, 2),
                            meta["depths"].detach().reshape(-1), meta["conics"].detach().reshape(-1, 3),
                            meta["opacities"].detach().reshape(-1), torch.zeros(N, dtype=torch.long), 1, 40, 33)
    plan = RasterPlan.build(isect, 1, 40, 33, pairs_per_round=4, chunk_elements=2 * 4 * 256)
    assert len(plan.chunks) > 3 and int(plan.count.max()) > 8 * 4
    small, small_alpha = RasterizeToPixels.apply(meta["means2d"].detach(), meta["conics"].detach(),
                                                 scene["colors"][None], meta["opacities"].detach(), None, plan, False)
    assert_images_close(small, out, atol=1e-5)
    assert_images_close(small_alpha, alpha, atol=1e-5)


def test_gaussians_behind_finished_pixels_get_no_gradient():
    """In one 16x16 tile: a wall of 64 opaque Gaussians (two rounds) finishes the pixels around (3, 8)
    (T <= 1e-4); 40 faint Gaussians on the far right then make a round in which no pixel finishes, and a small
    Gaussian hidden behind the wall at (3, 8) comes last. It is never blended, so it must get exactly no
    gradient, as in the reference."""
    g = torch.Generator().manual_seed(0)
    wall = torch.cat([torch.rand(64, 2, generator=g) * torch.tensor([0.6, 1.0]) + torch.tensor([-0.9, -0.5]),
                      torch.full((64, 1), 2.0)], 1)  # x/z in [-0.45, -0.15], y/z in [-0.25, 0.25]
    faint = torch.cat([torch.rand(40, 2, generator=g) * torch.tensor([0.3, 2.0]) + torch.tensor([1.05, -1.0]),
                       torch.full((40, 1), 3.0)], 1)  # pixel columns ~13-15
    hidden = torch.tensor([[-1.125, 0.0, 4.0]])  # projects to (3.5, 8.0)
    n = 105
    scene = {
        "means": torch.cat([wall, faint, hidden]), "quats": torch.randn(n, 4, generator=g),
        "scales": torch.cat([0.15 + 0.1 * torch.rand(64, 3, generator=g), torch.full((40, 3), 0.1),
                             torch.full((1, 3), 0.05)]),
        "opacities": torch.cat([torch.full((64,), 0.99), torch.full((40,), 0.02), torch.full((1,), 0.9)]),
        "colors": torch.rand(n, 3, generator=g),
        "viewmats": torch.eye(4)[None], "Ks": torch.tensor([[[16.0, 0, 8], [0, 16, 8], [0, 0, 1]]]),
        "width": 16, "height": 16,
    }
    out, alpha, meta, grads = compare(scene)
    ref_grads = run(reference_rasterization, scene, torch.float64)[3]
    assert meta["radii"][0, -1].max() > 0 and alpha[0, 8, 3] > 0.99
    for k in PARAMS:
        assert (ref_grads[k][-1] == 0).all() and (grads[k][-1] == 0).all(), k


def test_clamped_alpha_passes_no_opacity_gradient():
    """A fully opaque Gaussian centred on a pixel blends there with alpha = 0.999 (clamped): that pixel's
    colour is 0.999 * colour, and its opacity gets no gradient from it (as in the reference and gsplat)."""
    scene = make_scene(n=1, cameras=1)
    scene["means"][0] = torch.tensor([0.0, 0.5 * 2.0 / 33, 2.0])  # projects onto the centre of pixel (21, 12)
    scene["opacities"][0] = 1.0
    for fn in (rasterization, reference_rasterization):
        leaves = {k: v.clone().requires_grad_(k in PARAMS) if torch.is_tensor(v) else v for k, v in scene.items()}
        out, _, _ = fn(**leaves)
        out[0, 12, 21, 0].backward()
        torch.testing.assert_close(out[0, 12, 21, 0].detach(), 0.999 * scene["colors"][0, 0])
        assert leaves["opacities"].grad[0] == 0 and leaves["colors"].grad[0, 0] == pytest.approx(0.999)


@pytest.mark.parametrize("case", ["empty", "behind", "huge", "zero_scales", "radius_clip", "antialiased"])
def test_edge_cases_match_reference(case):
    scene = make_scene(n=30)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    kw = {}
    if case == "empty":
        scene.update({k: scene[k][:0] for k in PARAMS})
    elif case == "behind":
        scene["means"][:, 2] = -scene["means"][:, 2]
    elif case == "huge":  # a few Gaussians much larger than the image, one centred off screen
        scene["scales"][:3] = torch.tensor([[3.0, 2.0, 1.0], [1.0, 4.0, 0.5], [2.0, 2.0, 2.0]])
        scene["means"][2] = torch.tensor([3.0, 0.0, 2.0])
    elif case == "zero_scales":
        scene["scales"][::2] = 0.0
    elif case == "radius_clip":
        kw["radius_clip"] = 3.0
    elif case == "antialiased":
        kw["rasterize_mode"] = "antialiased"
    empty = case in ("empty", "behind")
    out, alpha, meta, grads = compare(scene, names=() if empty else PARAMS + ("viewmats",), backgrounds=bg, **kw)
    if empty:
        assert alpha.abs().max() == 0 and torch.equal(out, bg[:, None, None].expand_as(out))
        assert len(meta["flatten_ids"]) == 0
        torch.testing.assert_close(grads["backgrounds"], torch.rand(out.shape, generator=torch.Generator()
                                                                    .manual_seed(1)).sum((1, 2)))
    else:
        assert alpha.max() > 0.5
    if case == "radius_clip":
        assert ((meta["radii"] <= 3).all(-1) == (meta["radii"] == 0).all(-1)).all()
        assert (meta["radii"] > 0).any()


def test_packed_matches_unpacked():
    scene = make_scene()
    out, alpha, meta, grads = run(rasterization, scene)
    p_out, p_alpha, p_meta, p_grads = run(rasterization, scene, packed=True)
    assert_images_close(p_out, out, atol=1e-6)
    assert_images_close(p_alpha, alpha, atol=1e-6)
    cam, gid = p_meta["camera_ids"], p_meta["gaussian_ids"]
    visible = (meta["radii"] > 0).all(-1)
    assert torch.equal(torch.stack([cam, gid]), torch.stack(visible.nonzero(as_tuple=True)))
    for k in ("radii", "means2d", "depths", "conics", "opacities"):
        assert torch.equal(p_meta[k], meta[k][cam, gid]), k
    assert p_meta["means2d"].shape == (int(visible.sum()), 2)
    assert meta["camera_ids"] is None and meta["gaussian_ids"] is None
    for k in PARAMS:
        torch.testing.assert_close(p_grads[k], grads[k], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p_grads["means2d"], grads["means2d"][cam, gid])


def test_meta_layout_for_densification():
    out, alpha, meta, grads = run(rasterization, make_scene(), absgrad=True)
    C, N = 2, 70
    assert meta["means2d"].shape == (C, N, 2) and meta["radii"].dtype == torch.int32
    assert meta["depths"].shape == (C, N) and meta["conics"].shape == (C, N, 3)
    assert meta["opacities"].shape == (C, N) and meta["tiles_per_gauss"].shape == (C, N)
    assert (meta["width"], meta["height"], meta["n_cameras"], meta["tile_size"]) == (37, 29, C, 16)
    assert meta["isect_offsets"].shape == (C, meta["tile_height"], meta["tile_width"])
    assert torch.equal(meta["isect_ids"], torch.sort(meta["isect_ids"]).values)
    assert ((meta["tiles_per_gauss"] > 0) <= (meta["radii"] > 0).all(-1)).all()
    g, absg = grads["means2d"], meta["means2d"].absgrad
    assert absg.shape == g.shape and (absg >= g.abs() - 1e-5).all() and (absg > g.abs() + 1e-3).any()


def test_absgrad_is_sum_of_per_pixel_absolute_gradients():
    scene = make_scene(n=12, cameras=1, width=5, height=4, scale=0.6)
    scene["means"][:, 2] += 2.0
    scene["Ks"][:, :2, 2] = torch.tensor([2.5, 2.0])
    scene["means"].requires_grad_()
    out, _, meta = rasterization(**scene, absgrad=True)
    out[..., 0].sum().backward()
    per_pixel = []
    for i in range(4):
        for j in range(5):
            ref, _, m = reference_rasterization(**{k: v.double() if torch.is_tensor(v) else v
                                                   for k, v in scene.items()})
            m["means2d"].retain_grad()
            ref[0, i, j, 0].backward()
            per_pixel.append(m["means2d"].grad.abs())
    expected = torch.stack(per_pixel).sum(0) * (meta["radii"] > 0).all(-1, keepdim=True)
    assert expected.max() > 0
    torch.testing.assert_close(meta["means2d"].absgrad.double(), expected, atol=1e-4 * expected.max().item(),
                               rtol=1e-3)


def test_rejects_bad_arguments():
    scene = make_scene(n=5)
    with pytest.raises(ValueError, match="colors"):
        rasterization(**scene | {"colors": torch.rand(6, 3)})
    with pytest.raises(ValueError, match="render_mode"):
        rasterization(**scene, render_mode="RGBD")
    with pytest.raises(TypeError, match="does not take"):
        rasterization(**scene, distributed=True)
    with pytest.raises(RuntimeError, match="gsplat"):
        rasterization(**scene, backend="gsplat")


@pytest.fixture(scope="module")
def garden():
    """500 random garden Gaussians with gsplat's test draws (random rotations and opacities, scales up to
    0.1 here) and the first camera at 1/8 resolution (81x52)."""
    if not GARDEN.exists():
        pytest.skip(f"shared garden data not found at {GARDEN}")
    data = np.load(GARDEN)
    g = torch.Generator().manual_seed(0)
    means = torch.from_numpy(data["means3d"]).float()
    keep = torch.randperm(len(means), generator=g)[:500]
    n = len(keep)
    Ks = torch.from_numpy(data["Ks"][:1]).float() / 8
    Ks[:, 2, 2] = 1.0
    return {
        "means": means[keep], "colors": torch.from_numpy(data["colors"][keep.numpy()] / 255.0).float(),
        "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
        "scales": torch.rand(n, 3, generator=g) * 0.1, "opacities": torch.rand(n, generator=g),
        "viewmats": torch.from_numpy(data["viewmats"][:1]).float(), "Ks": Ks,
        "width": int(data["width"]) // 8, "height": int(data["height"]) // 8,
    }


def test_garden_matches_reference(garden):
    _, alpha, meta, _ = compare(garden, names=("means", "scales", "opacities", "colors"))
    assert alpha.mean() > 0.3 and int((meta["radii"] > 0).all(-1).sum()) > 300


@pytest.mark.cuda
def test_torch_path_matches_gsplat_on_cuda(garden):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("gsplat")
    scene = {k: v.cuda() if torch.is_tensor(v) else v for k, v in garden.items()}
    for packed in (False, True):
        out, alpha, meta, grads = run(rasterization, scene, packed=packed, render_mode="RGB+ED", backend="gsplat")
        ours, ours_alpha, ours_meta, ours_grads = run(rasterization, scene, packed=packed, render_mode="RGB+ED",
                                                      backend="torch")
        # gsplat's __expf and fused float ops differ in the last bits: a ceil() or a cut-off can flip.
        assert_images_close(ours, out, atol=1e-3)
        assert_images_close(ours_alpha, alpha, atol=1e-3)
        if not packed:
            radii_diff = (ours_meta["radii"] - meta["radii"]).abs()
            assert radii_diff.max() <= 1 and (radii_diff > 0).float().mean() < 1e-3
        for k in ("means", "quats", "scales", "opacities", "colors"):
            scale = grads[k].abs().max().item()
            torch.testing.assert_close(ours_grads[k], grads[k], atol=1e-3 * scale, rtol=1e-2)
