"""One Blender scene built in code for a synthetic clip, rendered frame by frame with Cycles (needs ``bpy``).

Passes: the composite (colour managed with the 'Standard' view transform, i.e. plain sRGB) goes to a PNG;
the compositor's File Output node writes Cycles' Depth and Object Index passes to 32-bit float EXRs, read
back through ``bpy.data.images``. Cycles' Depth pass is the planar camera z (checked by
``tests/test_synth.py``); both data passes come from the pixel centre, not averaged over the pixel filter.
Object pass index: 0 for the stage, ``i + 1`` for actor ``i``.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import mathutils
import numpy as np
from PIL import Image

from ..geometry import K_to_blender_lens, viewmat_to_blender_matrix_world
from .materials import actor_material, image_material, srgb_to_linear, stage_material
from .motion import ActorTrack
from .shots import CameraTrack
from .spec import SceneSpec
from .stage import StagePart
from .textures import make_picture

__all__ = ["ACTOR_SLOTS", "BACKGROUND_DEPTH", "BlenderClipRenderer", "RenderedFrame", "face_slots"]

#: Cycles writes this depth where a ray hits nothing; the clip stores +inf there.
BACKGROUND_DEPTH = 1e10
_EXR_PASSES = ("depth", "index")


@dataclass
class RenderedFrame:
    """rgb: [H, W, 3] uint8 sRGB; depth: [H, W] float32 planar camera z in metres (+inf: background);
    mask: [H, W] uint8 object pass index (0 stage, i + 1 actor i)."""

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


@contextlib.contextmanager
def _quiet_stdout():
    """Blender reports every file it saves on the C-level stdout: keep that off the user's terminal."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _hex_srgb(h: str) -> tuple[float, float, float]:
    return tuple(int(h[i: i + 2], 16) / 255.0 for i in (1, 3, 5))


def _mesh(name: str, verts: np.ndarray, faces: list) -> bpy.types.Mesh:
    """A mesh from vertices [N, 3] and polygons (index sequences), built with foreach_set."""
    me = bpy.data.meshes.new(name)
    sizes = np.array([len(f) for f in faces], dtype=np.int32)
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", np.asarray(verts, dtype=np.float32).ravel())
    me.loops.add(int(sizes.sum()))
    me.loops.foreach_set("vertex_index", np.concatenate([np.asarray(f) for f in faces]).astype(np.int32))
    me.polygons.add(len(faces))
    me.polygons.foreach_set("loop_start", np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32))
    me.polygons.foreach_set("loop_total", sizes)
    me.update()
    if me.validate():
        raise ValueError(f"mesh {name!r}: invalid geometry (Blender had to repair it)")
    return me


