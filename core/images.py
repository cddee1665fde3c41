"""Image arrays without torch: decode PNG/JPEG, check layout, dtype and range, resize for prediction."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from core.errors import CorruptFile, InvalidInput
from dgm.shared import nchw

MAX_PIXELS = 4096 * 4096  # per image; refuses decompression bombs before decoding
FORMATS = ("PNG", "JPEG")
SAMPLES_PER_CLASS = 8  # columns of a version's samples.png
CELL = 48  # pixels per sample in the grid
LABEL_WIDTH = 96


def decode_image(data: bytes, image_shape: tuple[int, int, int], name: str, resize: bool) -> np.ndarray:
    """PNG/JPEG bytes -> C x H x W uint8 in the learner's channels; resized only when `resize`."""
    c, h, w = image_shape
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
        if img.size[0] * img.size[1] > MAX_PIXELS:
            raise InvalidInput(f"{name}: image of {img.size[0]}x{img.size[1]} pixels is too large")
        img.load()
        img = img.convert("L" if c == 1 else "RGB")
    except Image.DecompressionBombError as exc:  # PIL's own guard, before ours when the size is absurd
        raise InvalidInput(
            f"{name}: image is too large to decode ({exc}); send it at the learner's size"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptFile(f"{name}: not a readable PNG or JPEG image ({exc}); re-export the file") from exc
    if img.size != (w, h):
        if not resize:
            raise InvalidInput(
                f"{name}: image is {img.size[0]}x{img.size[1]} (width x height); this learner expects "
                f"{w}x{h}. Resize the images or create a learner with image_shape [{c}, {h}, {w}]"
            )
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if c == 1 else arr.transpose(2, 0, 1)


def to_nchw(x: np.ndarray, image_shape: tuple[int, int, int], what: str = "images") -> np.ndarray:
    """N x H x W (one channel), N x C x H x W or N x H x W x C -> N x C x H x W; else a clear error.

    The layouts are dgm/shared.nchw's, which the library applies too (dgm/images.to_nchw).
    """
    c, h, w = image_shape
    if (out := nchw(x, image_shape)) is not None:
        return out
    want = f"N x {h} x {w}" if c == 1 else f"N x {h} x {w} x {c} or N x {c} x {h} x {w}"
    raise InvalidInput(
        f"{what} have shape {list(x.shape)} but this learner's image shape is [{c}, {h}, {w}]: "
        f"send an array of N x {h} x {w} x {c}" + (f" or {want}" if c == 1 else f" ({want})")
    )


def check_pixels(x: np.ndarray, what: str = "images") -> np.ndarray:
    """uint8 as is; float must be finite and in [0, 1] (returned as float32); other dtypes refused."""
    if x.size == 0:
        raise InvalidInput(f"{what}: no images given; send at least one image")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidInput(
            f"{what}: pixel dtype {x.dtype} is not supported; send uint8 0..255 or float in [0, 1]"
        )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise InvalidInput(
            f"{what}: {bad} image(s) contain NaN or infinite pixels; replace them with values in [0, 1]"
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise InvalidInput(
            f"{what}: float pixels must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]; divide 0..255 "
            "data by 255 or send uint8"
        )
    return x


def resize_batch(x: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """N x H' x W' (x C) arrays of another size -> the learner's size (prediction only), uint8 or float."""
    c, h, w = image_shape
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise InvalidInput(
            f"images have shape {list(x.shape)}; send N x H x W or N x H x W x C with C 1 or 3"
        )
    out = []
    for img in x:
        as_u8 = img if img.dtype == np.uint8 else np.round(img * 255).astype(np.uint8)
        pil = Image.fromarray(as_u8[..., 0] if as_u8.shape[-1] == 1 else as_u8)
        pil = pil.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(pil, dtype=np.uint8)
        out.append(arr[None] if c == 1 else arr.transpose(2, 0, 1))
    return np.stack(out)


def render_grid(samples: dict[str, np.ndarray]) -> bytes:
    """One row per class: its name, then its samples (n x C x H x W floats in [0, 1]) scaled to CELL."""
    grid = Image.new("RGB", (LABEL_WIDTH + SAMPLES_PER_CLASS * CELL, CELL * len(samples)), "white")
    draw = ImageDraw.Draw(grid)
    for row, (label, imgs) in enumerate(samples.items()):
        draw.text((4, row * CELL + CELL // 2 - 6), label[:14], fill="black")
        for col, img in enumerate(imgs):
            arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            tile = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
            grid.paste(
                tile.convert("RGB").resize((CELL, CELL), Image.Resampling.NEAREST),
                (LABEL_WIDTH + col * CELL, row * CELL),
            )
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return buf.getvalue()
