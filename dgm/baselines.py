"""Reference points for the accuracy benchmark: DGM's classifier network trained without DGM.

- joint: trained on the real data of every class at once (upper bound, needs all old data);
- finetune: trained task after task on the new classes only, head widened (lower bound, forgets).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dgm import images
from dgm.config import LearnerConfig
from dgm.errors import DGMInputError
from dgm.networks import Discriminator


class PlainClassifier:
    """DGM's discriminator trunk and class head trained with cross-entropy only."""

    def __init__(self, cfg: LearnerConfig, seed: int = 0, device: str = "cpu") -> None:
        self.cfg, self.device = cfg, torch.device(device)
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        torch.manual_seed(seed)
        self.classes: list[str] = []
        self.net: Discriminator | None = None

    def _widen(self, new: list[str]) -> Discriminator:
        old = self.net
        self.classes = self.classes + [c for c in new if c not in self.classes]
        net = Discriminator(self.cfg.image_shape[0], self.cfg.ndf, len(self.classes)).to(self.device)
        if old is not None:  # keep the trunk and the old rows of the head
            state = old.state_dict()
            head_w, head_b = state.pop("classify.weight"), state.pop("classify.bias")
            net.load_state_dict(state, strict=False)
            with torch.no_grad():
                net.classify.weight[: len(head_w)] = head_w
                net.classify.bias[: len(head_b)] = head_b
        self.net = net
        return net

    def _fitted(self) -> Discriminator:
        if self.net is None:
            raise DGMInputError("the classifier has not been fitted yet; call fit first")
        return self.net

    def fit(self, x: np.ndarray, y, epochs: int) -> None:
        """Train on (x, y); unseen labels widen the head first."""
        labels = [str(v) for v in np.asarray(y).reshape(-1)]
        net = self._widen(sorted(set(labels) - set(self.classes)))
        xt = images.prepare(x, self.cfg.image_shape, self.device)
        index = {c: i for i, c in enumerate(self.classes)}
        yt = torch.tensor([index[c] for c in labels], device=self.device)
        opt = torch.optim.Adam(net.parameters(), lr=self.cfg.lr, betas=(self.cfg.beta1, 0.999))
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=self.rng, device=self.device)
            for idx in perm.split(self.cfg.batch_size):
                loss = F.cross_entropy(net.logits(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> list[str]:
        net = self._fitted()
        xt = images.prepare(x, self.cfg.image_shape, self.device)
        idx = torch.cat([net.logits(c).argmax(1) for c in xt.split(512)]).cpu().numpy()
        return [self.classes[i] for i in idx]

    @torch.no_grad()
    def scores(self, x: np.ndarray) -> np.ndarray:
        """Softmax scores N x K, columns in the order of `classes`."""
        net = self._fitted()
        xt = images.prepare(x, self.cfg.image_shape, self.device)
        return torch.cat([net.logits(c).float().softmax(1) for c in xt.split(512)]).cpu().numpy()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self._fitted().parameters())
