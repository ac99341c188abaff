"""The reconstruction as a stage graph over one project directory (METHOD.md sections 1-2 so far).

    ingest -> cameras (+ sparse points) -> masks -> depth (+ eq. 2-3 alignment) -> level -> stage (eq. 4-7)

Each stage writes plain files (npz, json, ply, png) into its folder of the project; ``docs/project_format.md``
lists them. Estimators are chosen by name: ``oracle`` reads the synthetic clip's ground truth (project input
``ground_truth``) and is refused on a clip without one.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_save_npz, atomic_write_json
from .estimate.oracle import OracleConfig, oracle_cameras_and_points, oracle_mono_depth
from .geometry import scene_radius
from .ingest import decode_frames
from .pipeline import Pipeline, Stage, StageContext
from .splat import save_ply
from .stage.depth_align import DepthAlignConfig, align_depths, visible_points
from .stage.level import LevelConfig, apply_level, find_floor
from .stage.train import StageTrainConfig, StageTrainer, StageViews, from_gaussian_set, render, to_gaussian_set

ESTIMATORS = ("oracle",)


@dataclass
class IngestConfig:
    """Frame decoding: every ``stride``-th frame, at most ``max_frames``, longer side at most ``max_side``."""

    stride: int = 1
    max_frames: int | None = None
    max_side: int | None = None


@dataclass
class EstimatorConfig:
    """Which estimator family feeds cameras, masks and depth (``oracle`` needs ground truth)."""

    estimators: str = "oracle"
    oracle: OracleConfig = field(default_factory=OracleConfig)


@dataclass
class DepthConfig:
    """Depth mode: ``estimate`` (a monocular depth estimator, aligned by eq. 2-3) or ``none`` (degraded:
    the stage trains without depth guidance)."""

    mode: str = "estimate"
    estimators: EstimatorConfig = field(default_factory=EstimatorConfig)
    align: DepthAlignConfig = field(default_factory=DepthAlignConfig)


@dataclass
class StageConfig:
    """Stage training settings: a named preset, with every ``holdout_every``-th frame kept out of training
    for evaluation (0 = train on all frames)."""

    preset: str = "tiny"
    holdout_every: int = 8
    train: StageTrainConfig = field(default_factory=lambda: StageTrainConfig.preset("tiny"))


def check_inputs(project, estimators: EstimatorConfig) -> None:
    """Refuse, before anything runs, a project whose inputs the chosen estimators cannot work from."""
    if estimators.estimators == "oracle" and "ground_truth" not in project.inputs:
        raise ValueError(
            "the 'oracle' estimators read a synthetic clip's ground truth, and this project has none "
            "(give --ground-truth CLIPDIR for a clip made by `showmaker synth`); oracles are never used on "
            "real footage"
        )


def _require_ground_truth(ctx: StageContext):
    from .synth import load_clip

    return load_clip(ctx.input_path("ground_truth"))


def load_frames(ingest_dir: Path) -> np.ndarray:
    """The decoded frames [F, H, W, 3] uint8 of an ingest stage folder."""
    meta = json.loads((ingest_dir / "frames" / "frames.json").read_text())
    return np.stack([np.asarray(Image.open(ingest_dir / "frames" / fr["file"]).convert("RGB")) for fr in meta["frames"]])


def run_ingest(ctx: StageContext):
    c: IngestConfig = ctx.config
    decode_frames(ctx.input_path("clip"), ctx.out_dir / "frames", stride=c.stride, max_frames=c.max_frames,
                  max_side=c.max_side, progress=lambda f, m: (ctx.progress(f, m), ctx.check_cancelled()))


def run_cameras(ctx: StageContext):
    c: EstimatorConfig = ctx.config
    clip = _require_ground_truth(ctx)
    cams = oracle_cameras_and_points(clip, c.oracle)
    atomic_save_npz(ctx.out_dir / "cameras.npz", Ks=cams["Ks"], viewmats=cams["viewmats"])
    atomic_save_npz(ctx.out_dir / "points.npz", points=cams["points"], colors=cams["colors"],
                    vis_frame=cams["vis_frame"], vis_point=cams["vis_point"])
    atomic_save_npz(ctx.out_dir / "oracle_eval.npz", gt_from_est=cams["gt_from_est"])


def run_masks(ctx: StageContext):
    clip = _require_ground_truth(ctx)
    atomic_save_npz(ctx.out_dir / "masks.npz", instances=clip.masks.astype(np.uint8))


def run_depth(ctx: StageContext):
    c: DepthConfig = ctx.config
    cams = np.load(ctx.upstream_dir("cameras") / "cameras.npz")
    pts = np.load(ctx.upstream_dir("cameras") / "points.npz")
    masks = np.load(ctx.upstream_dir("masks") / "masks.npz")["instances"]
    F, H, W = masks.shape
    if c.mode == "none":
        atomic_write_json(ctx.out_dir / "alignment.json", {"mode": "none"})
        return
    clip = _require_ground_truth(ctx)
    mono = [oracle_mono_depth(clip, f, c.estimators.oracle) for f in range(F)]
    obs = []
    for f in range(F):
        ids = pts["vis_point"][pts["vis_frame"] == f]
        obs.append(visible_points(pts["points"], cams["viewmats"][f], cams["Ks"][f], W, H, masks[f] > 0, ids))
    centers = -np.einsum("fji,fj->fi", cams["viewmats"][:, :3, :3], cams["viewmats"][:, :3, 3])
    radius = scene_radius(centers, pts["points"])
    res = align_depths(mono, obs, radius, c.align)
    aligned = np.stack([res.apply(m, f) if res.valid[f] else np.full((H, W), np.nan) for f, m in enumerate(mono)])
    atomic_save_npz(ctx.out_dir / "depth.npz", aligned=aligned.astype(np.float32))
    atomic_write_json(ctx.out_dir / "alignment.json", {
        "mode": "estimate", "scale": res.scale.tolist(), "shift": res.shift.tolist(), "valid": res.valid.tolist(),
        "n_points": res.n_points.tolist(), "rejected": {str(k): v for k, v in res.rejected.items()},
        "scene_radius": radius,
    })
    if res.rejected:
        ctx.progress(1.0, f"{len(res.rejected)} frame(s) could not be aligned and get no depth guidance")


def run_level(ctx: StageContext):
    cams = np.load(ctx.upstream_dir("cameras") / "cameras.npz")
    pts = np.load(ctx.upstream_dir("cameras") / "points.npz")
    centers = -np.einsum("fji,fj->fi", cams["viewmats"][:, :3, :3], cams["viewmats"][:, :3, 3])
    radius = scene_radius(centers, pts["points"])
    floor = find_floor(pts["points"], cams["viewmats"], radius, LevelConfig())
    points, viewmats = apply_level(floor.T_level, pts["points"], cams["viewmats"])
    atomic_save_npz(ctx.out_dir / "scene.npz", Ks=cams["Ks"], viewmats=viewmats, points=points,
                    colors=pts["colors"], T_level=floor.T_level)
    atomic_write_json(ctx.out_dir / "level.json", {
        "T_level": floor.T_level.tolist(), "floor_normal": floor.normal.tolist(), "floor_offset": floor.offset,
        "floor_inliers": floor.n_inliers, "scene_radius": radius,
    })


def train_views(ctx_dirs: dict[str, Path], frames: np.ndarray, holdout_every: int, device="cpu"):
    """Assemble (train views, held-out frame indices) from the upstream stage folders."""
    scene = np.load(ctx_dirs["level"] / "scene.npz")
    masks = np.load(ctx_dirs["masks"] / "masks.npz")["instances"]
    depth_file = ctx_dirs["depth"] / "depth.npz"
    depths = np.load(depth_file)["aligned"] if depth_file.exists() else None
    F = len(frames)
    held = [f for f in range(F) if holdout_every and f % holdout_every == holdout_every // 2]
    train = [f for f in range(F) if f not in held]

    def t(x, idx):
        return torch.as_tensor(np.asarray(x)[idx], dtype=torch.float32, device=device)

    views = StageViews(
        images=t(frames, train) / 255.0,
        masks=torch.as_tensor(masks[train] == 0, device=device),
        Ks=t(scene["Ks"], train), viewmats=t(scene["viewmats"], train),
        depths=None if depths is None else t(depths, train),
    )
    return views, held, scene


def run_stage(ctx: StageContext):
    c: StageConfig = ctx.config
    frames = load_frames(ctx.upstream_dir("ingest"))
    dirs = {n: ctx.upstream_dir(n) for n in ("level", "masks", "depth")}
    views, held, scene = train_views(dirs, frames, c.holdout_every)
    radius = json.loads((dirs["level"] / "level.json").read_text())["scene_radius"]
    trainer = StageTrainer(views, scene["points"], scene["colors"], radius, c.train)
    state = ctx.load_checkpoint()
    if state is not None:
        trainer.load_state_dict(state)
    params = trainer.train(save_checkpoint=ctx.save_checkpoint, check_cancelled=ctx.check_cancelled,
                           progress=ctx.progress)
    gs = to_gaussian_set(params)
    save_ply(ctx.out_dir / "stage.ply", gs)
    p = from_gaussian_set(gs)
    atomic_write_json(ctx.out_dir / "train.json", {"held_out": held, "history": trainer.history,
                                                   "n_gaussians": len(gs)})
    # A preview of the first held-out (or first) frame next to its input.
    f = held[0] if held else 0
    with torch.no_grad():
        rgb, _, _, _ = render(p, torch.as_tensor(scene["viewmats"][f:f + 1], dtype=torch.float32),
                              torch.as_tensor(scene["Ks"][f:f + 1], dtype=torch.float32),
                              frames.shape[2], frames.shape[1], c.train.sh_degree, "RGB")
    preview = np.concatenate([frames[f], (rgb[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)], 1)
    Image.fromarray(preview).save(ctx.out_dir / "preview.png")


def build_pipeline(ingest=IngestConfig(), estimators=EstimatorConfig(), stage=StageConfig(),
                   depth: DepthConfig | None = None) -> Pipeline:
    """The reconstruction graph with the given settings."""
    if estimators.estimators not in ESTIMATORS:
        raise ValueError(f"unknown estimators {estimators.estimators!r}; available: {', '.join(ESTIMATORS)}")
    depth = depth or DepthConfig(estimators=estimators)
    if depth.mode not in ("estimate", "none"):
        raise ValueError(f"unknown depth mode {depth.mode!r}; expected 'estimate' or 'none'")
    if depth.mode == "none":
        stage = dataclasses.replace(stage, train=dataclasses.replace(stage.train, depth_guidance=False))
    return Pipeline([
        Stage("ingest", run_ingest, ingest, inputs=("clip",)),
        Stage("cameras", run_cameras, estimators, upstream=("ingest",), inputs=("ground_truth",)),
        Stage("masks", run_masks, estimators, upstream=("ingest",), inputs=("ground_truth",)),
        Stage("depth", run_depth, depth, upstream=("cameras", "masks"), inputs=("ground_truth",)),
        Stage("level", run_level, None, upstream=("cameras",)),
        Stage("stage", run_stage, stage, upstream=("ingest", "level", "masks", "depth")),
    ])


def evaluate_project(project_dir) -> dict:
    """Score a finished project against its synthetic ground truth: held-out stage views (PSNR/SSIM on
    background pixels, rendered depth error in ground-truth units) and the depth alignment's coverage."""
    from .project import Project
    from .stage.evaluate import evaluate_views
    from .splat import load_ply
    from .synth import load_clip

    project = Project.open(project_dir)
    clip = load_clip(project.input_path("ground_truth"))
    stage_dir = project.stage_dir("stage")
    gs = load_ply(stage_dir / "stage.ply")
    params, sh_degree = from_gaussian_set(gs), gs.sh_degree
    held = json.loads((stage_dir / "train.json").read_text())["held_out"]
    scene = np.load(project.stage_dir("level") / "scene.npz")
    gt_from_est = np.load(project.stage_dir("cameras") / "oracle_eval.npz")["gt_from_est"]
    gt_scale = float(np.cbrt(np.linalg.det(gt_from_est[:3, :3])))  # levelling is rigid: scale unchanged
    frames = load_frames(project.stage_dir("ingest"))
    masks = np.load(project.stage_dir("masks") / "masks.npz")["instances"]
    scores = evaluate_views(params, frames, masks, scene["Ks"], scene["viewmats"], clip.depth, held, sh_degree,
                            gt_scale).as_dict()
    scores["per_shot"] = {
        int(shot): evaluate_views(params, frames, masks, scene["Ks"], scene["viewmats"], clip.depth,
                                  [f for f in held if clip.shot_ids[f] == shot], sh_degree, gt_scale).as_dict()
        for shot in np.unique(clip.shot_ids[held])
    }
    align = json.loads((project.stage_dir("depth") / "alignment.json").read_text())
    if align["mode"] != "none":
        scores["depth_frames_aligned"] = f"{sum(align['valid'])}/{len(align['valid'])}"
    scores["n_gaussians"] = int(gs.means.shape[0])
    return scores
