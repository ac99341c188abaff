"""Convert an SMPL ``.pkl`` that needs chumpy into a plain ``.npz`` - without chumpy.

    python -m showmaker.body.convert_smpl basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl SMPL_NEUTRAL.npz

The official SMPL pickles keep some arrays (e.g. ``shapedirs``) as chumpy objects. Unpickling here
swaps every chumpy class for a stand-in that keeps the pickled state, then takes a plain chumpy
array's data from its ``x`` attribute; scipy sparse matrices (``J_regressor``) become dense. The
result is validated as an SMPL model before it is written (atomically).
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
import scipy.sparse

from ..atomic import atomic_write_bytes
from .model import BodyModelError, SmplUnpickler, validate_model_arrays

__all__ = ["convert_smpl", "load_smpl_pickle", "main"]


class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling and keeps the object's pickled state."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {k: v for d in state if d for k, v in d.items()})


def load_smpl_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The numeric (and string) arrays of an SMPL pickle, chumpy or not, by key; other entries are dropped."""
    with open(path, "rb") as f:
        raw = SmplUnpickler(f, chumpy_stand_in=_ChumpyStandIn).load()
    if not isinstance(raw, dict):
        raise BodyModelError(f"{path}: expected a pickled dict of SMPL arrays, found {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        if isinstance(value, _ChumpyStandIn):
            value = getattr(value, "x", None)  # a plain chumpy array keeps its data in .x
        if scipy.sparse.issparse(value):
            value = value.toarray()
        if isinstance(value, np.ndarray) and value.dtype.kind in "biufU":
            out[key] = value
    return out


def convert_smpl(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, np.ndarray]:
    """Write the SMPL arrays of pickle ``src`` to the ``.npz`` ``dst``; returns them."""
    arrays = load_smpl_pickle(src)
    validate_model_arrays(arrays, src)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(dst, buffer.getvalue())
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m showmaker.body.convert_smpl", description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path, help="SMPL .pkl file (chumpy or not)")
    parser.add_argument("dst", type=Path, help="output .npz, e.g. SMPL_NEUTRAL.npz in your SHOWMAKER_SMPL_DIR")
    args = parser.parse_args(argv)
    arrays = convert_smpl(args.src, args.dst)
    print(f"wrote {args.dst}: {len(arrays['v_template'])} vertices, keys {', '.join(sorted(arrays))}")


if __name__ == "__main__":
    main()
