"""The reconstruction as a stage graph over one project directory (METHOD.md sections 1-2 so far).

    ingest -> shots -> masks (+ people) -> cameras (+ sparse points) -> depth (+ eq. 2-3 alignment)
           -> level -> stage (eq. 4-7);      masks + cameras -> smpl_init (real estimators)

Each stage writes plain files (npz, json, ply, png) into its folder of the project; ``docs/project_format.md``
lists them. Estimators are chosen by name: ``real`` runs the estimators that work on user footage
(scenedetect, mediapipe, pycolmap, a user-supplied depth checkpoint, SMPL fitting); ``oracle`` reads the
synthetic clip's ground truth (project input ``ground_truth``) and is refused on a clip without one.

Project inputs: ``clip`` (a video or a folder of frames), optionally ``ground_truth`` (a synthetic clip folder)
and ``background`` (a folder of extra images of the same set, e.g. from other episodes: the TV-show setting;
the real camera estimator matches them with the frames so that shots seeing too little in common are connected
through them). ``build_pipeline(cfg, inputs=project.inputs)`` reads the background images when the project has
them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_save_npz, atomic_write_json
from .estimate.cameras import CameraConfig, estimate_cameras
from .estimate.oracle import OracleConfig, oracle_cameras_and_points, oracle_mono_depth
from .estimate.people import PeopleConfig, PeopleTracks, estimate_people
from .estimate.shots import ShotConfig, cuts_from_shot_ids, detect_shots
from .estimate.smpl_fit import SmplFitConfig, fit_smpl
from .geometry import scene_radius
from .ingest import decode_frames
from .pipeline import Pipeline, Stage, StageContext
from .splat import save_ply
from .stage.depth_align import DepthAlignConfig, align_depths, visible_points
from .stage.level import LevelConfig, apply_level, find_floor
from .stage.train import StageTrainConfig, StageTrainer, StageViews, from_gaussian_set, render, to_gaussian_set

ESTIMATORS = ("real", "oracle")
#: Image files read from a ``background`` folder (case-insensitive suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class IngestConfig:
    """Frame decoding: every ``stride``-th frame, at most ``max_frames``, longer side at most ``max_side``."""

    stride: int = 1
    max_frames: int | None = None
    max_side: int | None = None


@dataclass
class ShotsStage:
    """Shot detection: ``real`` (scenedetect, ``detector``) or ``oracle`` (the ground truth's cuts)."""

    estimators: str = "real"
    detector: ShotConfig = field(default_factory=ShotConfig)


@dataclass
class MasksStage:
    """Actor masks: ``real`` (mediapipe people: masks, keypoints, tracks) or ``oracle`` (instance masks)."""

    estimators: str = "real"
    people: PeopleConfig = field(default_factory=PeopleConfig)


@dataclass
class CamerasStage:
    """Cameras and sparse points: ``real`` (pycolmap SfM, ``sfm``) or ``oracle`` (ground truth hidden behind
    a random similarity, with noise)."""

    estimators: str = "real"
    sfm: CameraConfig = field(default_factory=CameraConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)


@dataclass
class DepthConfig:
    """Monocular depth: ``mode`` ``estimate`` (aligned by eq. 2-3) or ``none`` (degraded: no depth guidance).
    With ``real`` estimators, ``model`` (moge2 | depth_anything_v2) loads from the local ``checkpoint``
    (or ``$SHOWMAKER_DEPTH_CHECKPOINT``)."""

    mode: str = "estimate"
    estimators: str = "real"
    model: str = "moge2"
    checkpoint: str | None = None
    align: DepthAlignConfig = field(default_factory=DepthAlignConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)


@dataclass
class StageConfig:
    """Stage training settings: a named preset, with every ``holdout_every``-th frame kept out of training
    for evaluation (0 = train on all frames)."""

    preset: str = "tiny"
    holdout_every: int = 8
    train: StageTrainConfig = field(default_factory=lambda: StageTrainConfig.preset("tiny"))


@dataclass
class ReconstructionConfig:
    """Every setting of a reconstruction (each stage hashes only its own part)."""

    estimators: str = "real"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    shots: ShotConfig = field(default_factory=ShotConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)
    sfm: CameraConfig = field(default_factory=CameraConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    smpl: SmplFitConfig = field(default_factory=SmplFitConfig)
    stage: StageConfig = field(default_factory=StageConfig)

    @classmethod
    def preset(cls, preset: str = "tiny", estimators: str = "real", depth_mode: str = "estimate",
               depth_model: str = "moge2", depth_checkpoint: str | None = None) -> "ReconstructionConfig":
        return cls(estimators=estimators,
                   depth=DepthConfig(mode=depth_mode, estimators=estimators, model=depth_model,
                                     checkpoint=depth_checkpoint),
                   stage=StageConfig(preset=preset, train=StageTrainConfig.preset(preset)))


def check_inputs(input_names, estimators: str) -> None:
    """Refuse, before anything runs, project inputs (names) that the chosen estimators cannot work from."""
    if estimators == "oracle" and "ground_truth" not in input_names:
        raise ValueError(
            "the 'oracle' estimators read a synthetic clip's ground truth, and this project has none "
            "(give --ground-truth CLIPDIR for a clip made by `showmaker synth`); oracles are never used on "
            "real footage — use --estimators real"
        )


def background_image_paths(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder`` (:data:`IMAGE_SUFFIXES`), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"background images: {folder} is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"background images: {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def load_background_images(folder: str | Path) -> list[np.ndarray]:
    """The background images of ``folder``, sorted by file name, as RGB uint8 arrays [h, w, 3] (any sizes)."""
    out = []
    for p in background_image_paths(folder):
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def _ground_truth(ctx: StageContext):
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


def run_shots(ctx: StageContext):
    c: ShotsStage = ctx.config
    if c.estimators == "oracle":
        shot_ids = _ground_truth(ctx).shot_ids
    else:
        shot_ids = detect_shots(load_frames(ctx.upstream_dir("ingest")), c.detector)
    atomic_save_npz(ctx.out_dir / "shots.npz", shot_ids=np.asarray(shot_ids), cuts=cuts_from_shot_ids(shot_ids))


def run_masks(ctx: StageContext):
    c: MasksStage = ctx.config
    if c.estimators == "oracle":
        atomic_save_npz(ctx.out_dir / "masks.npz", instances=_ground_truth(ctx).masks.astype(np.uint8))
        return
    frames = load_frames(ctx.upstream_dir("ingest"))
    shot_ids = np.load(ctx.upstream_dir("shots") / "shots.npz")["shot_ids"]

    def progress(done, total):
        ctx.progress(done / total, f"frame {done}/{total}")
        ctx.check_cancelled()

    tracks = estimate_people(frames, shot_ids, c.people, progress=progress)
    atomic_save_npz(ctx.out_dir / "masks.npz", instances=tracks.masks)
    atomic_save_npz(ctx.out_dir / "people.npz", **tracks.to_arrays())


def run_cameras(ctx: StageContext, background: bool = False):
    """Cameras and sparse points; ``background``: give SfM the images of project input ``background`` too
    (``build_pipeline`` sets it, and lists the input, when the project has one)."""
    c: CamerasStage = ctx.config
    if c.estimators == "oracle":
        cams = oracle_cameras_and_points(_ground_truth(ctx), c.oracle)
        cams["registered"] = np.ones(len(cams["Ks"]), bool)
        report = {"estimator": "oracle"}
    else:
        frames = load_frames(ctx.upstream_dir("ingest"))
        masks = np.load(ctx.upstream_dir("masks") / "masks.npz")["instances"]
        shot_ids = np.load(ctx.upstream_dir("shots") / "shots.npz")["shot_ids"]
        bg_images = load_background_images(ctx.input_path("background")) if background else None
        ctx.progress(0.0, "structure from motion (pycolmap)"
                     + (f", {len(bg_images)} background images" if bg_images else ""))
        # The SfM workspace lives beside the stage's checkpoints: kept after a crash for inspection,
        # removed by the pipeline once the stage has finished.
        cams = estimate_cameras(frames, masks > 0, shot_ids, c.sfm, background_images=bg_images,
                                workdir=ctx.checkpoint_path.parent / "sfm")
        report = cams["report"]
    bg = {k: cams[k] for k in ("bg_Ks", "bg_viewmats", "bg_registered") if background and k in cams}
    atomic_save_npz(ctx.out_dir / "cameras.npz", Ks=cams["Ks"], viewmats=cams["viewmats"],
                    registered=cams["registered"], **bg)
    atomic_save_npz(ctx.out_dir / "points.npz", points=cams["points"], colors=cams["colors"],
                    vis_frame=cams["vis_frame"], vis_point=cams["vis_point"])
    atomic_write_json(ctx.out_dir / "report.json", report)


def _scene_radius(cams, points) -> float:
    reg = cams["registered"]
    vm = cams["viewmats"][reg]
    centers = -np.einsum("fji,fj->fi", vm[:, :3, :3], vm[:, :3, 3])
    return scene_radius(centers, points)


def run_depth(ctx: StageContext):
    c: DepthConfig = ctx.config
    if c.mode == "none":
        atomic_write_json(ctx.out_dir / "alignment.json", {"mode": "none"})
        return
    cams = np.load(ctx.upstream_dir("cameras") / "cameras.npz")
    pts = np.load(ctx.upstream_dir("cameras") / "points.npz")
    masks = np.load(ctx.upstream_dir("masks") / "masks.npz")["instances"]
    F, H, W = masks.shape
    if c.estimators == "oracle":
        clip = _ground_truth(ctx)
        mono = [oracle_mono_depth(clip, f, c.oracle) for f in range(F)]
    else:
        from .estimate.depth_models import load_depth_model

        model = load_depth_model(c.model, c.checkpoint, device="cuda" if torch.cuda.is_available() else "cpu")
        frames = load_frames(ctx.upstream_dir("ingest"))
        mono = []
        for f in range(F):
            mono.append(model.predict(frames[f], K=cams["Ks"][f] if np.isfinite(cams["Ks"][f]).all() else None))
            ctx.progress((f + 1) / F, f"depth {f + 1}/{F}")
            ctx.check_cancelled()
    obs = []
    for f in range(F):
        if not cams["registered"][f]:
            obs.append((np.zeros((0, 2)), np.zeros(0)))
            continue
        ids = pts["vis_point"][pts["vis_frame"] == f]
        obs.append(visible_points(pts["points"], cams["viewmats"][f], cams["Ks"][f], W, H, masks[f] > 0, ids))
    radius = _scene_radius(cams, pts["points"])
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


def run_smpl_init(ctx: StageContext):
    """SMPL per tracked person per frame, fitted to the people's keypoints (camera frame)."""
    c: SmplFitConfig = ctx.config
    tracks = PeopleTracks.from_arrays(np.load(ctx.upstream_dir("masks") / "people.npz"))
    cams = np.load(ctx.upstream_dir("cameras") / "cameras.npz")
    shot_ids = np.load(ctx.upstream_dir("shots") / "shots.npz")["shot_ids"]
    if tracks.n_tracks == 0:
        atomic_write_json(ctx.out_dir / "report.json", {"tracks": 0, "note": "nobody was found in the clip"})
        return
    Ks = cams["Ks"].copy()
    H, W = tracks.masks.shape[1:]
    # Frames whose shot has no camera yet: the SMPL fit only needs a plausible focal length (colmap's guess).
    guess = np.array([[1.2 * max(H, W), 0, W / 2], [0, 1.2 * max(H, W), H / 2], [0, 0, 1]])
    Ks[~np.isfinite(Ks).all(axis=(1, 2))] = guess
    out = fit_smpl(tracks.keypoints2d, Ks, world_landmarks=tracks.world_landmarks, present=tracks.present,
                   shot_ids=shot_ids, cfg=c)
    atomic_save_npz(ctx.out_dir / "smpl_init.npz", **{k: np.asarray(v) for k, v in out.items() if k != "seconds"})
    atomic_write_json(ctx.out_dir / "report.json", {
        "tracks": int(tracks.n_tracks), "seconds": float(out["seconds"]),
        "mean_residual_px": float(np.nanmean(np.where(out["valid"], out["residual"], np.nan))),
    })


def run_level(ctx: StageContext):
    cams = np.load(ctx.upstream_dir("cameras") / "cameras.npz")
    pts = np.load(ctx.upstream_dir("cameras") / "points.npz")
    radius = _scene_radius(cams, pts["points"])
    floor = find_floor(pts["points"], cams["viewmats"][cams["registered"]], radius, LevelConfig())
    points, viewmats = apply_level(floor.T_level, pts["points"], cams["viewmats"])
    bg = {}
    if "bg_viewmats" in cams:  # background images (TV-show setting): more stage views
        bg = {"bg_Ks": cams["bg_Ks"], "bg_viewmats": apply_level(floor.T_level, None, cams["bg_viewmats"])[1],
              "bg_registered": cams["bg_registered"]}
    atomic_save_npz(ctx.out_dir / "scene.npz", Ks=cams["Ks"], viewmats=viewmats, points=points,
                    colors=pts["colors"], T_level=floor.T_level, registered=cams["registered"], **bg)
    atomic_write_json(ctx.out_dir / "level.json", {
        "T_level": floor.T_level.tolist(), "floor_normal": floor.normal.tolist(), "floor_offset": floor.offset,
        "floor_inliers": floor.n_inliers, "scene_radius": radius,
    })


def train_views(ctx_dirs: dict[str, Path], frames: np.ndarray, holdout_every: int, device="cpu",
                background: list[np.ndarray] | None = None):
    """Assemble (train views, held-out frame indices, levelled scene) from the upstream stage folders.

    Clip frames that SfM registered are views with their actors masked out and their aligned depth; every
    ``holdout_every``-th of them is held out. ``background`` images (the TV-show setting's other episodes,
    in the order SfM was given them) that registered are more views: all background, no depth target,
    resized to the clip's size with their intrinsics scaled to match.
    """
    scene = np.load(ctx_dirs["level"] / "scene.npz")
    masks = np.load(ctx_dirs["masks"] / "masks.npz")["instances"]
    depth_file = ctx_dirs["depth"] / "depth.npz"
    depths = np.load(depth_file)["aligned"] if depth_file.exists() else None
    usable = [f for f in range(len(frames)) if scene["registered"][f]]  # frames SfM gave a camera
    held = [f for f in usable if holdout_every and f % holdout_every == holdout_every // 2]
    train = [f for f in usable if f not in held]
    H, W = frames.shape[1:3]
    images, bg_masks, Ks, viewmats = [frames[train]], [masks[train] == 0], [scene["Ks"][train]], [scene["viewmats"][train]]
    n_bg = 0
    if background is not None and "bg_viewmats" in scene:
        for img, K, vm, ok in zip(background, scene["bg_Ks"], scene["bg_viewmats"], scene["bg_registered"]):
            if not ok:
                continue
            h, w = img.shape[:2]
            K = np.diag([W / w, H / h, 1.0]) @ K
            images.append(np.asarray(Image.fromarray(img).resize((W, H), Image.BILINEAR))[None])
            bg_masks.append(np.ones((1, H, W), bool))
            Ks.append(K[None])
            viewmats.append(vm[None])
            n_bg += 1
    if depths is not None:
        depths = np.concatenate([depths[train], np.full((n_bg, H, W), np.nan, np.float32)])

    def t(x):
        return torch.as_tensor(np.concatenate(x) if isinstance(x, list) else x, dtype=torch.float32, device=device)

    views = StageViews(
        images=t(images) / 255.0, masks=torch.as_tensor(np.concatenate(bg_masks), device=device),
        Ks=t(Ks), viewmats=t(viewmats), depths=None if depths is None else t(depths),
    )
    return views, held, scene


def run_stage(ctx: StageContext, background: bool = False):
    """Stage Gaussians (eq. 4-7); ``background``: the project's background images are more training views."""
    c: StageConfig = ctx.config
    frames = load_frames(ctx.upstream_dir("ingest"))
    dirs = {n: ctx.upstream_dir(n) for n in ("level", "masks", "depth")}
    bg_images = load_background_images(ctx.input_path("background")) if background else None
    views, held, scene = train_views(dirs, frames, c.holdout_every, background=bg_images)
    radius = json.loads((dirs["level"] / "level.json").read_text())["scene_radius"]
    trainer = StageTrainer(views, scene["points"], scene["colors"], radius, c.train)
    state = ctx.load_checkpoint()
    if state is not None:
        trainer.load_state_dict(state)
    params = trainer.train(save_checkpoint=ctx.save_checkpoint, check_cancelled=ctx.check_cancelled,
                           progress=ctx.progress, show_bar=False)  # the CLI draws ctx.progress
    gs = to_gaussian_set(params)
    save_ply(ctx.out_dir / "stage.ply", gs)
    p = from_gaussian_set(gs)
    atomic_write_json(ctx.out_dir / "train.json", {"held_out": held, "history": trainer.history,
                                                   "n_gaussians": len(gs)})
    # A preview of the first held-out (or first trained) frame next to its input.
    f = held[0] if held else int(np.flatnonzero(scene["registered"])[0])
    with torch.no_grad():
        rgb, _, _, _ = render(p, torch.as_tensor(scene["viewmats"][f:f + 1], dtype=torch.float32),
                              torch.as_tensor(scene["Ks"][f:f + 1], dtype=torch.float32),
                              frames.shape[2], frames.shape[1], c.train.sh_degree, "RGB")
    preview = np.concatenate([frames[f], (rgb[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)], 1)
    Image.fromarray(preview).save(ctx.out_dir / "preview.png")


def build_pipeline(cfg: ReconstructionConfig = ReconstructionConfig(), inputs: Iterable[str] = ()) -> Pipeline:
    """The reconstruction graph with the given settings, for a project with the given ``inputs`` (names, e.g.
    ``project.inputs``). Optional inputs shape the graph: with ``background`` and the real estimators, the
    ``cameras`` stage reads the background images (and lists the input, so its fingerprint enters the stage's
    cache key); the oracle cameras do not use them. Without ``inputs`` the graph uses no optional input."""
    est = cfg.estimators
    if est not in ESTIMATORS:
        raise ValueError(f"unknown estimators {est!r}; available: {', '.join(ESTIMATORS)}")
    if cfg.depth.mode not in ("estimate", "none"):
        raise ValueError(f"unknown depth mode {cfg.depth.mode!r}; expected 'estimate' or 'none'")
    depth = dataclasses.replace(cfg.depth, estimators=est)
    stage = cfg.stage
    if depth.mode == "none":
        stage = dataclasses.replace(stage, train=dataclasses.replace(stage.train, depth_guidance=False))
    gt = ("ground_truth",) if est == "oracle" else ()
    background = est == "real" and "background" in set(inputs)
    stages = [
        Stage("ingest", run_ingest, cfg.ingest, inputs=("clip",)),
        Stage("shots", run_shots, ShotsStage(est, cfg.shots), upstream=("ingest",), inputs=gt),
        Stage("masks", run_masks, MasksStage(est, cfg.people), upstream=("ingest", "shots"), inputs=gt),
        Stage("cameras", functools.partial(run_cameras, background=background), CamerasStage(est, cfg.sfm, cfg.oracle),
              upstream=("ingest", "shots", "masks"), inputs=gt + (("background",) if background else ()), version="2"),
        Stage("depth", run_depth, depth, upstream=("ingest", "cameras", "masks"), inputs=gt),
        Stage("level", run_level, None, upstream=("cameras",), version="2"),
        Stage("stage", functools.partial(run_stage, background=background), stage,
              upstream=("ingest", "level", "masks", "depth"), inputs=("background",) if background else (),
              version="2"),
    ]
    if est == "real":
        stages.append(Stage("smpl_init", run_smpl_init, cfg.smpl, upstream=("masks", "cameras", "shots")))
    return Pipeline(stages)
