"""Policies served over openpi's websocket protocol: the wire format, the I/O profiles, the client.

The server that exposes a simeval policy the same way is the harness's (``simeval serve``)."""
