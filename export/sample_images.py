"""Generated stand-in photos for the YOLOS parity gate when no real photos are configured.

Parity compares two implementations on the same pixels, so any image with structure exercises
it; real photos (``TRITONGATE_IMAGES_DIR``) are still preferred and used whenever present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# (width, height): the browser's 4:3 frame, a wide image, a tall one and a small one, so the
# resize-and-pad path is exercised in every direction.
SAMPLE_SIZES: tuple[tuple[int, int], ...] = ((640, 480), (800, 450), (375, 500), (320, 240))


def write_sample_images(directory: Path, seed: int = 0) -> list[Path]:
    """Write JPEGs with gradients and filled shapes into ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index, (width, height) in enumerate(SAMPLE_SIZES):
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
            x1, y1 = x0 + rng.integers(20, width // 2), y0 + rng.integers(20, height // 2)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            else:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
        path = directory / f"sample-{index}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths
