"""Turn user arrays (numpy, torch tensors, lists) into checked numpy arrays, torch-free."""

from __future__ import annotations

from typing import Any

import numpy as np

from kdas.errors import KdasError


def to_numpy(value: Any) -> np.ndarray:
    """A numpy view or copy of `value`; torch tensors are detected by duck typing.

    Going through `.detach().cpu()` keeps this module importable on a torch-free runtime while
    still accepting GPU or autograd tensors; bfloat16 has no numpy dtype, so it is widened first.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if "bfloat16" in str(getattr(value, "dtype", "")):
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def as_float_matrix(value: Any, name: str) -> np.ndarray:
    """A 2-D float32/float64 array with no NaN (checked by the caller where that is cheaper)."""
    array = to_numpy(value)
    if array.ndim != 2:
        raise KdasError(f"{name} must be a 2-D matrix, got shape {tuple(array.shape)}")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind in "biu":
        array = array.astype(np.float64)
    elif array.dtype not in (np.float32, np.float64):
        raise KdasError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def as_id_vector(value: Any, name: str, length: int) -> np.ndarray:
    """A 1-D int64 vector of identities or cameras with the expected length."""
    array = to_numpy(value)
    if array.ndim != 1:
        raise KdasError(f"{name} must be a 1-D vector, got shape {tuple(array.shape)}")
    if array.shape[0] != length:
        raise KdasError(
            f"{name} has {array.shape[0]} entries but the distance matrix needs {length}"
        )
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise KdasError(f"{name} must hold integer ids, got non-integer values")
    elif array.dtype.kind not in "biu":
        raise KdasError(f"{name} must hold integer ids, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def has_nan(array: np.ndarray) -> bool:
    """NaN check in one reduction pass and no temporary the size of `array`."""
    return bool(array.size) and bool(np.isnan(np.max(array)))


def all_finite(array: np.ndarray) -> bool:
    """No NaN or Inf, in two reduction passes and no temporary the size of `array`."""
    return not array.size or bool(np.isfinite(np.min(array)) and np.isfinite(np.max(array)))
