"""One body-model API over the user's SMPL files or the project's procedural body, both run by
``smplx.SMPL`` (the same code path, fed through its ``data_struct`` argument).

Frames: the model frame is SMPL's (+y up, the body faces +z, metres). :meth:`BodyModel.forward`
places the body in the stage as METHOD eq. 9 does: ``x = scale * v(pose, betas) + transl``, where
``v`` is smplx's output without its ``transl`` (the root joint stays at its rest position
``rest_joints(betas)[:, 0]``, about which the global orientation turns) and ``scale`` multiplies about
the model-frame origin. The procedural body's pelvis rests at the origin; real SMPL's rests about
0.2 m below it, so read positions from ``joints`` rather than assuming the pelvis is at the origin.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.lbs import blend_shapes, vertices2joints
from smplx.utils import Struct
from torch import Tensor

from .joints import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from .procedural import ensure_procedural_model

__all__ = [
    "ENV_SMPL_DIR",
    "EXTRA_JOINT_KEYS",
    "GENDERS",
    "SMPL_KEYS",
    "BodyModel",
    "BodyModelError",
    "BodyOutput",
    "find_smpl_file",
    "load_body_model",
    "read_model_file",
    "smpl_file_names",
    "validate_model_arrays",
]

ENV_SMPL_DIR = "SHOWMAKER_SMPL_DIR"
GENDERS = ("neutral", "male", "female")
SMPL_NUM_VERTICES = 6890
_SMPL_SITE = "https://smpl.is.tue.mpg.de (free registration)"
SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
# smplx's extra joints (appended after the 24) are read off these vertices.
EXTRA_JOINT_KEYS = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    *(f"{s}{f}" for s in "lr" for f in ("thumb", "index", "middle", "ring", "pinky")),
)  # fmt: skip


class BodyModelError(ValueError):
    """A body model is missing or malformed; the message names the problem and the fix."""


@dataclass(frozen=True)
class BodyOutput:
    """vertices [B, V, 3] and joints [B, 24, 3] (the SMPL joints only), in stage space."""

    vertices: Tensor
    joints: Tensor


def smpl_file_names(gender: str) -> list[str]:
    """File names looked up (in any letter case) for ``gender``, in order of preference."""
    short = {"neutral": "neutral", "male": "m", "female": "f"}[gender]
    stems = [f"SMPL_{gender.upper()}", *(f"basicmodel_{short}_lbs_10_207_0_v1.{v}.0" for v in (1, 0))]
    return [s + ext for ext in (".npz", ".pkl") for s in stems]


def find_smpl_file(smpl_dir: str | os.PathLike, gender: str = "neutral") -> Path:
    """The SMPL model file for ``gender``: ``smpl_dir`` itself if it is a file, else the first of
    :func:`smpl_file_names` found in ``smpl_dir`` or ``smpl_dir/smpl``."""
    root = Path(smpl_dir).expanduser()
    names = smpl_file_names(gender)
    how = (
        f"Download SMPL from {_SMPL_SITE} and put {names[0]} (or {names[4]}) in it, "
        f"or unset {ENV_SMPL_DIR} and pass no smpl_dir to use the built-in procedural body."
    )
    if root.is_file():
        return root
    if not root.is_dir():
        raise BodyModelError(f"SMPL directory {root} does not exist (from smpl_dir or ${ENV_SMPL_DIR}). {how}")
    folders = [f for f in (root, root / "smpl") if f.is_dir()]
    for name in names:
        for folder in folders:
            for entry in folder.iterdir():
                if entry.name.lower() == name.lower() and entry.is_file():
                    return entry
    found = sorted(e.name for f in folders for e in f.iterdir())
    raise BodyModelError(
        f"no {gender} SMPL model in {root}: looked for {', '.join(names)} (any letter case) in {root} "
        f"and {root / 'smpl'}; found {', '.join(found) or 'nothing'}. {how}"
    )


class SmplUnpickler(pickle.Unpickler):
    """Unpickles an SMPL ``.pkl`` (latin-1, Python 2 era) allowing only the classes such files hold: numpy
    arrays and dtypes, scipy sparse matrices and plain objects. Any other class (a crafted file calling
    ``os.system``, say) is refused. chumpy classes raise ``ModuleNotFoundError('chumpy')`` unless
    ``chumpy_stand_in`` is given, which then takes their place (see ``convert_smpl``)."""

    _NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def __init__(self, file, chumpy_stand_in: type | None = None):
        super().__init__(file, encoding="latin1")
        self._chumpy = chumpy_stand_in

    def find_class(self, module: str, name: str):
        root = module.split(".")[0]
        if root == "chumpy":
            if self._chumpy is None:
                raise ModuleNotFoundError(f"No module named {module!r}", name="chumpy")
            return self._chumpy
        allowed = (
            (root == "numpy" and name in self._NUMPY_NAMES)
            or (module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")))
            or (module in ("copy_reg", "copyreg") and name == "_reconstructor")
            or (module in ("__builtin__", "builtins") and name == "object")
            or (module == "_codecs" and name == "encode")  # bytes in protocol-2 pickles written by Python 3
        )
        if not allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of an SMPL model file")
        return super().find_class(module, name)


def read_model_file(path: str | os.PathLike) -> dict[str, object]:
    """The arrays of an SMPL-format ``.npz`` or (chumpy-free) ``.pkl`` file, by key."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BodyModelError(
                f"{path}: cannot read it as an .npz of plain arrays ({type(exc).__name__}: {exc}); "
                f"replace it with a good copy (numpy.savez of the SMPL keys)"
            ) from exc
    if path.suffix.lower() == ".pkl":
        try:
            with open(path, "rb") as f:
                data = SmplUnpickler(f).load()
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "chumpy":
                raise
            raise BodyModelError(
                f"{path} stores arrays as chumpy objects, and chumpy is not installed (ShowMaker does not "
                f"use it). Convert the file once into a plain .npz (no chumpy needed): "
                f"python -m showmaker.body.convert_smpl {path} {path.with_suffix('.npz')}"
            ) from exc
        except Exception as exc:
            raise BodyModelError(
                f"{path}: cannot unpickle it ({type(exc).__name__}: {exc}); replace it with a good copy"
            ) from exc
        if not isinstance(data, dict):
            raise BodyModelError(f"{path}: expected a pickled dict of SMPL arrays, found {type(data).__name__}")
        return data
    raise BodyModelError(f"{path}: unknown model format {path.suffix!r}; use an SMPL .npz or .pkl file")


