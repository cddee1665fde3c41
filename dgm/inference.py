"""Serving entry point: the small classifier file only (no generator, no masks), loaded fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dgm import checkpoint, images
from dgm.errors import CheckpointError
from dgm.networks import Discriminator
from dgm.shared import sha256_file


class Classifier:
    """D's trunk and class head with the class names: `predict(x)` -> labels and softmax scores."""

    def __init__(
        self,
        disc: Discriminator,
        classes: list[str],
        image_shape: tuple[int, int, int],
        device: torch.device,
    ) -> None:
        self.disc, self.classes, self.image_shape, self.device = disc, classes, image_shape, device

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", sha256: str | None = None) -> Classifier:
        """Load a classifier file; with `sha256`, refuse a file whose digest differs."""
        if sha256 is not None:
            actual = sha256_file(path)
            if actual != sha256:
                raise CheckpointError(f"{path}: sha256 {actual} does not match the recorded {sha256}")
        tensors, meta = checkpoint.read(path, "classifier")
        state = meta["state"]
        disc = Discriminator.from_state(tensors, state)
        dev = torch.device(device)
        return cls(disc.to(dev), list(state["classes"]), tuple(state["image_shape"]), dev)

    @torch.inference_mode()
    def scores(self, x: np.ndarray) -> np.ndarray:
        """Softmax scores N x K over `classes`."""
        xt = images.prepare(x, self.image_shape, self.device)
        return torch.cat([self.disc.logits(c).float().softmax(1) for c in xt.split(512)]).cpu().numpy()

    def predict(self, x: np.ndarray) -> tuple[list[str], np.ndarray]:
        probs = self.scores(x)
        return [self.classes[i] for i in probs.argmax(1)], probs
