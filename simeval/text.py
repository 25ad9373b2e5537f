"""Text drawn onto images (labels on pictures and videos), with Pillow's built-in font: no downloads."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def draw_text(image: np.ndarray, text: str, origin: tuple[int, int], scale: int = 1,
              color: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Write ``text`` in place on an H x W x 3 uint8 image, on a dark box so it reads on any scene."""
    font = ImageFont.load_default(size=10 * scale)
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    left, top, right, bottom = draw.textbbox(origin, text, font=font)
    draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=(0, 0, 0))
    draw.text(origin, text, font=font, fill=color)
    image[...] = np.asarray(pil)


def wrap(text: str, width: int) -> list[str]:
    """Words of ``text`` in lines of at most ``width`` characters (a longer word gets its own line)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])
