"""MNIST-like digits drawn with Pillow's built-in font: data that needs no download and no extra package.

For benchmarks that measure speed, not accuracy (`dgm bench predict`), so that they run from a plain
`pip install` of the service.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def glyph_digits(per_class: int = 60, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of each digit 0-9, shifted and rotated: (N, size, size) uint8, N labels."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    x, y = [], []
    for digit in range(10):
        for _ in range(per_class):
            canvas = Image.new("L", (16, 16))
            dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
            ImageDraw.Draw(canvas).text((5 + dx, 2 + dy), str(digit), fill=255, font=font)
            img = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
            x.append(np.asarray(img.resize((size, size), Image.Resampling.BILINEAR)))
            y.append(digit)
    return np.stack(x), np.array(y)
