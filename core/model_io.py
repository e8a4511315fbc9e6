"""Loading head models into the internal form (:class:`core.head_model.HeadModel`).

Sources: FLAME ``.pkl`` (2020, 2023, 2023 Open; read without chumpy through a restricted
unpickler, because a pickle is code), the ICT-FaceKit light ``.npz`` layout, flamecam's own
``.npz`` internal form, and the built-in coarse model (``core.builtin_model``).
"""
from __future__ import annotations

import copyreg
import hashlib
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse

from core.head_model import FLAME_JOINT_NAMES, HeadModel

FLAME_SHAPE_COLUMNS = 300  # FLAME's shapedirs hold 300 identity then 100 expression components
FLAME_DEFAULT_SHAPE, FLAME_DEFAULT_EXPR = 100, 50
FLAMECAM_NPZ_FORMAT = "flamecam-head-model"
FLAMECAM_NPZ_VERSION = 1
EXPECTED_FILES = ("expected a FLAME .pkl (generic_model.pkl, flame2023.pkl), a head-model .npz (flamecam's own or "
                  "ICT-FaceKit's from flamecam convert-ict) or 'builtin'")
FLAME_HELP = ("FLAME is free for research after registering at https://flame.is.tue.mpg.de "
              "(download 'FLAME 2023' or 'FLAME 2020' and pass generic_model.pkl / flame2023.pkl).")


class ModelFileError(ValueError):
    """A head-model file that cannot be used, with a message saying why and what to do."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --- restricted unpickling ------------------------------------------------------------------


class _StateHolder:
    """Stand-in for a class we never import (chumpy, scipy.sparse): keeps its pickled state."""

    kind = "object"
    # Class-level defaults: protocol 0/1 (copy_reg._reconstructor) and NEWOBJ never call __init__.
    args: tuple = ()
    state = None

    def __init__(self, *args):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _ChumpyStandIn(_StateHolder):
    kind = "chumpy"


class _SparseStandIn(_StateHolder):
    kind = "sparse"


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: only a tag for :func:`_safe_reconstruct`, never an array."""


class _DtypeStandIn(_StateHolder):
    """``numpy.dtype(...)`` from a pickle, built only once checked to be a plain numeric type.

    numpy trusts a pickled dtype's state (item size, flags, fields); a crafted or corrupt one can
    make numpy read or write outside its buffers, so only bool/int/float/complex scalars pass.
    """

    kind = "dtype"

    def resolve(self) -> np.dtype:
        spec = self.args[0] if self.args else None
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        state = self.state if isinstance(self.state, tuple) else ()
        if not isinstance(spec, str) or not re.fullmatch(r"[?a-zA-Z]\d{0,2}", spec):
            raise pickle.UnpicklingError(f"refusing numpy dtype {spec!r} in a model pickle")
        try:
            dtype = np.dtype(spec)
        except TypeError as exc:
            raise pickle.UnpicklingError(f"refusing numpy dtype {spec!r} in a model pickle") from exc
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None \
                or any(x is not None for x in state[2:5]):
            raise pickle.UnpicklingError(f"refusing numpy dtype {spec!r} (only plain numeric arrays are allowed)")
        order = state[1] if len(state) > 1 else "|"
        order = order.decode("latin1") if isinstance(order, bytes) else order
        if order in ("<", ">") and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(order)
        elif order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"refusing numpy dtype byte order {order!r}")
        return dtype


def _checked_array(raw, dtype, shape, order: str = "C") -> np.ndarray:
    """A numpy array from pickled raw bytes, with every size checked before numpy sees them."""
    if isinstance(dtype, _DtypeStandIn):
        dtype = dtype.resolve()
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("an array without a numpy dtype")
    if isinstance(raw, str):  # Python 2 str, decoded with latin1 by the unpickler
        raw = raw.encode("latin1")
    if isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise pickle.UnpicklingError(f"refusing array data of type {type(raw).__name__} (object arrays are not "
                                     "allowed in a model pickle)")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"invalid array shape {shape!r}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(raw) != count * dtype.itemsize:
        raise pickle.UnpicklingError(f"array data of {len(raw)} bytes does not fill shape {shape} of {dtype}")
    return np.frombuffer(bytes(raw), dtype=dtype, count=count).reshape(shape, order=order).copy()


