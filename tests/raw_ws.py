"""A websocket client on a bare socket, for what a library client will not do: announce a frame of
any length and stream (or trickle, or abandon) its payload without holding it in memory. Client
frames are masked (RFC 6455) with the all-zero key, so the payload goes out as it is."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time


def handshake(port: int, key: str | None = None, timeout: float = 10.0) -> socket.socket:
    """An open websocket on 127.0.0.1:``port`` (the server's metadata frame is left unread);
    ``ConnectionError`` with the status line if the server refuses the upgrade."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    auth = f"Authorization: Api-Key {key}\r\n" if key else ""
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{auth}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: what follows the headers is the metadata frame
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status + " ":
        sock.close()
        raise ConnectionError(status)
    return sock


def header(length: int, opcode: int = 2) -> bytes:
    """A final frame's header announcing ``length`` payload bytes, masked with the zero key."""
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 1 << 16:
        size = bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        size = bytes([0x80 | 127]) + struct.pack("!Q", length)
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0"


def send_frame(sock: socket.socket, payload: bytes, opcode: int = 2, pause_s: float = 0.0, pieces: int = 1) -> None:
    """One frame; with ``pieces`` > 1, trickled in that many parts ``pause_s`` apart."""
    data = header(len(payload), opcode) + payload
    step = max(1, -(-len(data) // pieces))
    for i in range(0, len(data), step):
        sock.sendall(data[i:i + step])
        if pause_s:
            time.sleep(pause_s)


def stream_zeros(sock: socket.socket, length: int, chunk: int = 1 << 20) -> int:
    """Announce a frame of ``length`` bytes and send zeros until done or the server hangs up; the
    bytes sent (the payload is never held whole, so the client stays small)."""
    zeros, sent = bytes(chunk), 0
    try:
        sock.sendall(header(length))
        while sent < length:
            sent += sock.send(zeros[: min(chunk, length - sent)])
    except OSError:  # the server closed the connection: what a refusal looks like from here
        pass
    return sent


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next frame from the server (unmasked): (opcode, payload); (-1, b"") if the socket closed."""
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            part = sock.recv(n - len(data))
            if not part:
                raise EOFError
            data += part
        return data

    try:
        first, second = exact(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", exact(8))[0]
        return first & 0x0F, exact(length)
    except (EOFError, OSError):
        return -1, b""
