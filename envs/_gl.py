"""Pick a headless OpenGL backend before mujoco is imported.

MuJoCo tries GLFW when ``MUJOCO_GL`` is unset, which fails on a machine with no display
("gladLoadGL error"). We choose EGL (Mesa's software rasteriser works through it) only when the
user has not chosen and no display is present.
"""

import os


def ensure_headless_gl() -> None:
    """Set ``MUJOCO_GL=egl`` (and the matching PyOpenGL platform) when there is no display."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    if os.environ.get("MUJOCO_GL") == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


ensure_headless_gl()