class _ArrayStandIn(_StateHolder):
    """An ndarray being unpickled: ``_reconstruct`` makes it, ``__setstate__`` fills it (checked)."""

    kind = "ndarray"

    def resolve(self) -> np.ndarray:
        state = self.state
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("unreadable numpy array state")
        shape, dtype, is_fortran, raw = state[-4:]
        return _checked_array(raw, dtype, shape, "F" if is_fortran else "C")


def _safe_reconstruct(cls, shape, typecode) -> _ArrayStandIn:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``."""
    if cls is not _NdarrayMarker:
        raise pickle.UnpicklingError("numpy _reconstruct of something other than an ndarray")
    return _ArrayStandIn()


def _safe_frombuffer(buf, dtype, shape, order, axis_order=None) -> np.ndarray:
    """Stands in for ``numpy.core.numeric._frombuffer`` (arrays in protocol-5 pickles)."""
    if order == "K" and axis_order is not None:
        shape = tuple(shape)
        if sorted(axis_order) != list(range(len(shape))):
            raise pickle.UnpicklingError("invalid axis order in a pickled array")
        return _checked_array(buf, dtype, shape, "C").transpose(axis_order)
    return _checked_array(buf, dtype, shape, "F" if order == "F" else "C")


def _safe_scalar(dtype, data=None):
    """Stands in for ``numpy.core.multiarray.scalar(dtype, bytes)`` (numpy scalars)."""
    return _checked_array(data, dtype, ())[()]


def _safe_bytearray(data=b"", *encoding):
    if isinstance(data, str):  # protocol < 5 pickles bytearray(b) as bytearray(str, 'latin-1')
        data = _latin1_encode(data, *(encoding or ("latin1",)))
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("bytearray() only from bytes in a model pickle")
    return bytearray(data)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Python 3 protocol-2 pickles store bytes as ``_codecs.encode(str, 'latin1')``."""
    if encoding.replace("-", "").lower() not in {"latin1", "iso88591"}:
        raise pickle.UnpicklingError(f"refusing codec {encoding!r} in a model pickle")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_encode,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    **{(mod, name): getattr(__import__("builtins"), name) for mod in ("__builtin__", "builtins")
       for name in ("set", "frozenset", "list", "dict", "tuple", "slice", "complex")},
    ("__builtin__", "bytearray"): _safe_bytearray,
    ("builtins", "bytearray"): _safe_bytearray,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _DtypeStandIn,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _safe_reconstruct
    _ALLOWED[(_mod, "scalar")] = _safe_scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):  # arrays in protocol-5 pickles (Python >= 3.14 default)
    _ALLOWED[(_mod, "_frombuffer")] = _safe_frombuffer
for _mod in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr",
             "scipy.sparse.compressed", "scipy.sparse.coo", "scipy.sparse._coo"):
    for _cls in ("csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"):
        _ALLOWED[(_mod, _cls)] = type(_cls, (_SparseStandIn,), {"format": _cls[:3]})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only numpy arrays, scipy sparse matrices and chumpy "
            "arrays are allowed in a head-model pickle (a pickle can run code)")


