"""3DGS densification keeps parameters and Adam state in step."""
import torch

from showmaker.splat.densify import DensifyConfig, DensifyState, duplicate, make_optimizers, remove, split, step_post_backward


def _params(n=6):
    g = torch.Generator().manual_seed(0)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return {
        "means": torch.nn.Parameter(torch.randn(n, 3, generator=g)),
        "scales": torch.nn.Parameter(torch.log(torch.full((n, 3), 0.05))),
        "quats": torch.nn.Parameter(quats),
        "opacities": torch.nn.Parameter(torch.zeros(n)),
        "sh0": torch.nn.Parameter(torch.randn(n, 1, 3, generator=g)),
        "shN": torch.nn.Parameter(torch.zeros(n, 3, 3)),
    }


def _step(params, opts):
    loss = sum((p ** 2).sum() for p in params.values())
    loss.backward()
    for o in opts.values():
        o.step()
        o.zero_grad()


def test_duplicate_split_remove_keep_optimizer_rows_aligned():
    params = _params()
    opts = make_optimizers(params, {k: 1e-2 for k in params})
    _step(params, opts)
    st = DensifyState(6, "cpu")
    exp_avg_before = opts["means"].state[params["means"]]["exp_avg"].clone()
    duplicate(params, opts, st, torch.tensor([True, False, False, False, False, True]))
    assert params["means"].shape[0] == 8 and st.count.shape[0] == 8
    ea = opts["means"].state[params["means"]]["exp_avg"]
    assert torch.equal(ea[:6], exp_avg_before) and torch.all(ea[6:] == 0)
    assert torch.equal(params["means"][6], params["means"][0])

    scale_before = torch.exp(params["scales"][1]).detach().clone()
    split(params, opts, st, torch.tensor([False, True] + [False] * 6))
    assert params["means"].shape[0] == 9
    assert torch.allclose(torch.exp(params["scales"][-1]), scale_before / 1.6)
    remove(params, opts, st, torch.arange(9) < 3)
    assert params["means"].shape[0] == 6
    for k, p in params.items():
        assert opts[k].state[p]["exp_avg"].shape == p.shape
        assert opts[k].param_groups[0]["params"][0] is p
    _step(params, opts)  # the optimiser still works on the edited tensors


def test_schedule_grows_high_gradient_gaussians_and_prunes_transparent_ones():
    params = _params(4)
    with torch.no_grad():
        params["opacities"][3] = -10.0  # nearly transparent -> pruned
        params["scales"][1] = torch.log(torch.tensor(2.0))  # large -> split rather than cloned
    opts = make_optimizers(params, {k: 1e-2 for k in params})
    st = DensifyState(4, "cpu")
    cfg = DensifyConfig(refine_start=0, refine_every=1, reset_every=0, grow_grad2d=1e-3, prune_scale3d=1.0)
    means2d = torch.zeros(1, 4, 2, requires_grad=True)
    means2d.grad = torch.tensor([[[1e-2, 0.0], [1e-2, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    meta = {"means2d": means2d, "radii": torch.ones(1, 4, 2, dtype=torch.int32), "width": 2, "height": 2, "n_cameras": 1}
    report = step_post_backward(1, params, opts, st, meta, scene_scale=10.0, cfg=cfg)
    assert report == {"cloned": 1, "split": 1, "pruned": 1}
    assert params["means"].shape[0] == 4 - 1 + 1 + 2 - 1


def test_huge_gaussians_are_pruned_even_without_opacity_resets():
    params = _params(3)
    with torch.no_grad():
        params["scales"][2] = torch.log(torch.tensor(50.0))  # 5x the scene scale
    opts = make_optimizers(params, {k: 1e-2 for k in params})
    st = DensifyState(3, "cpu")
    meta = {"means2d": torch.zeros(1, 3, 2, requires_grad=True), "radii": torch.ones(1, 3, 2, dtype=torch.int32),
            "width": 2, "height": 2, "n_cameras": 1}
    cfg = DensifyConfig(refine_start=0, refine_every=1, reset_every=0)
    report = step_post_backward(1, params, opts, st, meta, scene_scale=10.0, cfg=cfg)
    assert report["pruned"] == 1 and params["means"].shape[0] == 2