class BlenderClipRenderer:
    """Builds the whole scene once (stage, actors, lights, cameras, compositor); :meth:`render` draws a frame.

    Building resets Blender to an empty factory scene: one renderer per process at a time.
    """

    def __init__(self, spec: SceneSpec, parts: list[StagePart], tracks: list[ActorTrack], faces: np.ndarray,
                 slots: np.ndarray, cameras: CameraTrack, threads: int):
        """faces: [T, 3] body triangles; slots: [T] material slot (index into :data:`ACTOR_SLOTS`) per
        triangle (see :func:`face_slots`); threads: Cycles CPU threads."""
        self.spec, self.tracks, self.cameras, self.threads = spec, tracks, cameras, threads
        self._tmp = tempfile.TemporaryDirectory(prefix="showmaker-synth-")
        self.workdir = Path(self._tmp.name)
        with _quiet_stdout():  # Cycles warns about CUDA on stdout as it starts
            bpy.ops.wm.read_factory_settings(use_empty=True)
            self.scene = bpy.context.scene
            self._settings(threads)
            self._world_and_lights()
            self._stage(parts)
            self.actor_objects = [self._actor(i, t, faces, slots) for i, t in enumerate(tracks)]
            self.camera_objects = [self._camera(c.name) for c in spec.cameras]
            self._background_camera = None  # made on first use (background images)
            self._compositor()

    def close(self) -> None:
        """Remove the scratch directory."""
        self._tmp.cleanup()

    # -- building ---------------------------------------------------------------------------------------
    def _settings(self, threads: int) -> None:
        sc, spec = self.scene, self.spec
        sc.render.engine = "CYCLES"
        cy = sc.cycles
        cy.device = "CPU"
        cy.samples = spec.render.samples
        cy.use_adaptive_sampling = True
        cy.adaptive_threshold = 0.05
        cy.use_denoising = spec.render.denoise
        cy.denoiser, cy.denoising_quality, cy.denoising_prefilter = "OPENIMAGEDENOISE", "BALANCED", "FAST"
        cy.seed, cy.use_animated_seed = spec.seed, False
        cy.max_bounces, cy.diffuse_bounces, cy.glossy_bounces = 3, 2, 1
        cy.transmission_bounces, cy.volume_bounces, cy.transparent_max_bounces = 0, 0, 2
        cy.caustics_reflective = cy.caustics_refractive = False
        sc.render.threads_mode, sc.render.threads = "FIXED", threads
        sc.render.use_persistent_data = True
        sc.render.resolution_x, sc.render.resolution_y = spec.width, spec.height
        sc.render.resolution_percentage = 100
        sc.render.pixel_aspect_x = sc.render.pixel_aspect_y = 1.0
        sc.render.use_motion_blur = False
        sc.view_settings.view_transform = "Standard"
        sc.view_settings.look = "None"
        sc.view_settings.exposure, sc.view_settings.gamma = 0.0, 1.0
        sc.display_settings.display_device = "sRGB"
        im = sc.render.image_settings
        im.file_format, im.color_mode, im.color_depth, im.compression = "PNG", "RGB", "8", 15
        vl = sc.view_layers[0]
        vl.use_pass_z = vl.use_pass_object_index = True

    def _world_and_lights(self) -> None:
        sc, st = self.scene, self.spec.stage
        # The world lights the set softly but looks like a dark studio to the camera.
        world = bpy.data.worlds.new("world")  # with a node tree (Blender 5)
        nt = world.node_tree
        ambient = nt.nodes["Background"]
        ambient.inputs["Color"].default_value = (0.6, 0.65, 0.75, 1.0)
        ambient.inputs["Strength"].default_value = 0.35
        studio = nt.nodes.new("ShaderNodeBackground")
        studio.inputs["Color"].default_value = (0.02, 0.02, 0.025, 1.0)
        mix = nt.nodes.new("ShaderNodeMixShader")
        nt.links.new(nt.nodes.new("ShaderNodeLightPath").outputs["Is Camera Ray"], mix.inputs[0])
        nt.links.new(ambient.outputs[0], mix.inputs[1])
        nt.links.new(studio.outputs[0], mix.inputs[2])
        nt.links.new(mix.outputs[0], nt.nodes["World Output"].inputs["Surface"])
        sc.world = world
        lights = [
            ("key", "AREA", (0.0, -0.2, st.height + 0.6), (0.0, 0.0, 0.0), 350.0, {"size": 3.0}),
            ("fill", "AREA", (0.5, -st.depth / 2 - 2.5, 2.4), (math.radians(65), 0.0, 0.0), 120.0, {"size": 2.0}),
            ("sun", "SUN", (0.0, 0.0, 5.0), (math.radians(40), 0.0, math.radians(-30)), 1.2, {"angle": math.radians(6)}),
        ]
        for name, kind, loc, rot, energy, extra in lights:
            data = bpy.data.lights.new(name, kind)
            data.energy = energy
            for k, v in extra.items():
                setattr(data, k, v)
            ob = bpy.data.objects.new(name, data)
            ob.location, ob.rotation_euler = loc, rot
            sc.collection.objects.link(ob)

    def _stage(self, parts: list[StagePart]) -> None:
        """All stage parts in one mesh object (pass index 0) with one material slot per material/picture."""
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
        faces = [tuple(int(i + o) for i in f) for p, o in zip(parts, offsets) for f in p.faces]
        me = _mesh("stage", np.concatenate([p.vertices for p in parts]), faces)
        slots: dict[str, int] = {}
        face_slot = []
        for p in parts:
            key = p.material if p.image is None else f"{p.image[0]}_{p.image[1]}"
            if key not in slots:
                slots[key] = len(me.materials)
                if p.image is None:
                    me.materials.append(stage_material(p.material))
                else:
                    w, h = np.linalg.norm(p.vertices[1] - p.vertices[0]), np.linalg.norm(p.vertices[3] - p.vertices[0])
                    me.materials.append(image_material(key, make_picture(p.image[0], p.image[1], w / h)))
            face_slot += [slots[key]] * len(p.faces)
        me.polygons.foreach_set("material_index", np.asarray(face_slot, dtype=np.int32))
        uv = np.concatenate([p.uv for p in parts])
        loop_verts = np.concatenate([np.asarray(f) for f in faces])
        me.uv_layers.new(name="UVMap").data.foreach_set("uv", uv[loop_verts].astype(np.float32).ravel())
        tint = np.concatenate([np.tile(np.r_[srgb_to_linear(p.color), 1.0], (len(p.vertices), 1)) for p in parts])
        me.color_attributes.new("tint", "FLOAT_COLOR", "POINT").data.foreach_set(
            "color", tint.astype(np.float32).ravel())
        ob = bpy.data.objects.new("stage", me)
        ob.pass_index = 0
        self.scene.collection.objects.link(ob)

    def _actor(self, i: int, track: ActorTrack, faces: np.ndarray, slots: np.ndarray) -> bpy.types.Object:
        actor = self.spec.actors[i]
        me = _mesh(f"actor_{actor.name}", track.vertices[0], faces.tolist())
        for slot, (color, rough) in enumerate(actor_slot_colors(actor.clothing)):
            me.materials.append(actor_material(f"{actor.name}_{ACTOR_SLOTS[slot]}", color, rough))
        me.polygons.foreach_set("material_index", slots.astype(np.int32))
        me.shade_smooth()
        ob = bpy.data.objects.new(f"actor_{actor.name}", me)
        ob.pass_index = i + 1
        self.scene.collection.objects.link(ob)
        return ob

    def _camera(self, name: str) -> bpy.types.Object:
        cam = bpy.data.cameras.new(name)
        cam.sensor_fit = "HORIZONTAL"
        cam.clip_start, cam.clip_end = 0.05, 100.0
        ob = bpy.data.objects.new(f"camera_{name}", cam)
        self.scene.collection.objects.link(ob)
        return ob

    def _compositor(self) -> None:
        """Composite = the render; a File Output node writes the Depth and Object Index passes as float EXR."""
        ng = bpy.data.node_groups.new("synth_compositor", "CompositorNodeTree")
        self.scene.compositing_node_group = ng
        ng.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        rl = ng.nodes.new("CompositorNodeRLayers")
        ng.links.new(rl.outputs["Image"], ng.nodes.new("NodeGroupOutput").inputs[0])
        fo = ng.nodes.new("CompositorNodeOutputFile")
        fo.format.media_type, fo.format.file_format = "IMAGE", "OPEN_EXR"
        fo.format.color_depth, fo.format.color_mode, fo.format.exr_codec = "32", "BW", "ZIP"
        fo.directory, fo.file_name = str(self.workdir) + "/", "pass_"
        for name, socket in zip(_EXR_PASSES, ("Depth", "Object Index")):
            fo.file_output_items.new("FLOAT", name)
            ng.links.new(rl.outputs[socket], fo.inputs[name])
        self.scene.render.filepath = str(self.workdir / "rgb.png")

    # -- rendering ----------------------------------------------------------------------------------------
    def _use_camera(self, ob: bpy.types.Object, K: np.ndarray, viewmat: np.ndarray, width: int, height: int) -> None:
        """Render through camera object ``ob`` set to ``K`` / ``viewmat`` at ``width`` x ``height``."""
        lens = K_to_blender_lens(K, width, height)
        ob.data.lens, ob.data.sensor_width = lens.lens_mm, lens.sensor_width_mm
        ob.data.shift_x, ob.data.shift_y = lens.shift_x, lens.shift_y
        ob.matrix_world = mathutils.Matrix(viewmat_to_blender_matrix_world(viewmat).tolist())
        self.scene.camera = ob
        self.scene.render.resolution_x, self.scene.render.resolution_y = width, height

    def _pose_frame(self, f: int) -> None:
        cams, spec = self.cameras, self.spec
        self._use_camera(self.camera_objects[cams.camera_ids[f]], cams.K[f], cams.viewmats[f], spec.width,
                         spec.height)
        for ob, track in zip(self.actor_objects, self.tracks):
            ob.hide_render = not bool(track.present[f])
            ob.data.vertices.foreach_set("co", track.vertices[f].astype(np.float32).ravel())
            ob.data.update()
        self.scene.frame_set(f + 1)

    def _read_exr(self, name: str) -> np.ndarray:
        path = self.workdir / f"pass_{name}.exr"
        img = bpy.data.images.load(str(path))
        try:
            img.colorspace_settings.name = "Non-Color"
            w, h = img.size
            px = np.empty(w * h * img.channels, dtype=np.float32)
            img.pixels.foreach_get(px)
        finally:
            bpy.data.images.remove(img)
        path.unlink()
        return px.reshape(h, w, -1)[::-1, :, 0]

    def render(self, f: int) -> RenderedFrame:
        """Render frame ``f`` (0-based) and return its colour, depth and instance mask."""
        self._pose_frame(f)
        return self._render_current()

    def render_empty_set(self, K: np.ndarray, viewmat: np.ndarray, width: int, height: int) -> RenderedFrame:
        """Render the set without the actors (a background image) from camera ``K`` / ``viewmat`` (OpenCV)
        at ``width`` x ``height`` pixels."""
        if self._background_camera is None:
            self._background_camera = self._camera("background")
        self._use_camera(self._background_camera, K, viewmat, width, height)
        for ob in self.actor_objects:
            ob.hide_render = True
        return self._render_current()

    def _render_current(self) -> RenderedFrame:
        with _quiet_stdout():
            bpy.ops.render.render(write_still=True)
        png = self.workdir / "rgb.png"
        with Image.open(png) as im:
            rgb = np.asarray(im.convert("RGB")).copy()
        png.unlink()
        depth = self._read_exr("depth")
        depth = np.where(depth >= 0.5 * BACKGROUND_DEPTH, np.inf, depth).astype(np.float32)
        index = self._read_exr("index")
        return RenderedFrame(rgb, depth, np.rint(index).astype(np.uint8))


