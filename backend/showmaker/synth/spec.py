"""The scene spec of a synthetic clip: frozen dataclasses, parsed and validated from JSON.

Every error is a :class:`SpecError` whose message starts with the path of the bad field, e.g.
``spec.actors[1].motion[0].type: unknown motion 'jog'; expected one of walk, turn, sit_down, gesture, idle``.

World frame (see ``docs/synthetic_clip.md``): metres, Z up, the floor is z = 0, the room spans
x in [-width/2, width/2], y in [-depth/2, depth/2] with its back wall at y = +depth/2 and its open side
(where the cameras stand) towards -y. Headings are degrees counter-clockwise from +X in the floor plane
(0 faces +X, 90 faces +Y, -90 faces the open side).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "CLOTHING_PARTS",
    "MOTIONS",
    "ActorSpec",
    "BackgroundSpec",
    "CameraSpec",
    "CouchSpec",
    "MotionSegment",
    "RenderSpec",
    "SceneSpec",
    "ShotSpec",
    "SpecError",
    "StageSpec",
    "TableSpec",
    "default_spec",
    "load_spec",
    "parse_spec",
]

#: Motion segment types, in the order error messages list them.
MOTIONS = ("walk", "turn", "sit_down", "gesture", "idle")
#: Clothing colour slots every actor sets (sRGB hex colours).
CLOTHING_PARTS = ("shirt", "trousers", "shoes", "skin", "hair")
NUM_BETAS = 10
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_REQUIRED = object()


class SpecError(ValueError):
    """A scene spec field is missing, malformed or inconsistent; the message names the field."""


@dataclass(frozen=True)
class MotionSegment:
    """One step of an actor's script; segments play one after another.

    ``walk`` goes in a straight line to ``to`` (x, y) and ends facing along the path; ``turn`` turns in place
    to ``heading_deg``; ``sit_down`` sits back onto the couch (the actor must stand in front of the seat,
    facing away from the couch back); ``gesture`` waves the arms while talking (standing or seated);
    ``idle`` stands or sits still, breathing.
    """

    type: str
    frames: int
    to: tuple[float, float] | None = None
    heading_deg: float | None = None


@dataclass(frozen=True)
class ActorSpec:
    """An actor: body shape, clothing, where it starts and what it does.

    ``betas`` has 10 entries (SMPL shape), ``scale`` multiplies the body (x = scale * v + transl),
    ``clothing`` maps every name of :data:`CLOTHING_PARTS` to an sRGB ``#rrggbb`` colour, ``start`` is the
    (x, y) floor point under the pelvis at frame 0, ``on_stage`` the inclusive frame range in which the
    actor is on the set (rendered; ``None``: the whole clip).
    """

    name: str
    betas: tuple[float, ...]
    scale: float
    clothing: dict[str, str]
    start: tuple[float, float]
    heading_deg: float
    motion: tuple[MotionSegment, ...]
    on_stage: tuple[int, int] | None = None

    def __hash__(self) -> int:  # clothing is a dict
        return hash(self.name)


@dataclass(frozen=True)
class CameraSpec:
    """A camera (horizontal field of view ``fov_deg``, centred principal point) that looks from ``eye`` at
    ``target``; both move linearly over the whole clip to ``eye_end`` / ``target_end`` (a slow dolly),
    whether or not a shot is using the camera."""

    name: str
    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    fov_deg: float
    eye_end: tuple[float, float, float]
    target_end: tuple[float, float, float]


@dataclass(frozen=True)
class ShotSpec:
    """``frames`` consecutive frames filmed by the camera named ``camera``; shots play in order."""

    camera: str
    frames: int


@dataclass(frozen=True)
class CouchSpec:
    """A couch whose seat front faces ``heading_deg``; ``center`` is the (x, y) centre of its footprint."""

    center: tuple[float, float]
    heading_deg: float
    width: float
    seat_height: float

    #: Footprint depth (front to back, metres) and seat depth (front edge to back cushion).
    depth: ClassVar[float] = 0.9
    seat_depth: ClassVar[float] = 0.6


@dataclass(frozen=True)
class TableSpec:
    """A (coffee) table: footprint centre (x, y), ``size`` (along its own x, y), top height, rotation."""

    center: tuple[float, float]
    size: tuple[float, float]
    height: float
    heading_deg: float


@dataclass(frozen=True)
class StageSpec:
    """The room: ``width`` (x) x ``depth`` (y) x ``height`` (z) metres, a couch and a table in it."""

    width: float
    depth: float
    height: float
    couch: CouchSpec
    table: TableSpec


@dataclass(frozen=True)
class RenderSpec:
    """Cycles settings: path-tracing ``samples`` per pixel and whether OpenImageDenoise runs after."""

    samples: int
    denoise: bool


@dataclass(frozen=True)
class BackgroundSpec:
    """Extra photographs of the empty set (the TV-show setting's "background images of the same set, from other
    episodes"): ``count`` views rendered with the clip's scene but without the actors, from cameras placed
    automatically (``showmaker.synth.background``) at ``eye_height`` metres (give or take ``height_jitter``)
    around the region the clip's cameras look at, spread over their viewing directions widened by
    ``margin_deg`` on each side and over their distances, so that neighbouring views overlap and together see
    what every shot sees. ``fov_deg`` is the horizontal field of view, ``resolution`` [width, height] the image
    size (``None``: the clip's)."""

    count: int = 0
    fov_deg: float = 60.0
    eye_height: float = 1.6
    height_jitter: float = 0.15
    margin_deg: float = 15.0
    resolution: tuple[int, int] | None = None


@dataclass(frozen=True)
class SceneSpec:
    """A whole synthetic clip: size, timing, render settings, stage, cameras, shots and actors, and optional
    background images of the set."""

    seed: int
    width: int
    height: int
    fps: float
    frame_count: int
    render: RenderSpec
    stage: StageSpec
    cameras: tuple[CameraSpec, ...]
    shots: tuple[ShotSpec, ...]
    actors: tuple[ActorSpec, ...]
    background: BackgroundSpec = BackgroundSpec()

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data in the file layout; ``parse_spec(spec.to_dict()) == spec``."""
        d = dataclasses.asdict(self)
        d["resolution"] = [d.pop("width"), d.pop("height")]
        if self.background == BackgroundSpec():  # no background images: left out, as in older specs
            del d["background"]
        elif d["background"]["resolution"] is None:
            del d["background"]["resolution"]
        for actor in d["actors"]:
            actor["motion"] = [{k: v for k, v in seg.items() if v is not None} for seg in actor["motion"]]
            if actor["on_stage"] is None:
                del actor["on_stage"]
        return _lists(d)

    def with_size(self, width: int, height: int) -> "SceneSpec":
        """The same clip at another resolution (the fields of view stay, so the pictures scale)."""
        d = self.to_dict()
        d["resolution"] = [width, height]
        return parse_spec(d)

    def with_frames(self, frame_count: int) -> "SceneSpec":
        """The same story told in ``frame_count`` frames: shot and motion lengths scale proportionally
        (shots and motion segments keep at least one frame each; there must be at least as many frames as
        shots, and an actor with more segments than frames loses its last ones)."""
        if frame_count < len(self.shots):
            raise SpecError(f"frame_count: {frame_count} frames cannot hold {len(self.shots)} shots")
        d = self.to_dict()
        ratio = frame_count / self.frame_count
        lengths = _scale_lengths([s.frames for s in self.shots], frame_count)
        for shot, n in zip(d["shots"], lengths):
            shot["frames"] = n
        for actor in d["actors"]:
            for seg in actor["motion"]:
                seg["frames"] = max(1, math.floor(seg["frames"] * ratio))
            while sum(seg["frames"] for seg in actor["motion"]) > frame_count:
                longest = max(actor["motion"], key=lambda s: s["frames"])
                if longest["frames"] > 1:
                    longest["frames"] -= 1
                else:  # more segments than frames: the story's end is cut
                    actor["motion"].pop()
            if "on_stage" in actor:
                first, last = actor["on_stage"]
                actor["on_stage"] = [min(round(first * ratio), frame_count - 1), min(round(last * ratio), frame_count - 1)]
        d["frame_count"] = frame_count
        return parse_spec(d)


def _lists(x):
    """Tuples -> lists, recursively (JSON's shape of the data)."""
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


def _scale_lengths(lengths: list[int], total: int) -> list[int]:
    """Scale positive integer ``lengths`` to add up to ``total`` (largest remainder), each at least 1."""
    scale = total / sum(lengths)
    raw = [max(1.0, n * scale) for n in lengths]
    out = [int(math.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    i = 0
    while sum(out) < total:
        out[order[i % len(out)]] += 1
        i += 1
    while sum(out) > total:
        j = max(range(len(out)), key=lambda k: out[k])
        out[j] -= 1
    return out


class _Obj:
    """A JSON object being read field by field; unknown fields are an error at :meth:`done`."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise SpecError(f"{where}: expected an object, got {type(data).__name__}")
        self.data, self.where, self.seen = data, where, set()

    def raw(self, key: str, default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise SpecError(f"{self.where}.{key}: missing (required)")
            return default
        return self.data[key]

    def number(self, key: str, default: Any = _REQUIRED, lo: float = -math.inf, hi: float = math.inf,
               open_lo: bool = False) -> float:
        return _number(self.raw(key, default), f"{self.where}.{key}", lo, hi, open_lo)

    def integer(self, key: str, default: Any = _REQUIRED, lo: int = 0, hi: int = 2**31) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"{self.where}.{key}: expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise SpecError(f"{self.where}.{key}: {v} is out of range [{lo}, {hi}]")
        return v

    def vector(self, key: str, n: int, default: Any = _REQUIRED, lo: float = -math.inf,
               hi: float = math.inf) -> tuple[float, ...] | None:
        v = self.raw(key, default)
        if v is None:
            return None
        where = f"{self.where}.{key}"
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise SpecError(f"{where}: expected a list of {n} numbers, got {v!r}")
        return tuple(_number(x, f"{where}[{i}]", lo, hi) for i, x in enumerate(v))

    def name(self, key: str) -> str:
        v = self.raw(key)
        if not isinstance(v, str) or not _NAME.match(v):
            raise SpecError(f"{self.where}.{key}: expected a name of 1-32 letters, digits, '_' or '-', got {v!r}")
        return v

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise SpecError(f"{self.where}: unknown field '{extra[0]}'; expected one of {', '.join(sorted(self.seen))}")


def _number(v: Any, where: str, lo: float, hi: float, open_lo: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpecError(f"{where}: expected a finite number, got {v!r}")
    if v < lo or v > hi or (open_lo and v == lo):
        lo_b = "(" if open_lo else "["
        raise SpecError(f"{where}: {v} is out of range {lo_b}{lo}, {hi}]")
    return float(v)


def _list(v: Any, where: str, min_len: int = 1) -> list:
    if not isinstance(v, list) or len(v) < min_len:
        raise SpecError(f"{where}: expected a list of at least {min_len} item(s), got {v!r}")
    return v


def _segment(data: Any, where: str) -> MotionSegment:
    o = _Obj(data, where)
    kind = o.raw("type")
    if kind not in MOTIONS:
        raise SpecError(f"{where}.type: unknown motion {kind!r}; expected one of {', '.join(MOTIONS)}")
    frames = o.integer("frames", lo=1)
    to = o.vector("to", 2) if kind == "walk" else None
    heading = o.number("heading_deg", lo=-360, hi=360) if kind == "turn" else None
    o.done()
    return MotionSegment(kind, frames, to, heading)


def _actor(data: Any, where: str, frame_count: int) -> ActorSpec:
    o = _Obj(data, where)
    name = o.name("name")
    betas = _list(o.raw("betas", [0.0] * NUM_BETAS), f"{where}.betas", 0)
    if len(betas) > NUM_BETAS:
        raise SpecError(f"{where}.betas: at most {NUM_BETAS} values, got {len(betas)}")
    betas = tuple(_number(b, f"{where}.betas[{i}]", -3, 3) for i, b in enumerate(betas))
    betas += (0.0,) * (NUM_BETAS - len(betas))
    scale = o.number("scale", 1.0, lo=0.5, hi=1.5)
    clothing_obj = _Obj(o.raw("clothing"), f"{where}.clothing")
    clothing = {}
    for part in CLOTHING_PARTS:
        c = clothing_obj.raw(part)
        if not isinstance(c, str) or not _HEX.match(c):
            raise SpecError(f"{where}.clothing.{part}: expected an sRGB colour '#rrggbb', got {c!r}")
        clothing[part] = c.lower()
    clothing_obj.done()
    start = o.vector("start", 2)
    heading = o.number("heading_deg", 0.0, lo=-360, hi=360)
    segs = _list(o.raw("motion"), f"{where}.motion")
    motion = tuple(_segment(s, f"{where}.motion[{i}]") for i, s in enumerate(segs))
    total = sum(s.frames for s in motion)
    if total > frame_count:
        raise SpecError(f"{where}.motion: segments last {total} frames, more than spec.frame_count ({frame_count})")
    on_stage = o.raw("on_stage", None)
    if on_stage is not None:
        if (not isinstance(on_stage, list) or len(on_stage) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in on_stage)):
            raise SpecError(f"{where}.on_stage: expected [first, last] frame indices, got {on_stage!r}")
        first, last = on_stage
        if not 0 <= first <= last <= frame_count - 1:
            raise SpecError(f"{where}.on_stage: [{first}, {last}] is not a frame range in [0, {frame_count - 1}]")
        on_stage = (first, last)
    o.done()
    return ActorSpec(name, betas, scale, clothing, start, heading, motion, on_stage)


def _camera(data: Any, where: str) -> CameraSpec:
    o = _Obj(data, where)
    name = o.name("name")
    eye, target = o.vector("eye", 3), o.vector("target", 3)
    fov = o.number("fov_deg", lo=5, hi=120)
    eye_end, target_end = o.vector("eye_end", 3, eye), o.vector("target_end", 3, target)
    o.done()
    for key, e, t in (("target", eye, target), ("target_end", eye_end, target_end)):
        d = [b - a for a, b in zip(e, t)]
        if math.hypot(*d) < 1e-3:
            raise SpecError(f"{where}.{key}: coincides with the eye")
        if math.hypot(d[0], d[1]) < 1e-3 * math.hypot(*d):
            raise SpecError(f"{where}.{key}: the camera looks straight up or down (undefined roll)")
    return CameraSpec(name, eye, target, fov, eye_end, target_end)


def _resolution(res: Any, where: str, video: bool) -> tuple[int, int]:
    """[width, height] in [16, 4096]; even sizes for a ``video`` (H.264 4:2:0)."""
    if (not isinstance(res, list) or len(res) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in res)):
        raise SpecError(f"{where}: expected [width, height] in pixels, got {res!r}")
    width, height = res
    if video and (not (16 <= width <= 4096 and 16 <= height <= 4096) or width % 2 or height % 2):
        raise SpecError(f"{where}: {width}x{height} must be even sizes in [16, 4096] (H.264 4:2:0)")
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise SpecError(f"{where}: {width}x{height} must be sizes in [16, 4096]")
    return width, height


def _background(data: Any, where: str) -> BackgroundSpec:
    o = _Obj(data, where)
    d = BackgroundSpec()
    count = o.integer("count", lo=0, hi=1000)
    fov = o.number("fov_deg", d.fov_deg, lo=20, hi=120)
    eye_height = o.number("eye_height", d.eye_height, lo=0.3, hi=3.0)
    jitter = o.number("height_jitter", d.height_jitter, lo=0, hi=1.0)
    margin = o.number("margin_deg", d.margin_deg, lo=0, hi=90)
    res = o.raw("resolution", None)
    res = None if res is None else _resolution(res, f"{where}.resolution", video=False)
    o.done()
    return BackgroundSpec(count, fov, eye_height, jitter, margin, res)


def _stage(data: Any, where: str) -> StageSpec:
    o = _Obj(data, where)
    width = o.number("width", lo=2, hi=20)
    depth = o.number("depth", lo=2, hi=20)
    height = o.number("height", lo=2, hi=6)
    c = _Obj(o.raw("couch"), f"{where}.couch")
    couch = CouchSpec(c.vector("center", 2), c.number("heading_deg", lo=-360, hi=360),
                      c.number("width", 2.0, lo=1.0, hi=4.0), c.number("seat_height", 0.45, lo=0.3, hi=0.7))
    c.done()
    t = _Obj(o.raw("table"), f"{where}.table")
    table = TableSpec(t.vector("center", 2), t.vector("size", 2, lo=0.3, hi=3.0), t.number("height", lo=0.2, hi=1.2),
                      t.number("heading_deg", 0.0, lo=-360, hi=360))
    t.done()
    o.done()
    stage = StageSpec(width, depth, height, couch, table)
    for key, c, h, size in (("couch", couch.center, couch.heading_deg - 90.0, (couch.width, couch.depth)),
                            ("table", table.center, table.heading_deg, table.size)):
        a = math.radians(h)
        for sx in (-0.5, 0.5):
            for sy in (-0.5, 0.5):
                x, y = sx * size[0], sy * size[1]
                corner = (c[0] + x * math.cos(a) - y * math.sin(a), c[1] + x * math.sin(a) + y * math.cos(a))
                try:
                    _check_in_room(stage, corner, "")
                except SpecError:
                    raise SpecError(f"{where}.{key}.center: the {key} at ({c[0]:g}, {c[1]:g}) sticks out of the "
                                    f"room (corner at ({corner[0]:.2f}, {corner[1]:.2f}))") from None
    return stage


def _check_in_room(stage: StageSpec, xy: tuple[float, float], where: str, margin: float = 0.0) -> None:
    hx, hy = stage.width / 2 - margin, stage.depth / 2 - margin
    if not (-hx <= xy[0] <= hx and -hy <= xy[1] <= hy):
        raise SpecError(
            f"{where}: ({xy[0]:g}, {xy[1]:g}) is outside the room "
            f"(x in [{-hx:g}, {hx:g}], y in [{-hy:g}, {hy:g}])"
        )


def _check_script(actor: ActorSpec, stage: StageSpec, where: str) -> None:
    """Walk targets stay in the room; ``sit_down`` starts in front of the seat, facing away from the couch."""
    _check_in_room(stage, actor.start, f"{where}.start", margin=0.2)
    xy, heading = actor.start, actor.heading_deg
    couch = stage.couch
    for i, seg in enumerate(actor.motion):
        w = f"{where}.motion[{i}]"
        if seg.type == "walk":
            _check_in_room(stage, seg.to, f"{w}.to", margin=0.2)
            if math.dist(seg.to, xy) > 1e-6:
                heading = math.degrees(math.atan2(seg.to[1] - xy[1], seg.to[0] - xy[0]))
            xy = seg.to
        elif seg.type == "turn":
            heading = seg.heading_deg
        elif seg.type == "sit_down":
            h = math.radians(couch.heading_deg)
            fwd, side = (math.cos(h), math.sin(h)), (-math.sin(h), math.cos(h))
            rel = (xy[0] - couch.center[0], xy[1] - couch.center[1])
            along = rel[0] * fwd[0] + rel[1] * fwd[1]  # distance in front of the footprint centre
            across = rel[0] * side[0] + rel[1] * side[1]
            if not (couch.depth / 2 - 0.15 <= along <= couch.depth / 2 + 0.6 and abs(across) <= couch.width / 2 - 0.35):
                raise SpecError(
                    f"{w}: sit_down starts at ({xy[0]:g}, {xy[1]:g}), which is not in front of the couch seat "
                    f"(within 0.6 m of its front, at least 0.35 m inside its ends)"
                )
            off = (heading - couch.heading_deg + 180.0) % 360.0 - 180.0
            if abs(off) > 30.0:
                raise SpecError(
                    f"{w}: sit_down starts facing heading {heading:g} deg; face away from the couch "
                    f"(within 30 deg of its heading_deg {couch.heading_deg:g}) before sitting"
                )


def parse_spec(data: Any) -> SceneSpec:
    """Validate JSON-like ``data`` (the file layout, see ``docs/synthetic_clip.md``) into a :class:`SceneSpec`."""
    o = _Obj(data, "spec")
    seed = o.integer("seed", 0)
    width, height = _resolution(o.raw("resolution"), "spec.resolution", video=True)
    fps = o.number("fps", lo=1, hi=120)
    frame_count = o.integer("frame_count", lo=1, hi=100_000)
    r = _Obj(o.raw("render", {}), "spec.render")
    samples = r.integer("samples", 16, lo=1, hi=4096)
    denoise = r.raw("denoise", True)
    if not isinstance(denoise, bool):
        raise SpecError(f"spec.render.denoise: expected true or false, got {denoise!r}")
    r.done()
    stage = _stage(o.raw("stage"), "spec.stage")

    cameras = tuple(_camera(c, f"spec.cameras[{i}]") for i, c in enumerate(_list(o.raw("cameras"), "spec.cameras")))
    names = [c.name for c in cameras]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise SpecError(f"spec.cameras[{i}].name: duplicate camera name {n!r}")

    shots = []
    for i, s in enumerate(_list(o.raw("shots"), "spec.shots")):
        so = _Obj(s, f"spec.shots[{i}]")
        cam = so.raw("camera")
        if cam not in names:
            raise SpecError(f"spec.shots[{i}].camera: unknown camera {cam!r}; expected one of {', '.join(names)}")
        shots.append(ShotSpec(cam, so.integer("frames", lo=1)))
        so.done()
    total = sum(s.frames for s in shots)
    if total != frame_count:
        raise SpecError(f"spec.shots: shot lengths add up to {total} frames but spec.frame_count is {frame_count}")
    for i in range(1, len(shots)):
        if shots[i].camera == shots[i - 1].camera:
            raise SpecError(f"spec.shots[{i}].camera: same camera as the shot before, so there is no cut; merge them")

    actor_data = _list(o.raw("actors"), "spec.actors", 0)
    if len(actor_data) > 254:
        raise SpecError("spec.actors: at most 254 actors (mask ids are uint8, 0 = stage)")
    actors = tuple(_actor(a, f"spec.actors[{i}]", frame_count) for i, a in enumerate(actor_data))
    for i, a in enumerate(actors):
        if a.name in [b.name for b in actors[:i]]:
            raise SpecError(f"spec.actors[{i}].name: duplicate actor name {a.name!r}")
        _check_script(a, stage, f"spec.actors[{i}]")
    background = _background(o.raw("background", {"count": 0}), "spec.background")
    o.done()
    return SceneSpec(seed, width, height, fps, frame_count, RenderSpec(samples, denoise), stage, cameras,
                     tuple(shots), actors, background)


def load_spec(path: str | Path) -> SceneSpec:
    """Read and validate a scene spec JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec: {path.name} is not valid JSON ({exc})") from exc
    return parse_spec(data)


def default_spec() -> SceneSpec:
    """The packaged default scene (``showmaker/synth/default_scene.json``)."""
    text = resources.files(__package__).joinpath("default_scene.json").read_text(encoding="utf-8")
    return parse_spec(json.loads(text))
