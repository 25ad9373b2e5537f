"""The messages between simeval and its LIBERO worlds: plain data, one definition, two interpreters.

simeval's env workers run in simeval's interpreter (numpy 2, robosuite 1.5); LIBERO runs in its
side environment (numpy < 2, robosuite 1.4). Each message is a dict of strings, numbers, lists,
bytes and numpy arrays, sent over a socket as a length-prefixed pickle of builtins only: arrays
travel as (dtype, shape, bytes), so neither side unpickles the other's numpy, and the reader
refuses any pickled global (a message cannot make the other side import or call anything).

This file imports only the standard library and numpy, so both interpreters load it: simeval as
``envs.libero.wire``, the side worker as the sibling module ``wire``.
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
from typing import Any

import numpy as np

HEADER = struct.Struct("<Q")
MAX_MESSAGE = 1 << 31  # bytes; a message larger than this is damage, not data
ARRAY = "__ndarray__"


class WireClosed(EOFError):
    """The other side closed the socket (or died)."""


def _plain(value: Any) -> Any:
    """``value`` with every numpy array (and numpy scalar) turned into builtins."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {ARRAY: (array.dtype.str, list(array.shape), array.tobytes())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _arrays(value: Any) -> Any:
    """The inverse of :func:`_plain`."""
    if isinstance(value, dict):
        if ARRAY in value and len(value) == 1:
            dtype, shape, data = value[ARRAY]
            return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape).copy()
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays(v) for v in value]
    return value


class _Builtins(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle's hook
        raise pickle.UnpicklingError(f"message refers to {module}.{name}; only plain data may cross")


def encode(message: dict) -> bytes:
    body = pickle.dumps(_plain(message), protocol=4)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict:
    return _arrays(_Builtins(io.BytesIO(body)).load())


def _read(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 22))
        if not chunk:
            raise WireClosed("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send(sock: socket.socket, message: dict) -> None:
    sock.sendall(encode(message))


def recv(sock: socket.socket) -> dict:
    (size,) = HEADER.unpack(_read(sock, HEADER.size))
    if size > MAX_MESSAGE:
        raise WireClosed(f"a message of {size} bytes announced: the stream is damaged")
    return decode(_read(sock, size))