#: Actor material slots, in slot order.
ACTOR_SLOTS = ("shirt", "trousers", "shoes", "skin", "hair", "eyes", "mouth")


def face_slots(faces: np.ndarray, part_labels: np.ndarray) -> np.ndarray:
    """Material slot (index into :data:`ACTOR_SLOTS`) [T] of each body triangle [T, 3], from the per-vertex
    ``BodyPart`` labels [V] (a triangle takes the label most of its corners have)."""
    from ..body.parts import BodyPart as P

    slot_of = {P.TORSO: 0, P.UPPER_ARM: 0, P.PELVIS: 1, P.THIGH: 1, P.SHIN: 1, P.FOOT: 2, P.HEAD: 3, P.NECK: 3,
               P.FOREARM: 3, P.HAND: 3, P.HAIR: 4, P.EYE: 5, P.MOUTH: 6}
    lut = np.full(max(int(p) for p in P) + 1, 3, dtype=np.int32)
    for part, slot in slot_of.items():
        lut[int(part)] = slot
    l0, l1, l2 = (np.asarray(part_labels)[faces[:, k]] for k in range(3))
    label = np.where((l0 == l1) | (l0 == l2), l0, np.where(l1 == l2, l1, l0))
    return lut[label]


def actor_slot_colors(clothing: dict[str, str]) -> list[tuple[tuple[float, float, float], float]]:
    """(sRGB colour, roughness) for every slot of :data:`ACTOR_SLOTS`, from the spec's clothing colours."""
    rough = {"shirt": 0.8, "trousers": 0.8, "shoes": 0.5, "skin": 0.5, "hair": 0.6}
    out = [(_hex_srgb(clothing[s]), rough[s]) for s in ACTOR_SLOTS[:5]]
    return out + [((0.06, 0.04, 0.03), 0.3), ((0.55, 0.2, 0.2), 0.5)]
