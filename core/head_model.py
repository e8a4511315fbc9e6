"""Head models in one internal form, and their differentiable forward pass.

A :class:`HeadModel` holds numpy arrays (metres, model space: +x subject's left, +y up,
+z out of the face): template, triangles, identity basis, expression basis and, for
articulated models such as FLAME, joints with skinning weights and pose correctives.
:class:`HeadModelLayer` is the torch side: it evaluates posed vertices in batches through
smplx's ``lbs`` (never re-written here), on any device, for all vertices or for a
precomputed vertex subset (the landmark fast path).

Pose semantics, the same for every model: the joints below the root (neck, jaw, eyes) are
posed by LBS with a zero root pose; the head ``rotation`` is then applied about the model
origin, and camera placement adds the axis flip and ``translation`` (see ``core.camera``).
FLAME's own ``global_orient`` rotates about joint 0 instead; :func:`flame_translation`
converts our translation to FLAME's ``transl`` for tools that expect it.

Loaders for each source live in ``core.model_io``; this module has no file I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from smplx.lbs import lbs

from core.camera import axis_angle_to_matrix, flip_axes

FLAME_JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")


@dataclass
class HeadModel:
    """A morphable head model in flamecam's internal form (numpy, float32, metres).

    V vertices, F triangles, S identity and E expression components, J joints.
    """

    name: str
    kind: str  # "flame", "ict", "builtin", "npz"
    v_template: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int32
    shapedirs: np.ndarray  # (V, 3, S) metres per unit coefficient (~N(0, 1))
    exprdirs: np.ndarray  # (V, 3, E)
    head_center: np.ndarray  # (3,) model-space point whose depth defines Z0 and ρ (between the eyes)
    expression_names: list[str] | None = None
    # Articulation (None for rigid models): FLAME joints global, neck, jaw, left eye, right eye.
    joint_names: tuple[str, ...] | None = None
    j_regressor: np.ndarray | None = None  # (J, V) dense
    parents: np.ndarray | None = None  # (J,) int64, parents[0] = -1
    lbs_weights: np.ndarray | None = None  # (V, J)
    posedirs: np.ndarray | None = None  # ((J-1)*9, V*3), smplx layout
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> vertex indices
    vertex_rgb: np.ndarray | None = None  # (V, 3) albedo in [0, 1]
    source_sha256: str = ""  # hash of the file it came from (caches key on it)
    is_coarse: bool = False  # True for the built-in fallback
    description: str = ""

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def num_expr(self) -> int:
        return int(self.exprdirs.shape[2])

    @property
    def is_articulated(self) -> bool:
        return self.j_regressor is not None

    def has_joint(self, name: str) -> bool:
        return self.joint_names is not None and name in self.joint_names

    def truncated(self, num_shape: int | None = None, num_expr: int | None = None) -> "HeadModel":
        """Copy keeping the first ``num_shape`` / ``num_expr`` components (None keeps all)."""
        for label, want, have in (("shape", num_shape, self.num_shape), ("expression", num_expr, self.num_expr)):
            if want is not None and not 0 <= want <= have:
                raise ValueError(f"{self.name}: asked for {want} {label} components, the model holds {have}")
        out = HeadModel(**self.__dict__)
        out.regions = dict(self.regions)  # the copy must not share (and later mutate) the original's dict
        out.shapedirs = self.shapedirs[:, :, : (self.num_shape if num_shape is None else num_shape)]
        out.exprdirs = self.exprdirs[:, :, : (self.num_expr if num_expr is None else num_expr)]
        if out.expression_names is not None:
            out.expression_names = list(out.expression_names[: out.exprdirs.shape[2]])
        return out

    def validate(self) -> None:
        """Raise ValueError with a specific message if the arrays are inconsistent."""
        v = self.num_vertices
        checks = [
            (self.v_template.ndim == 2 and self.v_template.shape[1] == 3, "v_template must be (V, 3)"),
            (self.faces.ndim == 2 and self.faces.shape[1] == 3, "faces must be (F, 3)"),
            (self.faces.size == 0 or (self.faces.min() >= 0 and self.faces.max() < v), "faces index outside the vertices"),
            (self.shapedirs.shape[:2] == (v, 3), f"shapedirs must be ({v}, 3, S)"),
            (self.exprdirs.shape[:2] == (v, 3), f"exprdirs must be ({v}, 3, E)"),
            (self.head_center.shape == (3,), "head_center must be (3,)"),
        ]
        for name in ("v_template", "shapedirs", "exprdirs", "head_center", "j_regressor", "lbs_weights", "posedirs"):
            value = getattr(self, name)
            if value is not None and np.issubdtype(value.dtype, np.floating):
                checks.append((bool(np.isfinite(value).all()), f"{name} has non-finite values"))
        if self.expression_names is not None:
            checks.append((len(self.expression_names) == self.num_expr, "expression_names must match exprdirs"))
        if self.vertex_rgb is not None:
            checks.append((self.vertex_rgb.shape == (v, 3), "vertex_rgb must be (V, 3)"))
        if self.is_articulated:
            j = self.j_regressor.shape[0]
            checks += [
                (self.j_regressor.shape == (j, v), f"J_regressor must be (J, {v})"),
                (self.parents is not None and self.parents.shape == (j,), "parents must be (J,)"),
                # smplx's batch_rigid_transform walks the chain in index order: each parent before its child
                (self.parents is not None and self.parents.shape == (j,) and int(self.parents[0]) == -1
                 and all(0 <= int(self.parents[i]) < i for i in range(1, j)),
                 "parents must start with -1 and list each joint's parent before it"),
                (self.lbs_weights is not None and self.lbs_weights.shape == (v, j), f"weights must be ({v}, {j})"),
                (self.posedirs is not None and self.posedirs.shape == ((j - 1) * 9, v * 3),
                 f"posedirs must be ({(j - 1) * 9}, {v * 3})"),
                (self.joint_names is not None and len(self.joint_names) == j, "joint_names must match J"),
            ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{self.name}: {message}")
        for name, idx in self.regions.items():
            if idx.size and (idx.min() < 0 or idx.max() >= v):
                raise ValueError(f"{self.name}: region {name!r} indexes outside the vertices")


def flame_translation(head: HeadModel, rotation_aa: np.ndarray, translation_m: np.ndarray, shape: np.ndarray,
                      expr: np.ndarray | None = None) -> np.ndarray:
    """FLAME ``transl`` equal to flamecam's ``translation`` (camera axes flipped back to model axes).

    flamecam rotates about the origin, FLAME about joint 0: ``R·X + t = R·(X - J0) + J0 + t'``.
    rotation_aa: (..., 3); translation_m: (..., 3) camera space; shape: (..., S'); expr: (..., E') or
    None (zero). J0 is regressed from the shaped *and* expressed template (as FLAME does), so pass the
    expression too. Returns (..., 3) in model axes, for ``FLAME(global_orient=rotation, transl=...)``
    followed by ``diag(1,-1,-1)``.
    """
    if not head.is_articulated:
        raise ValueError("flame_translation needs an articulated (FLAME-like) model")
    reg0 = head.j_regressor[0].astype(np.float64)
    shape = np.asarray(shape, dtype=np.float64)
    j0_shapedirs = np.einsum("v,vcs->cs", reg0, head.shapedirs[:, :, : shape.shape[-1]])
    j0 = reg0 @ head.v_template + np.einsum("cs,...s->...c", j0_shapedirs, shape)
    if expr is not None:
        expr = np.asarray(expr, dtype=np.float64)
        j0 = j0 + np.einsum("cs,...s->...c", np.einsum("v,vcs->cs", reg0, head.exprdirs[:, :, : expr.shape[-1]]), expr)
    rot = axis_angle_to_matrix(np.asarray(rotation_aa, np.float64))
    t_model = flip_axes(np.asarray(translation_m, np.float64))
    return t_model + np.einsum("...ij,...j->...i", rot, j0) - j0


class HeadModelLayer(torch.nn.Module):
    """Torch forward pass of a :class:`HeadModel` (a thin module holding buffers).

    ``vertex_ids`` selects a subset evaluated exactly but cheaply (the landmark fast path):
    joints are appended as virtual vertices whose identity/expression deltas are the
    regressed joint deltas, so smplx's ``lbs`` stays exact on the subset.
    """

    def __init__(self, head: HeadModel, vertex_ids: np.ndarray | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        head.validate()
        self.head = head
        self.num_shape, self.num_expr = head.num_shape, head.num_expr
        ids = np.arange(head.num_vertices) if vertex_ids is None else np.asarray(vertex_ids, dtype=np.int64)
        self.num_out = len(ids)
        dirs = np.concatenate([head.shapedirs, head.exprdirs], axis=2)  # (V, 3, S+E)
        template, dirs_sub = head.v_template[ids], dirs[ids]
        kw = dict(device=device, dtype=dtype)
        self.articulated = head.is_articulated
        if self.articulated:
            j = head.j_regressor.shape[0]
            j_regressor64 = head.j_regressor.astype(np.float64)  # regress once in float64, round once to dtype
            j_template = j_regressor64 @ head.v_template
            j_dirs = np.einsum("jv,vcs->jcs", j_regressor64, dirs)
            template = np.concatenate([template, j_template])
            dirs_sub = np.concatenate([dirs_sub, j_dirs])
            n = len(ids)
            posedirs = head.posedirs.reshape(-1, head.num_vertices, 3)[:, ids].reshape(len(head.posedirs), -1)
            posedirs = np.concatenate([posedirs, np.zeros((len(posedirs), j * 3), np.float32)], axis=1)
            j_reg = np.concatenate([np.zeros((j, n), np.float32), np.eye(j, dtype=np.float32)], axis=1)
            weights = np.concatenate([head.lbs_weights[ids], np.eye(j, dtype=np.float32)])
            self.register_buffer("posedirs", torch.as_tensor(posedirs, **kw))
            self.register_buffer("j_regressor", torch.as_tensor(j_reg, **kw))
            self.register_buffer("lbs_weights", torch.as_tensor(weights, **kw))
            self.register_buffer("parents", torch.as_tensor(head.parents, dtype=torch.long, device=device))
            self.joint_names = head.joint_names
        self.register_buffer("v_template", torch.as_tensor(template, **kw))
        self.register_buffer("dirs", torch.as_tensor(dirs_sub, **kw))
        self.register_buffer("head_center", torch.as_tensor(head.head_center, **kw))

    def subset(self, vertex_ids: np.ndarray) -> "HeadModelLayer":
        """A layer evaluating only ``vertex_ids`` (same device and dtype)."""
        return HeadModelLayer(self.head, vertex_ids, device=self.v_template.device, dtype=self.v_template.dtype)

    def forward(self, shape: torch.Tensor | None, expr: torch.Tensor, rotation: torch.Tensor | None = None,
                neck_pose: torch.Tensor | None = None, jaw_pose: torch.Tensor | None = None,
                eyes_pose: torch.Tensor | None = None, identity: torch.Tensor | None = None) -> torch.Tensor:
        """Posed model-space vertices.

        shape: (B, S'), S' <= S (missing trailing components are zero); expr: (B, E');
        rotation: (B, 3) head rotation (axis-angle, about the origin); neck_pose, jaw_pose:
        (B, 3); eyes_pose: (B, 6) left then right. Joint poses are ignored by rigid models.
        ``identity``: :meth:`identity_template` of the shape, given instead of ``shape``.
        Returns (B, N, 3), N = number of selected vertices.
        """
        if identity is None:
            coeffs = torch.cat([_pad(shape, self.num_shape), _pad(expr, self.num_expr)], dim=1)
            template, dirs = self.v_template, self.dirs
        else:
            coeffs, template, dirs = _pad(expr, self.num_expr), identity, self._expression_dirs()
        if self.articulated:
            pose = self.full_pose(expr.new_zeros(expr.shape[0], 3), neck_pose, jaw_pose, eyes_pose)
            verts, _ = lbs(coeffs, pose, template, dirs, self.posedirs, self.j_regressor, self.parents,
                           self.lbs_weights)
            verts = verts[:, : self.num_out]
        else:
            verts = template + torch.einsum("vcs,bs->bvc", dirs, coeffs)
        if rotation is not None:
            verts = verts @ axis_angle_to_matrix(rotation).transpose(-1, -2)
        return verts

    def identity_template(self, shape: torch.Tensor) -> torch.Tensor:
        """The template with an identity blended in, for :meth:`forward` (``identity``): a mesh posed
        every frame while its identity changes rarely blends the identity basis (the larger half of
        the bases) once per identity. shape: (S',) -> (N (+J joints), 3)."""
        return self.v_template + self.dirs[..., :self.num_shape] @ _pad(shape[None], self.num_shape)[0]

    def _expression_dirs(self) -> torch.Tensor:
        """The expression half of ``dirs``, contiguous (made on first use, on the buffers' device)."""
        cached = getattr(self, "_exprdirs", None)
        if cached is None or cached.device != self.dirs.device or cached.dtype != self.dirs.dtype:
            cached = self._exprdirs = self.dirs[..., self.num_shape:].contiguous()
        return cached

    def full_pose(self, zeros: torch.Tensor, neck_pose: torch.Tensor | None, jaw_pose: torch.Tensor | None,
                  eyes_pose: torch.Tensor | None) -> torch.Tensor:
        """smplx's pose vector (B, J*3) from the named joint poses: a zero root, the given joints,
        ``zeros`` (B, 3) for joints not given (or not in the model's list)."""
        joints = {"neck": neck_pose, "jaw": jaw_pose}
        if eyes_pose is not None:
            joints["left_eye"], joints["right_eye"] = eyes_pose[:, :3], eyes_pose[:, 3:]
        return torch.cat([zeros] + [joints.get(n) if joints.get(n) is not None else zeros
                                    for n in self.joint_names[1:]], dim=1)

    def posed_head_center(self, rotation: torch.Tensor) -> torch.Tensor:
        """(B, 3) rotation -> (B, 3) model-space head centre after the head rotation."""
        return (axis_angle_to_matrix(rotation) @ self.head_center)


def _pad(coeffs: torch.Tensor, size: int) -> torch.Tensor:
    if coeffs.shape[1] > size:
        raise ValueError(f"got {coeffs.shape[1]} coefficients, the model has {size}")
    if coeffs.shape[1] == size:
        return coeffs
    return torch.nn.functional.pad(coeffs, (0, size - coeffs.shape[1]))
