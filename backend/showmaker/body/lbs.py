"""Linear blend skinning (METHOD eq. 8) in torch, batched, differentiable, device-agnostic.

SMPL's conventions: ``rot_mats[:, j]`` is joint j's rotation relative to its parent (joint 0's is the
global orientation); the rest pose has identity rotations everywhere. ``A[:, j]`` (4x4) maps a rest-pose
point rigidly attached to joint j to its posed position, so a skinned point is
``x = sum_j w_j (A_j[:3, :3] x0 + A_j[:3, 3])``. Rest and posed points share one frame (the body
model's: +y up, facing +z for SMPL), with no global translation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..geometry import matrix_to_quat

__all__ = [
    "axis_angle_to_matrix",
    "forward_kinematics",
    "linear_blend_skinning",
    "linear_blend_skinning_with_rotations",
    "matrix_to_axis_angle",
]

_SMALL_ANGLE_SQ = 1e-8  # below this squared angle, use Taylor series (exact in float32 and float64)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rotation vectors [..., 3] (axis * angle in radians) -> rotation matrices [..., 3, 3].

    Rodrigues' formula R = I + a K + b K^2 with a = sin(t)/t and b = (1 - cos t)/t^2, switched to their
    Taylor series near t = 0, so values and gradients are finite (and exact) at the zero rotation.
    """
    theta_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta_sq < _SMALL_ANGLE_SQ
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    a = torch.where(small, 1 - theta_sq / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24, (1 - torch.cos(theta)) / (theta * theta))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(axis_angle.shape + (3,))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_axis_angle(rot_mats: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> rotation vectors [..., 3] with angle in [0, pi].

    Goes through the unit quaternion (``geometry.matrix_to_quat``, w >= 0), which keeps values accurate
    near 0 and near pi. For conversions, not optimisation: its gradient is not finite at exactly the
    identity or a half turn (optimise axis-angle through :func:`axis_angle_to_matrix` instead).
    """
    q = matrix_to_quat(rot_mats)
    w, v = q[..., :1], q[..., 1:]
    sin_half = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, w)
    # angle / sin(angle / 2), with its limit 2 / w (w -> 1) for tiny angles.
    factor = torch.where(sin_half > 1e-6, angle / sin_half.clamp_min(1e-12), 2 / w.clamp_min(0.5))
    return v * factor


def forward_kinematics(
    rot_mats: Tensor, rest_joints: Tensor, parents: Sequence[int] | Tensor
) -> tuple[Tensor, Tensor]:
    """Pose a skeleton.

    rot_mats [B, J, 3, 3] local rotations; rest_joints [B, J, 3] rest-pose joint positions (or [1, J, 3]
    shared by the batch, e.g. one actor's shape over B frames); parents [J] (parents[0] = -1,
    parents[j] < j). Returns posed joints [B, J, 3] and the relative transforms A [B, J, 4, 4] that take
    rest-pose points to posed points (the root joint stays where it rests).
    """
    parents = [int(p) for p in parents]
    rest_joints = rest_joints.expand(rot_mats.shape[0], -1, -1)
    local_offsets = rest_joints.clone()
    local_offsets[:, 1:] -= rest_joints[:, parents[1:]]
    local = _rigid(rot_mats, local_offsets)  # [B, J, 4, 4]: joint frame in its parent's frame
    chain = [local[:, 0]]
    for j in range(1, len(parents)):
        chain.append(chain[parents[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)
    posed_joints = world[..., :3, 3]
    # A_j = world_j @ translate(-rest_joint_j): rest points about joint j follow joint j's frame.
    shift = posed_joints - (world[..., :3, :3] @ rest_joints[..., None])[..., 0]
    return posed_joints, _rigid(world[..., :3, :3], shift)


def linear_blend_skinning(points: Tensor, weights: Tensor, transforms: Tensor) -> Tensor:
    """Skin rest-pose points: points [B, P, 3] or [P, 3]; weights [P, J]; transforms A [B, J, 4, 4]
    from :func:`forward_kinematics`. Returns posed points [B, P, 3]."""
    blended = _blend(weights, transforms)
    return _apply(blended, points)


def linear_blend_skinning_with_rotations(
    points: Tensor, weights: Tensor, transforms: Tensor, tol: float = 1e-6
) -> tuple[Tensor, Tensor]:
    """As :func:`linear_blend_skinning`, also returning each point's rotation [B, P, 3, 3].

    The rotation is the orthonormal (polar) factor of the point's blended linear map sum_j w_j R_j: it
    equals R_j exactly where joint j has all the weight and is a proper rotation in between (use it to
    turn a Gaussian's orientation). Where the blend degenerates (determinant <= 0.01, joints twisted
    about 180 degrees apart) the rotation of the point's heaviest joint stands in.
    """
    blended = _blend(weights, transforms)
    linear = blended[..., :3]
    mixed = torch.nonzero(weights.amax(dim=-1) < 1).squeeze(-1)  # points whose weight is split
    m = linear[:, mixed]
    heaviest = transforms[:, weights[mixed].argmax(dim=-1), :3, :3]
    m = torch.where((torch.linalg.det(m) > 0.01)[..., None, None], m, heaviest)
    return _apply(blended, points), linear.index_copy(1, mixed, _polar_rotation(m, tol))


def _rigid(rot: Tensor, trans: Tensor) -> Tensor:
    """[..., 3, 3] rotations and [..., 3] translations -> [..., 4, 4] homogeneous transforms."""
    top = torch.cat([rot, trans[..., None]], dim=-1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def _blend(weights: Tensor, transforms: Tensor) -> Tensor:
    """Per-point blended transforms [B, P, 3, 4] = sum_j weights[p, j] * A[b, j, :3]."""
    b, j = transforms.shape[:2]
    return (weights @ transforms[:, :, :3].reshape(b, j, 12)).reshape(b, -1, 3, 4)


def _apply(blended: Tensor, points: Tensor) -> Tensor:
    """Apply [B, P, 3, 4] affine maps to points [B, P, 3] or [P, 3]."""
    return (blended[..., :3] @ points[..., None])[..., 0] + blended[..., 3]


def _polar_rotation(m: Tensor, tol: float, max_iterations: int = 12) -> Tensor:
    """Orthonormal polar factor of matrices [..., 3, 3] with positive determinant.

    Newton's iteration X <- (g X + X^-T / g) / 2 with g = |det X|^(-1/3), where X^-T = cofactor(X) / det(X),
    until no entry moves more than ``tol`` (quadratic convergence: about 5 iterations for blends of
    rotations 120 degrees apart). Runs on the nine entries as contiguous planes [9, N], many times faster
    than batched 3x3 tensor ops.
    """
    x = m.reshape(-1, 9).T.contiguous()
    for _ in range(max_iterations):
        a, b, c, d, e, f, g, h, i = x
        cof = torch.stack(
            [e * i - f * h, f * g - d * i, d * h - e * g, c * h - b * i, a * i - c * g, b * g - a * h,
             b * f - c * e, c * d - a * f, a * e - b * d]
        )  # fmt: skip
        det = a * cof[0] + b * cof[1] + c * cof[2]
        scale = det.abs().clamp_min(1e-12) ** (-1.0 / 3.0)
        step = 0.5 * (scale * x + cof / (scale * det))
        converged = x.numel() == 0 or bool((step - x).abs().max() <= tol)
        x = step
        if converged:
            break
    return x.T.reshape(m.shape)
