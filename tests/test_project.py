"""Atomic writes (incl. a simulated full disk) and the project directory / manifest."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch

from showmaker import atomic
from showmaker.atomic import (
    CorruptFileError,
    DiskFullError,
    atomic_save_npz,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_torch,
)
from showmaker.project import (
    FORMAT_VERSION,
    CorruptManifestError,
    Project,
    ProjectBusyError,
    ProjectError,
    ProjectVersionError,
)

WRITERS = {
    "bytes": (lambda p: atomic_write_bytes(p, b"new"), lambda p: p.read_bytes() == b"new"),
    "text": (lambda p: atomic_write_text(p, "néw"), lambda p: p.read_text(encoding="utf-8") == "néw"),
    "json": (lambda p: atomic_write_json(p, {"b": 1, "a": [2]}),
             lambda p: json.loads(p.read_text()) == {"a": [2], "b": 1}),
    "npz": (lambda p: atomic_save_npz(p, x=np.arange(3)), lambda p: np.load(p)["x"].tolist() == [0, 1, 2]),
    "torch": (lambda p: atomic_torch_save(p, {"w": torch.ones(2)}),
              lambda p: load_torch(p)["w"].tolist() == [1.0, 1.0]),
}


def _raise_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("kind", WRITERS)
def test_atomic_writers_replace_the_file_and_leave_no_temp(tmp_path, kind):
    write, check = WRITERS[kind]
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write(target)
    assert check(target)
    assert os.listdir(tmp_path) == ["out.bin"]


def test_json_is_sorted_and_indented(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": 2})
    assert (tmp_path / "a.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


@pytest.mark.parametrize("kind", WRITERS)
@pytest.mark.parametrize("syscall", ["write", "fsync"])
def test_disk_full_keeps_previous_file_and_names_the_path(tmp_path, monkeypatch, kind, syscall):
    write, _ = WRITERS[kind]
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    monkeypatch.setattr(atomic.os, syscall, _raise_enospc)
    with pytest.raises(DiskFullError) as info:
        write(target)
    monkeypatch.undo()
    message = str(info.value)
    assert str(target) in message and "disk is full" in message and "free space" in message
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_other_write_errors_propagate_unchanged_and_clean_up(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.os, "write", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "x", b"data")
    assert info.value.errno == errno.EIO and not isinstance(info.value, DiskFullError)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


class NotAllowed:
    """Arbitrary classes must not be unpickled by load_torch (weights_only=True)."""


def test_load_torch_rejects_corrupt_files_and_arbitrary_objects(tmp_path):
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CorruptFileError, match="torn.pt: unreadable or corrupt"):
        load_torch(tmp_path / "torn.pt")
    torch.save({"obj": NotAllowed()}, tmp_path / "pickle.pt")
    with pytest.raises(CorruptFileError):
        load_torch(tmp_path / "pickle.pt")
    with pytest.raises(FileNotFoundError):
        load_torch(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------ project
@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(3 << 20))  # over 2 MiB: the fingerprint hashes the first and last MiB
    return path


def test_create_and_open_round_trip(tmp_path, clip):
    project = Project.create(tmp_path / "proj", {"clip": clip}, {"fps": 24})
    manifest = json.loads((project.root / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["config"] == {"fps": 24}
    rec = manifest["inputs"]["clip"]
    assert rec["path"] == str(clip.absolute()) and not rec["copied"] and rec["size"] == 3 << 20
    assert len(rec["sha256"]) == 64 and rec["mtime_ns"] == clip.stat().st_mtime_ns
    opened = Project.open(tmp_path / "proj")
    assert opened.input_path("clip") == clip.absolute()
    assert opened.stage_dir("depth") == project.root / "stages" / "depth"
    assert opened.stage("depth").status == "pending"
    with pytest.raises(ValueError, match="invalid stage name"):
        opened.stage_dir("../outside")


def test_create_refuses_existing_project_or_non_empty_directory(tmp_path, clip):
    Project.create(tmp_path / "proj", {"clip": clip})
    with pytest.raises(ProjectError, match="already a ShowMaker project"):
        Project.create(tmp_path / "proj", {"clip": clip})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ProjectError, match="not an empty directory"):
        Project.create(tmp_path / "busy", {"clip": clip})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Project.create(tmp_path / "new", {"clip": tmp_path / "nope.mp4"})


def test_copied_inputs_make_the_project_self_contained(tmp_path, clip):
    data = clip.read_bytes()
    project = Project.create(tmp_path / "proj", {"clip": clip}, copy_inputs=True)
    clip.unlink()
    opened = Project.open(project.root)
    assert opened.inputs["clip"].path == "inputs/clip.mp4"
    assert opened.input_path("clip").read_bytes() == data
    assert opened.refresh_inputs() == []


def test_refresh_inputs_detects_content_changes_not_touches(tmp_path, clip):
    project = Project.create(tmp_path / "proj", {"clip": clip})
    os.utime(clip, ns=(1, 1))
    assert project.refresh_inputs() == []
    with open(clip, "r+b") as f:  # change a byte in the last MiB, same size
        f.seek((3 << 20) - 10)
        f.write(b"0123456789")
    assert project.refresh_inputs() == ["clip"]
    clip.unlink()
    with pytest.raises(FileNotFoundError, match="'clip'.*is missing"):
        project.refresh_inputs()


def test_newer_format_version_asks_to_update(tmp_path, clip):
    project = Project.create(tmp_path / "proj", {"clip": clip})
    manifest = json.loads((project.root / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (project.root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ProjectVersionError, match="update ShowMaker"):
        Project.open(project.root)


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "bad_status"])
def test_corrupt_manifest_is_a_clear_error_and_backup_is_kept(tmp_path, clip, damage):
    project = Project.create(tmp_path / "proj", {"clip": clip})
    project.stage("ingest").status = "done"
    project.save()  # the creation-time manifest becomes manifest.json.bak
    mpath = project.root / "manifest.json"
    good = json.loads(mpath.read_text())
    if damage == "truncated":
        mpath.write_text(mpath.read_text()[:40])
    elif damage == "wrong_shape":
        mpath.write_text(json.dumps({"format_version": 1, "stages": []}))
    else:
        good["stages"]["ingest"]["status"] = "exploded"
        mpath.write_text(json.dumps(good))
    with pytest.raises(CorruptManifestError, match="corrupt manifest.*manifest.json.bak"):
        Project.open(project.root)
    backup = json.loads((project.root / "manifest.json.bak").read_text())
    assert backup["inputs"]["clip"]["size"] == 3 << 20 and backup["stages"] == {}


def test_open_non_project_and_busy_lock(tmp_path, clip):
    with pytest.raises(ProjectError, match="not a ShowMaker project"):
        Project.open(tmp_path)
    project = Project.create(tmp_path / "proj", {"clip": clip})
    with project.lock():
        with pytest.raises(ProjectBusyError, match=f"pid {os.getpid()}"):
            with Project.open(project.root).lock():
                pass
    with project.lock():  # released again
        pass