def _to_array(value, key: str):
    """Turn stand-ins into numpy arrays (recursively through dicts and lists)."""
    if isinstance(value, dict):
        return {k: _to_array(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_array(v, key) for v in value)
    if isinstance(value, (_ArrayStandIn, _DtypeStandIn)):
        try:
            return value.resolve()
        except pickle.UnpicklingError as exc:
            raise ModelFileError(f"{key}: {exc}") from exc
    if isinstance(value, _ChumpyStandIn):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ModelFileError(f"{key}: a chumpy object without a stored value ('x'); re-save the "
                                 "model with plain numpy arrays")
        return np.asarray(_to_array(state["x"], key))
    if isinstance(value, _SparseStandIn):
        state = _to_array(value.state, key) if isinstance(value.state, dict) else {}
        shape = state.get("_shape", state.get("shape"))
        try:
            if value.format == "coo":  # scipy < 1.13 pickles row/col, newer scipy a coords tuple
                row, col = state["coords"] if "coords" in state else (state["row"], state["col"])
                matrix = scipy.sparse.coo_matrix((state["data"], (row, col)), shape=shape)
            else:
                cls = scipy.sparse.csc_matrix if value.format == "csc" else scipy.sparse.csr_matrix
                matrix = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
                matrix.check_format(full_check=True)  # index bounds, before C++ code writes with them
            return matrix.toarray()  # (coo_matrix checks its bounds itself)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{key}: unreadable sparse matrix ({exc})") from exc
    return value


def load_pickle_restricted(path: str | Path) -> object:
    """Unpickle a Python-2-era model file without chumpy and without running arbitrary code."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model .pkl file")
    try:
        with open(path, "rb") as fh:
            return _to_array(_RestrictedUnpickler(fh, encoding="latin1").load(), path.name)
    except ModelFileError:
        raise
    except pickle.UnpicklingError as exc:
        if "refusing" in str(exc) or "allowed" in str(exc):  # a pickle, but with content we do not run
            raise ModelFileError(f"{path}: {exc}") from exc
        raise ModelFileError(f"{path}: not a readable pickle ({exc}); {EXPECTED_FILES}") from exc
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the file ({exc})") from exc
    except Exception as exc:  # noqa: BLE001  corrupt data fails in many ways; never a raw traceback
        raise ModelFileError(f"{path}: not a readable model pickle ({type(exc).__name__}: {exc}); "
                             f"{EXPECTED_FILES}") from exc


# --- FLAME -------------------------------------------------------------------------------


def load_flame(path: str | Path, num_shape: int = FLAME_DEFAULT_SHAPE, num_expr: int = FLAME_DEFAULT_EXPR) -> HeadModel:
    """Load a FLAME .pkl (2020, 2023, 2023 Open) keeping ``num_shape``/``num_expr`` components."""
    path = Path(path)
    data = load_pickle_restricted(path)
    required = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not a FLAME model (the pickle holds a {type(data).__name__}, not a dict with "
                             f"{', '.join(required)}). {FLAME_HELP}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ModelFileError(f"{path}: not a FLAME model, missing {', '.join(missing)}. {FLAME_HELP}")
    arr = {k: np.asarray(data[k]) for k in required}
    not_numeric = [f"{k} ({arr[k].dtype})" for k in required if arr[k].dtype.kind not in "iuf"]
    if not_numeric:
        raise ModelFileError(f"{path}: not a FLAME model, non-numeric {', '.join(not_numeric)}")
    for key, ndim in (("v_template", 2), ("kintree_table", 2), ("f", 2), ("J_regressor", 2), ("weights", 2)):
        if arr[key].ndim != ndim:
            raise ModelFileError(f"{path}: {key} has shape {arr[key].shape}; FLAME's is {ndim}-D")
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf, which validate() names
        arr = {k: v.astype(np.float32) if k not in ("kintree_table", "f") else v for k, v in arr.items()}
    v_template = arr["v_template"]
    n_vert = v_template.shape[0]
    shapedirs = arr["shapedirs"]
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (n_vert, 3) or shapedirs.shape[2] <= FLAME_SHAPE_COLUMNS:
        raise ModelFileError(f"{path}: shapedirs {shapedirs.shape} is not FLAME's ({n_vert}, 3, 300 shape + "
                             "expression) layout")
    n_shape_file, n_expr_file = FLAME_SHAPE_COLUMNS, shapedirs.shape[2] - FLAME_SHAPE_COLUMNS
    if not 0 < num_shape <= n_shape_file or not 0 < num_expr <= n_expr_file:
        raise ModelFileError(f"{path}: asked for {num_shape} shape / {num_expr} expression components, "
                             f"the file holds {n_shape_file} / {n_expr_file}")
    kintree = arr["kintree_table"].astype(np.int64)
    n_joint = kintree.shape[1]
    if n_joint != len(FLAME_JOINT_NAMES):
        raise ModelFileError(f"{path}: {n_joint} joints; FLAME has 5 (global, neck, jaw, left eye, right eye)")
    parents = kintree[0].copy()
    parents[0] = -1
    posedirs = arr["posedirs"]
    if posedirs.shape != (n_vert, 3, (n_joint - 1) * 9):
        raise ModelFileError(f"{path}: posedirs {posedirs.shape}, expected ({n_vert}, 3, {(n_joint - 1) * 9})")
    j_regressor = arr["J_regressor"]
    faces = arr["f"].astype(np.int32)
    regions = _flame_masks(path.parent / "FLAME_masks.pkl", n_vert)
    with np.errstate(all="ignore"):  # a corrupt file's non-finite values are named by _validated, not warned about
        eyes = j_regressor[3:5] @ v_template
    head = HeadModel(
        name=path.name, kind="flame", v_template=v_template, faces=faces,
        shapedirs=np.ascontiguousarray(shapedirs[:, :, :num_shape]),
        exprdirs=np.ascontiguousarray(shapedirs[:, :, FLAME_SHAPE_COLUMNS:FLAME_SHAPE_COLUMNS + num_expr]),
        head_center=eyes.mean(0).astype(np.float32), joint_names=FLAME_JOINT_NAMES,
        j_regressor=j_regressor, parents=parents, lbs_weights=arr["weights"],
        posedirs=np.ascontiguousarray(posedirs.reshape(-1, posedirs.shape[2]).T), regions=regions,
        source_sha256=file_sha256(path), description=f"FLAME ({n_shape_file} shape / {n_expr_file} expression in file)",
    )
    _validated(head, path)
    return head


def _flame_masks(path: Path, n_vert: int) -> dict[str, np.ndarray]:
    """FLAME_masks.pkl (region name -> vertex ids) beside the model, when present."""
    if not path.exists():
        return {}
    masks = load_pickle_restricted(path)
    if not isinstance(masks, dict):
        raise ModelFileError(f"{path}: expected a dict of region name -> vertex indices")
    out = {str(k): np.asarray(v, dtype=np.int64).ravel() for k, v in masks.items()}
    for name, idx in out.items():
        if idx.size and (idx.min() < 0 or idx.max() >= n_vert):
            raise ModelFileError(f"{path}: region {name!r} indexes outside the model's {n_vert} vertices")
    return out


# --- ICT-FaceKit ---------------------------------------------------------------------------

ICT_KEYS = ("v_template", "faces", "shapedirs", "exprdirs", "expression_names", "eyeball_vertex_range",
            "face_vertex_count")


def load_ict(path: str | Path, num_shape: int | None = None, num_expr: int | None = None) -> HeadModel:
    """Load the ICT-FaceKit light layout (see ../shared/data/README.md). Rigid: jawOpen is an expression."""
    path = Path(path)
    d = _read_npz(path)
    missing = [k for k in ICT_KEYS if k not in d]
    if missing:
        raise ModelFileError(f"{path}: not an ICT-FaceKit head model, missing {', '.join(missing)}")
    n_vert = d["v_template"].shape[0]
    eye_lo, eye_hi = (int(x) for x in d["eyeball_vertex_range"])
    n_face = int(d["face_vertex_count"])
    if not (0 < n_face <= eye_lo < eye_hi <= n_vert and (eye_hi - eye_lo) % 2 == 0):
        raise ModelFileError(f"{path}: inconsistent ranges (face_vertex_count {n_face}, eyeballs [{eye_lo}, {eye_hi}) "
                             f"of {n_vert} vertices; two equal eyeballs expected after the head)")
    regions = {"face": np.arange(n_face), "head_neck": np.arange(n_face, eye_lo), "eyeballs": np.arange(eye_lo, eye_hi)}
    if "iris_vertex_ranges" in d:
        for side, (lo, hi) in zip(("left", "right"), d["iris_vertex_ranges"]):
            regions[f"iris_{side}"] = np.arange(int(lo), int(hi))
    eye_mid = (eye_lo + eye_hi) // 2  # two eyeballs of equal size, one after the other
    v_template = d["v_template"].astype(np.float32)
    centers = [v_template[eye_lo:eye_mid].mean(0), v_template[eye_mid:eye_hi].mean(0)]
    head = HeadModel(
        name=path.name, kind="ict", v_template=v_template, faces=d["faces"].astype(np.int32),
        shapedirs=d["shapedirs"].astype(np.float32), exprdirs=d["exprdirs"].astype(np.float32),
        head_center=np.mean(centers, axis=0).astype(np.float32),
        expression_names=[str(n) for n in d["expression_names"]], regions=regions,
        vertex_rgb=d["vertex_rgb"].astype(np.float32) if "vertex_rgb" in d else None,
        source_sha256=file_sha256(path), description="ICT-FaceKit light (MIT, USC ICT), rigid pose",
    )
    if "lmk68" in d:
        head.regions["lmk68"] = d["lmk68"].astype(np.int64)
    _validated(head, path)
    return _truncated(head, path, num_shape, num_expr)


# --- flamecam's own npz ----------------------------------------------------------------------


def save_head_model(head: HeadModel, path: str | Path) -> None:
    """Write any head model in flamecam's internal form (a documented .npz)."""
    arrays = {
        "format": np.array(FLAMECAM_NPZ_FORMAT), "version": np.array(FLAMECAM_NPZ_VERSION),
        "name": np.array(head.name), "kind": np.array(head.kind), "description": np.array(head.description),
        "is_coarse": np.array(head.is_coarse), "v_template": head.v_template, "faces": head.faces,
        "shapedirs": head.shapedirs, "exprdirs": head.exprdirs, "head_center": head.head_center,
    }
    if head.expression_names is not None:
        arrays["expression_names"] = np.array(head.expression_names)
    if head.vertex_rgb is not None:
        arrays["vertex_rgb"] = head.vertex_rgb
    if head.is_articulated:
        arrays.update(joint_names=np.array(head.joint_names), j_regressor=head.j_regressor, parents=head.parents,
                      lbs_weights=head.lbs_weights, posedirs=head.posedirs)
    for name, idx in head.regions.items():
        arrays[f"region:{name}"] = idx
    # Through a file handle: np.savez_compressed would append ".npz" to any other suffix.
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_flamecam_npz(path: str | Path, num_shape: int | None = None, num_expr: int | None = None) -> HeadModel:
    path = Path(path)
    d = _read_npz(path)
    if "format" not in d or str(d["format"]) != FLAMECAM_NPZ_FORMAT:
        raise ModelFileError(f"{path}: not a flamecam head-model .npz (no format '{FLAMECAM_NPZ_FORMAT}')")
    missing = [k for k in ("version", "name", "kind", "description", "is_coarse", "v_template", "faces",
                           "shapedirs", "exprdirs", "head_center") if k not in d]
    if missing:
        raise ModelFileError(f"{path}: incomplete flamecam head model, missing {', '.join(missing)}")
    version = int(d["version"])
    if version > FLAMECAM_NPZ_VERSION:
        raise ModelFileError(f"{path}: written by a newer flamecam (format version {version}); upgrade flamecam")
    articulated = "j_regressor" in d
    head = HeadModel(
        name=str(d["name"]), kind=str(d["kind"]), v_template=d["v_template"], faces=d["faces"],
        shapedirs=d["shapedirs"], exprdirs=d["exprdirs"], head_center=d["head_center"],
        expression_names=[str(n) for n in d["expression_names"]] if "expression_names" in d else None,
        joint_names=tuple(str(n) for n in d["joint_names"]) if articulated else None,
        j_regressor=d.get("j_regressor"), parents=d.get("parents"), lbs_weights=d.get("lbs_weights"),
        posedirs=d.get("posedirs"), vertex_rgb=d.get("vertex_rgb"),
        regions={k.split(":", 1)[1]: v for k, v in d.items() if k.startswith("region:")},
        source_sha256=file_sha256(path), is_coarse=bool(d["is_coarse"]), description=str(d["description"]),
    )
    _validated(head, path)
    return _truncated(head, path, num_shape, num_expr)


# --- dispatch ----------------------------------------------------------------------------------


def load_head_model(source: str | Path | None = None, num_shape: int | None = None,
                    num_expr: int | None = None) -> HeadModel:
    """Load a head model from a path, or the built-in coarse model for None / ``"builtin"``.

    FLAME pickles default to 100 shape / 50 expression components; other sources keep all
    unless asked. Raises :class:`ModelFileError` with an actionable message.
    """
    if source is None or str(source) == "builtin":
        from core.builtin_model import load_builtin_model  # noqa: PLC0415  (needs the landmarker file)

        return load_builtin_model().truncated(num_shape, num_expr)
    path = Path(source)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}. Use 'builtin' for the coarse built-in head. {FLAME_HELP}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; pass a FLAME .pkl or a head-model .npz file "
                             "(for an ICT-FaceKit clone run 'flamecam convert-ict' first)")
    with path.open("rb") as fh:
        head_bytes = fh.read(4)
    # Protocol 2+ pickles start with PROTO (0x80); protocol 0/1 ones (Python 2 era) with MARK, EMPTY_DICT or EMPTY_LIST.
    if head_bytes[:1] in (b"\x80", b"(", b"}", b"]") or path.suffix == ".pkl":
        return load_flame(path, FLAME_DEFAULT_SHAPE if num_shape is None else num_shape,
                          FLAME_DEFAULT_EXPR if num_expr is None else num_expr)
    if head_bytes[:2] == b"PK":
        files = set(_read_npz(path, keys_only=True))
        if "format" in files:
            return load_flamecam_npz(path, num_shape, num_expr)
        if {"exprdirs", "eyeball_vertex_range"} <= files:
            return load_ict(path, num_shape, num_expr)
        raise ModelFileError(f"{path}: an .npz that is neither a flamecam head model nor the ICT-FaceKit layout "
                             f"(keys: {', '.join(sorted(files)[:8])})")
    raise ModelFileError(f"{path}: unknown model file type; expected a FLAME .pkl or a head-model .npz. {FLAME_HELP}")


def _read_npz(path: Path, keys_only: bool = False) -> dict[str, np.ndarray]:
    """All arrays of an .npz (or just its keys), with file problems turned into ModelFileError."""
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a head-model .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ModelFileError(f"{path}: a single .npy array, not a head-model .npz")
            return dict.fromkeys(data.files) if keys_only else {k: data[k] for k in data.files}
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: unreadable .npz ({type(exc).__name__}: {exc}); {EXPECTED_FILES}") from exc


def _truncated(head: HeadModel, path: Path, num_shape: int | None, num_expr: int | None) -> HeadModel:
    try:
        return head.truncated(num_shape, num_expr)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc


def _validated(head: HeadModel, path: Path) -> None:
    try:
        head.validate()
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
