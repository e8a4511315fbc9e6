"""Builds small FLAME-layout pickles (the real FLAME needs registration and is never here).

Variants the loader must read (see ../shared/data/README.md for the layout):

* ``2020``: written by Python 2 (protocol 2, ``str`` data, ``numpy.core`` module paths), chumpy ``Ch``
  for v_template and shapedirs, scipy ``csc_matrix`` J_regressor.
* ``2023``: the same file layout with plain numpy arrays instead of chumpy.
* ``2023_open``: plain numpy written by Python 3 (protocol 4), a dense J_regressor, int64 faces, no
  ``J`` / ``bs_style`` / ``bs_type`` — the variations a re-saved file may carry.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickle
import struct
import sys
import types

import numpy as np
import scipy.sparse


def make_chumpy_module() -> types.ModuleType:
    """A stand-in ``chumpy.ch`` module whose ``Ch`` pickles like chumpy's (value in the state)."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set(), "_itr": None}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch.Ch = Ch
    chumpy.ch = ch
    return chumpy


def flame_like_arrays(n_vert: int = 60, n_shape: int = 300, n_expr: int = 100, seed: int = 0) -> dict:
    """Random arrays in FLAME's layout: a blob head with 5 joints and smooth bases."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, np.pi, n_vert)
    phi = rng.uniform(0, 2 * np.pi, n_vert)
    v = 0.09 * np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], 1)
    faces = np.array([[i, (i + 1) % n_vert, (i + 2) % n_vert] for i in range(n_vert - 2)], np.uint32)
    weights = rng.uniform(0, 1, (n_vert, 5))
    weights /= weights.sum(1, keepdims=True)
    j_reg = rng.uniform(0, 1, (5, n_vert)) * (rng.uniform(0, 1, (5, n_vert)) > 0.7)
    j_reg /= j_reg.sum(1, keepdims=True)
    return {
        "v_template": v.astype(np.float64),
        "f": faces,
        "shapedirs": (rng.normal(0, 1e-3, (n_vert, 3, n_shape + n_expr))).astype(np.float64),
        "posedirs": rng.normal(0, 1e-3, (n_vert, 3, 36)),
        "J_regressor": scipy.sparse.csc_matrix(j_reg),
        "J": j_reg @ v,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


class Python2StylePickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: ``bytes`` and ``str`` as Python 2 ``str`` opcodes
    (SHORT_BINSTRING / BINSTRING, decoded with latin1 on load), numpy 1.x module paths
    (``numpy.core.multiarray``) and Python 2 module names (``copy_reg``, ``__builtin__``)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        n = len(data)
        if self.proto == 0:  # text protocol: STRING with a quoted, escaped repr
            self.write(pickle.STRING + b"'" + codecs.escape_encode(data)[0] + b"'\n")
        else:
            self.write((pickle.SHORT_BINSTRING + bytes([n])) if n < 256 else (pickle.BINSTRING + struct.pack("<i", n)))
            self.write(data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str
    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)

    def save_global(self, obj, name=None):
        name = name or getattr(obj, "__qualname__", None) or obj.__name__
        module = getattr(obj, "__module__", None) or pickle.whichmodule(obj, name)
        module = module.replace("numpy._core", "numpy.core")
        if (module, name) in _compat_pickle.REVERSE_NAME_MAPPING:
            module, name = _compat_pickle.REVERSE_NAME_MAPPING[(module, name)]
        module = _compat_pickle.REVERSE_IMPORT_MAPPING.get(module, module)
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def python2_style_dumps(obj, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    Python2StylePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def write_flame_pickle(path, arrays: dict, chumpy_keys=("v_template", "shapedirs"), protocol: int = 2,
                       python2: bool = False) -> None:
    """Pickle ``arrays`` as FLAME files are: chumpy-typed arrays, sparse J_regressor, latin1-safe.

    ``python2=True`` writes the bytes Python 2 would have written (see :class:`Python2StylePickler`).
    """
    chumpy = make_chumpy_module()
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, chumpy.ch
    try:
        data = {k: (chumpy.ch.Ch(v) if k in chumpy_keys else v) for k, v in arrays.items()}
        with open(path, "wb") as fh:
            if python2:
                fh.write(python2_style_dumps(data, protocol))
            else:
                pickle.dump(data, fh, protocol=protocol)
    finally:
        for k, mod in saved.items():
            if mod is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = mod


FLAME_VARIANTS = ("2020", "2023", "2023_open")


def write_flame_variant(path, variant: str, arrays: dict) -> None:
    """Write ``arrays`` (from :func:`flame_like_arrays`) the way the given FLAME release stores them."""
    if variant == "2020":
        write_flame_pickle(path, arrays, chumpy_keys=("v_template", "shapedirs"), protocol=2, python2=True)
    elif variant == "2023":
        write_flame_pickle(path, arrays, chumpy_keys=(), protocol=2, python2=True)
    elif variant == "2023_open":
        data = {k: v for k, v in arrays.items() if k not in ("J", "bs_style", "bs_type")}
        data["J_regressor"] = np.asarray(arrays["J_regressor"].toarray())
        data["f"] = arrays["f"].astype(np.int64)
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=4)
    else:
        raise ValueError(f"unknown FLAME variant {variant!r}; one of {FLAME_VARIANTS}")
