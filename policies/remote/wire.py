"""openpi's wire format: msgpack frames in which numpy arrays and scalars are tagged maps.

An array is ``{b"__ndarray__": True, b"data": bytes, b"dtype": dtype.str, b"shape": shape}`` and a
numpy scalar ``{b"__npgeneric__": True, b"data": item, b"dtype": dtype.str}``, with the tag keys as
msgpack binary, as ``openpi-client``'s ``msgpack_numpy`` writes them, so either side may be openpi's.
Object, void and complex dtypes are refused both ways: they could carry pickles or have no portable
layout. A received array must hold exactly the bytes its shape and dtype need.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

REFUSED_KINDS = "OVc"  # object, void (structured), complex


class WireError(ValueError):
    """A frame that is not valid openpi msgpack."""


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in REFUSED_KINDS:
        raise WireError(f"cannot send dtype {obj.dtype}: object, void and complex arrays are refused")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise WireError(f"cannot send a {type(obj).__name__}: only dicts, lists, strings, numbers and numpy arrays")


def _get(obj: dict, key: str) -> Any:
    return obj[key.encode()] if key.encode() in obj else obj[key]


def _dtype(text: Any) -> np.dtype:
    try:
        dtype = np.dtype(text.decode() if isinstance(text, bytes) else text)
    except (TypeError, ValueError):
        raise WireError(f"array dtype {text!r} is not a numpy dtype") from None
    if dtype.kind in REFUSED_KINDS or dtype.hasobject:
        raise WireError(f"array dtype {dtype} refused: object, void and complex arrays are not accepted")
    return dtype


def _object_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        try:
            data, dtype, shape = _get(obj, "data"), _dtype(_get(obj, "dtype")), tuple(_get(obj, "shape"))
        except KeyError as err:
            raise WireError(f"array map without {err}") from None
        if not isinstance(data, bytes) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise WireError("array map needs binary data and a shape of non-negative integers")
        if int(np.prod(shape, dtype=object)) * dtype.itemsize != len(data):
            raise WireError(f"array of shape {shape} and dtype {dtype} needs {int(np.prod(shape, dtype=object)) * dtype.itemsize}"
                            f" bytes, the frame has {len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        try:
            return _dtype(_get(obj, "dtype")).type(_get(obj, "data"))
        except KeyError as err:
            raise WireError(f"scalar map without {err}") from None
        except (TypeError, ValueError, OverflowError) as err:
            raise WireError(f"scalar map: {err}") from None
    return obj


def pack(obj: Any) -> bytes:
    """One frame's bytes."""
    return msgpack.packb(obj, default=_pack_default)


def unpack(frame: bytes) -> Any:
    """A frame's object, arrays as read-only numpy arrays over the frame's bytes; ``WireError`` if malformed."""
    try:
        return msgpack.unpackb(frame, object_hook=_object_hook, strict_map_key=False)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError) as err:
        raise WireError(f"not a msgpack frame: {type(err).__name__}: {err}") from None
