"""Image arrays in, network tensors out: layout, dtype and range checks with messages that say what to fix."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dgm.errors import DGMInputError
from dgm.networks import INTERNAL_SIZE
from dgm.shared import nchw


def to_nchw(x: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Accept N x H x W (one channel), N x C x H x W or N x H x W x C; return N x C x H x W.

    The layouts are dgm/shared.nchw's, which the service's own check (core/images.to_nchw) uses too.
    """
    c, h, w = image_shape
    x = np.asarray(x)
    if (out := nchw(x, image_shape)) is not None:
        return out
    expected = f"N x {h} x {w}" if c == 1 else f"N x {c} x {h} x {w} or N x {h} x {w} x {c}"
    if c == 1:
        expected += f" (or N x 1 x {h} x {w})"
    raise DGMInputError(f"images have shape {tuple(x.shape)}; this learner expects {expected}")


def to_unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 0..255 or float in [0, 1] -> float32 in [0, 1]; anything else is refused."""
    if x.size == 0:
        raise DGMInputError("no images given: send at least one image")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DGMInputError("images contain NaN or infinite pixels; replace them with values in [0, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise DGMInputError(
                f"float pixels must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]; divide uint8 data by 255 "
                "or send it as uint8"
            )
        return np.clip(x, 0.0, 1.0)
    raise DGMInputError(f"pixel dtype {x.dtype} is not supported; send uint8 (0..255) or float in [0, 1]")


def prepare(x: np.ndarray, image_shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """User images -> (N, C, 32, 32) float tensor in [-1, 1] on `device`."""
    arr = to_unit_float(to_nchw(x, image_shape))
    t = torch.from_numpy(arr).to(device)
    if t.shape[-2:] != (INTERNAL_SIZE, INTERNAL_SIZE):
        t = F.interpolate(t, size=(INTERNAL_SIZE, INTERNAL_SIZE), mode="bilinear", align_corners=False)
    return t * 2 - 1


def to_user(t: torch.Tensor, image_shape: tuple[int, int, int]) -> np.ndarray:
    """(N, C, 32, 32) in [-1, 1] -> numpy N x C x H x W float32 in [0, 1] at the learner's image size."""
    _, h, w = image_shape
    t = t.detach().float()
    if (h, w) != (INTERNAL_SIZE, INTERNAL_SIZE):
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=h < INTERNAL_SIZE)
    return ((t.clamp(-1, 1) + 1) / 2).cpu().numpy()
