"""Gaussian PLY files: lossless round trip, files written by other 3DGS tools, clear errors, atomic writes,
and the GaussianSet container."""
import os

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from showmaker.atomic import CorruptFileError
from showmaker.splat import GaussianSet, load_ply, save_ply

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")


def random_set(n=7, k=16, seed=0) -> GaussianSet:
    g = torch.Generator().manual_seed(seed)
    return GaussianSet(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g),
                       torch.randn(n, generator=g), torch.randn(n, 1, 3, generator=g),
                       torch.randn(n, k - 1, 3, generator=g))


def assert_sets_equal(a: GaussianSet, b: GaussianSet):
    for f in FIELDS:
        assert torch.equal(getattr(a, f), getattr(b, f)), f


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_round_trip_is_lossless(tmp_path, k):
    gs = random_set(k=k)
    save_ply(tmp_path / "g.ply", gs)
    back = load_ply(tmp_path / "g.ply")
    assert_sets_equal(gs, back)
    assert back.sh_degree == {1: 0, 4: 1, 9: 2, 16: 3}[k]
    names = [p.name for p in PlyData.read(str(tmp_path / "g.ply"))["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len(names) == 17 + 3 * (k - 1)


def write_3dgs_file(path, n, k, text, byte_order="<", extra=True, normals=False):
    """A file as the reference 3DGS code lays it out (f_rest channel-major), optionally with other tools'
    extra properties and without normals. Values encode (vertex, property) so any mix-up shows."""
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals else []) + ["f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))] + ["opacity", "scale_0", "scale_1", "scale_2"]
    names += ["rot_0", "rot_1", "rot_2", "rot_3"] + (["red", "filter_3D"] if extra else [])
    rows = np.empty(n, dtype=[(name, byte_order + "f4") for name in names])
    for j, name in enumerate(names):
        rows[name] = np.arange(n) * 1000 + j
    PlyData([PlyElement.describe(rows, "vertex")], text=text, byte_order=byte_order).write(str(path))
    return {name: np.arange(n) * 1000.0 + j for j, name in enumerate(names)}


@pytest.mark.parametrize("text,byte_order", [(True, "="), (False, "<"), (False, ">")])
def test_reads_files_from_other_tools(tmp_path, text, byte_order):
    n, k = 4, 9
    cols = write_3dgs_file(tmp_path / "other.ply", n, k, text, byte_order)
    gs = load_ply(tmp_path / "other.ply")
    col = lambda *names: torch.tensor(np.stack([cols[c] for c in names], 1), dtype=torch.float32)  # noqa: E731
    assert torch.equal(gs.means, col("x", "y", "z"))
    assert torch.equal(gs.quats, col("rot_0", "rot_1", "rot_2", "rot_3"))
    assert torch.equal(gs.log_scales, col("scale_0", "scale_1", "scale_2"))
    assert torch.equal(gs.opacity_logits, col("opacity")[:, 0])
    assert torch.equal(gs.sh0[:, 0], col("f_dc_0", "f_dc_1", "f_dc_2"))
    for c in range(3):  # channel-major: f_rest_{c (K-1) + i} is coefficient i+1 of channel c
        for i in range(k - 1):
            assert torch.equal(gs.shN[:, i, c], col(f"f_rest_{c * (k - 1) + i}")[:, 0])


def test_missing_properties_are_named(tmp_path):
    rows = np.zeros(2, dtype=[(p, "<f4") for p in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity")])
    PlyData([PlyElement.describe(rows, "vertex")]).write(str(tmp_path / "bad.ply"))
    with pytest.raises(CorruptFileError, match="scale_0, scale_1, scale_2, rot_0, rot_1, rot_2, rot_3"):
        load_ply(tmp_path / "bad.ply")


def test_bad_sh_count_and_non_ply_are_rejected(tmp_path):
    write_3dgs_file(tmp_path / "rest.ply", 2, 3, text=False)  # 6 f_rest: no SH degree has 3 coefficients
    with pytest.raises(CorruptFileError, match="6 f_rest"):
        load_ply(tmp_path / "rest.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(CorruptFileError, match="not a readable PLY"):
        load_ply(tmp_path / "junk.ply")


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "scene.ply"
    first = random_set(seed=1)
    save_ply(path, first)
    save_ply(path, random_set(seed=2))  # replacing leaves no temporary files behind
    assert os.listdir(tmp_path) == ["scene.ply"]
    save_ply(path, first)

    def fsync_fails(fd):
        raise OSError("disk unplugged")
    monkeypatch.setattr(os, "fsync", fsync_fails)  # the new file is fully written, then the sync fails
    with pytest.raises(OSError, match="unplugged"):
        save_ply(path, random_set(seed=3))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["scene.ply"]
    assert_sets_equal(load_ply(path), first)


def test_gaussian_set_helpers():
    a, b = random_set(n=3, k=4, seed=1), random_set(n=5, k=4, seed=2)
    both = GaussianSet.cat([a, b])
    assert len(both) == 8 and both.sh_degree == 1 and both.sh.shape == (8, 4, 3)
    assert_sets_equal(both[3:], b)
    assert torch.equal(both.scales, torch.exp(both.log_scales))
    assert torch.equal(both.opacities, torch.sigmoid(both.opacity_logits))
    with pytest.raises(ValueError, match="SH degrees"):
        GaussianSet.cat([a, random_set(k=1)])
    with pytest.raises(ValueError, match="quats must be"):
        GaussianSet(a.means, a.quats[:, :3], a.log_scales, a.opacity_logits, a.sh0, a.shN)
