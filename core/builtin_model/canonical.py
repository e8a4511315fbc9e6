"""MediaPipe's canonical face mesh read from ``face_landmarker.task`` (protobuf wire format, no protobuf
dependency), and its landmark groups (eyes, brows, lips, face oval)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



# --- the canonical mesh (protobuf wire format, no protobuf dependency) ---------------------------


@dataclass(frozen=True)
class CanonicalMesh:
    """MediaPipe's canonical face mesh, in metres (model axes) and its texture coordinates."""

    vertices_m: np.ndarray  # (468, 3)
    uv: np.ndarray  # (468, 2)
    faces: np.ndarray  # (898, 3) int32, counter-clockwise seen from +z


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message (value: int or bytes)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        yield number, wire, value


def parse_canonical_mesh(data: bytes) -> CanonicalMesh:
    """Parse ``geometry_pipeline_metadata_landmarks.binarypb`` (GeometryPipelineMetadata).

    GeometryPipelineMetadata { Mesh3d canonical_mesh = 1; ... }; Mesh3d { vertex_type = 1;
    primitive_type = 2; repeated float vertex_buffer = 3 (x, y, z, u, v per vertex, packed or
    not); repeated uint32 index_buffer = 4 (packed or not) }. Positions are centimetres.
    """
    meshes = [value for number, wire, value in _fields(data) if number == 1 and wire == 2]
    if not meshes:
        raise ValueError("no canonical_mesh in the geometry pipeline metadata")
    floats, indices = [], []
    vertex_type = primitive_type = 0
    for number, wire, value in _fields(meshes[0]):
        if number == 1 and wire == 0:
            vertex_type = value
        elif number == 2 and wire == 0:
            primitive_type = value
        elif number == 3 and wire in (2, 5):  # packed run or one fixed32
            floats.append(value)
        elif number == 4 and wire == 0:
            indices.append(value)
        elif number == 4 and wire == 2:
            pos = 0
            while pos < len(value):
                index, pos = _varint(value, pos)
                indices.append(index)
    if vertex_type != 0 or primitive_type != 0:
        raise ValueError(f"unexpected mesh layout (vertex_type {vertex_type}, primitive_type {primitive_type})")
    buffer = np.frombuffer(b"".join(floats), dtype="<f4").astype(np.float64)
    if buffer.size == 0 or buffer.size % 5 or not indices or len(indices) % 3:
        raise ValueError(f"malformed canonical mesh ({buffer.size} floats, {len(indices)} indices)")
    vertices = buffer.reshape(-1, 5)
    faces = np.asarray(indices, dtype=np.int32).reshape(-1, 3)
    if faces.max() >= len(vertices):
        raise ValueError("canonical mesh indexes outside its vertices")
    return CanonicalMesh(vertices_m=vertices[:, :3] * 0.01, uv=vertices[:, 3:5], faces=faces)


# --- MediaPipe's landmark groups ----------------------------------------------------------------


REGION_GROUPS = ("lips", "left_eye", "right_eye", "left_eyebrow", "right_eyebrow", "left_iris", "right_iris",
                 "face_oval", "nose")


def mediapipe_landmark_chains() -> dict[str, list[list[int]]]:
    """MediaPipe's landmark groups (``FaceLandmarksConnections``) as polylines of landmark indices.

    Keys are :data:`REGION_GROUPS`; ``left`` is the subject's left (+x in model space), as in
    MediaPipe. The iris groups hold only the 4 contour points (their centre is the index before).
    """
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections as conn  # noqa: PLC0415

    return {name: _chains(getattr(conn, f"FACE_LANDMARKS_{name.upper()}")) for name in REGION_GROUPS}


def _regions_from_chains(chains: dict[str, list[list[int]]]) -> dict[str, np.ndarray]:
    regions = {name: np.array(sorted({i for chain in chains[name] for i in chain}), dtype=np.int64)
               for name in REGION_GROUPS}
    for side in ("left", "right"):
        contour = regions[f"{side}_iris"]
        regions[f"{side}_iris"] = np.concatenate([[contour.min() - 1], contour])  # centre, then contour
    return regions


def _chains(connections) -> list[list[int]]:
    """Split a connection list into its polylines (MediaPipe lists each as consecutive edges)."""
    chains: list[list[int]] = []
    for c in connections:
        if chains and chains[-1][-1] == c.start:
            chains[-1].append(c.end)
        else:
            chains.append([c.start, c.end])
    return chains