def validate_model_arrays(data: dict[str, object], path: str | os.PathLike) -> None:
    """Check the SMPL keys and shapes (and, for a non-SMPL vertex count, smplx's extra-joint vertices)."""
    missing = [k for k in SMPL_KEYS if k not in data]
    if missing:
        raise BodyModelError(
            f"{path}: missing key(s) {', '.join(missing)}; an SMPL model file needs {', '.join(SMPL_KEYS)}"
        )
    shape = {k: tuple(getattr(v, "shape", np.shape(v))) for k, v in data.items()}
    n = shape["v_template"][0] if len(shape["v_template"]) == 2 else None
    expected = {
        "v_template": ((n, 3), "[V, 3]"),
        "shapedirs": ((n, 3, None), "[V, 3, num_betas]"),
        "posedirs": ((n, 3, 9 * (NUM_JOINTS - 1)), "[V, 3, 207]"),
        "J_regressor": ((NUM_JOINTS, n), "[24, V]"),
        "weights": ((n, NUM_JOINTS), "[V, 24]"),
        "kintree_table": ((2, NUM_JOINTS), "[2, 24]"),
        "f": ((None, 3), "[F, 3]"),
    }
    for key, (want, text) in expected.items():
        got = shape[key]
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)) or 0 in got:
            known = "" if n is None else f" (V = {n}, from v_template)"
            raise BodyModelError(f"{path}: key {key!r} has shape {list(got)}, expected {text}{known}")
    if not np.array_equal(np.asarray(data["kintree_table"])[0, 1:], SMPL_PARENTS[1:]):
        raise BodyModelError(f"{path}: kintree_table[0] is not SMPL's kinematic tree {SMPL_PARENTS.tolist()}")
    faces = np.asarray(data["f"])
    if faces.min() < 0 or faces.max() >= n:
        raise BodyModelError(f"{path}: key 'f' indexes vertices outside 0..{n - 1}")
    if n != SMPL_NUM_VERTICES:
        names = [str(s) for s in np.asarray(data.get("extra_joint_names", []))]
        ids = np.asarray(data.get("extra_joint_vertices", []))
        if sorted(names) != sorted(EXTRA_JOINT_KEYS) or ids.shape != (len(names),) or ids.min() < 0 or ids.max() >= n:
            raise BodyModelError(
                f"{path}: a model with {n} vertices (not SMPL's {SMPL_NUM_VERTICES}) needs keys "
                f"'extra_joint_names' [21] (exactly {', '.join(EXTRA_JOINT_KEYS)}) and "
                f"'extra_joint_vertices' [21] (their vertex indices) for smplx's extra joints"
            )


class BodyModel:
    """A posable SMPL-format body (real SMPL or the procedural body) on one device, float32.

    Attributes: ``faces`` np.int64 [F, 3]; ``num_vertices`` V; ``num_betas``; ``joint_names`` (24);
    ``parents`` np.int64 [24]; ``weights`` torch [V, 24] skinning weights; ``part_labels`` np.uint8 [V]
    (:class:`~showmaker.body.parts.BodyPart` values; None for real SMPL); ``device``; ``source`` (the
    model file).
    """

    def __init__(
        self, data: dict[str, object], source: Path, gender: str = "neutral", device: str | torch.device = "cpu"
    ):
        validate_model_arrays(data, source)
        n = len(np.asarray(data["v_template"]))
        vertex_ids = None  # smplx's own ids, made for SMPL's 6,890-vertex mesh
        if n != SMPL_NUM_VERTICES:
            names = [str(s) for s in np.asarray(data["extra_joint_names"])]
            vertex_ids = dict(zip(names, np.asarray(data["extra_joint_vertices"]).tolist()))
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for any 10-beta model
            self._smpl = smplx.SMPL(
                str(source),
                data_struct=Struct(**data),
                create_betas=False,
                create_global_orient=False,
                create_body_pose=False,
                create_transl=False,
                gender=gender,
                vertex_ids=vertex_ids,
            )
        self.device = torch.device(device)
        self._smpl.to(self.device)
        self.source = Path(source)
        self.faces = np.asarray(data["f"], dtype=np.int64)
        self.num_vertices = n
        self.num_betas = int(self._smpl.num_betas)
        self.joint_names = SMPL_JOINT_NAMES
        self.parents = SMPL_PARENTS.copy()
        self.weights: Tensor = self._smpl.lbs_weights
        labels = data.get("part_labels")
        self.part_labels = None if labels is None else np.asarray(labels, dtype=np.uint8)

    def forward(
        self, pose: Tensor, betas: Tensor | None = None, scale: Tensor | None = None, transl: Tensor | None = None
    ) -> BodyOutput:
        """Pose and place the body.

        pose [B, 24, 3] axis-angle, joint 0 the global orientation; betas [B, num_betas] or [1, num_betas]
        (None: zeros); scale [B] (None: 1); transl [B, 3] (None: 0). Returns stage-space
        ``scale * v + transl`` for the vertices [B, V, 3] and the 24 joints [B, 24, 3]; includes the
        model's pose-corrective blend shapes (zero for the procedural body).
        """
        b = _check(pose, "pose", (None, NUM_JOINTS, 3)).shape[0]
        pose = pose.to(self._smpl.v_template.dtype)
        betas = self._betas(betas, b)
        out = self._smpl(betas=betas, global_orient=pose[:, 0], body_pose=pose[:, 1:].reshape(b, -1))
        vertices, joints = out.vertices, out.joints[:, :NUM_JOINTS]
        if scale is not None:
            s = _check(scale, "scale", (b,)).reshape(b, 1, 1)
            vertices, joints = vertices * s, joints * s
        if transl is not None:
            t = _check(transl, "transl", (b, 3))[:, None]
            vertices, joints = vertices + t, joints + t
        return BodyOutput(vertices, joints)

    __call__ = forward

    def rest_vertices(self, betas: Tensor | None = None) -> Tensor:
        """Rest-pose (T-pose) vertices [B, V, 3] for betas [B, num_betas] (None: one body with zeros)."""
        return self._smpl.v_template + blend_shapes(self._betas(betas), self._smpl.shapedirs)

    def rest_joints(self, betas: Tensor | None = None) -> Tensor:
        """Rest-pose joints [B, 24, 3] = J_regressor @ rest vertices."""
        return vertices2joints(self._smpl.J_regressor, self.rest_vertices(betas))

    def _betas(self, betas: Tensor | None, batch: int | None = None) -> Tensor:
        """betas as [batch, num_betas] in the model's dtype (zeros if None; batch None: betas' own)."""
        if betas is None:
            return torch.zeros(batch or 1, self.num_betas, dtype=self._smpl.v_template.dtype, device=self.device)
        _check(betas, "betas", (None, self.num_betas))
        batch = batch or betas.shape[0]
        if betas.shape[0] not in (1, batch):
            raise ValueError(
                f"betas has batch {betas.shape[0]} but pose has {batch}; "
                f"pass [{batch}, {self.num_betas}] or [1, {self.num_betas}]"
            )
        return betas.to(self._smpl.v_template.dtype).expand(batch, -1)


def load_body_model(
    smpl_dir: str | os.PathLike | None = None, gender: str = "neutral", device: str | torch.device = "cpu"
) -> BodyModel:
    """Load the user's SMPL model from ``smpl_dir`` (default: ``$SHOWMAKER_SMPL_DIR``) or, when
    neither is set, the procedural body (generated into the cache on first use; it has one
    shape for all genders)."""
    if gender not in GENDERS:
        raise BodyModelError(f"gender must be one of {', '.join(GENDERS)}, not {gender!r}")
    smpl_dir = smpl_dir or os.environ.get(ENV_SMPL_DIR) or None
    path = find_smpl_file(smpl_dir, gender) if smpl_dir else ensure_procedural_model()
    return BodyModel(read_model_file(path), path, gender, device)


def _check(t: Tensor, name: str, shape: tuple[int | None, ...]) -> Tensor:
    """``t`` if it is a tensor of ``shape`` (None: any size), else a ValueError naming the expected shape."""
    fits = isinstance(t, Tensor) and t.ndim == len(shape)
    if not fits or any(s is not None and g != s for g, s in zip(t.shape, shape)):
        got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
        want = ", ".join("B" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must be a tensor of shape [{want}], got {got}")
    return t
