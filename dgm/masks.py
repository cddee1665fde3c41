"""The mask mechanics shared by DGMw and DGMa (METHOD.md §3): annealed scale, compensation, sparsity.

A *soft* mask is sigmoid(s * e) for the task being trained; after the task it is binarised at s_max
(threshold 0.5, i.e. e >= 0) and unioned into the cumulative mask, which blocks gradients afterwards.
"""

from __future__ import annotations

from typing import cast

import torch

COSH_CLIP = 50.0  # METHOD.md §8.1


def anneal_scale(s_max: float, epoch: int, epochs: int, frac: float) -> tuple[float, float]:
    """(s, s_e) at position `frac` in [0, 1) of `epoch` (METHOD.md §10: monotone schedule).

    s_e grows linearly over epochs, using (epoch + 1) so epoch 0 does not invert (the official quirk);
    within an epoch s ramps from 1/s_e to s_e as in HAT. The last epoch ends at s_max.
    """
    s_e = (s_max - 1.0 / s_max) * (epoch + 1) / epochs + 1.0 / s_max
    s = (s_e - 1.0 / s_e) * frac + 1.0 / s_e
    return s, s_e


def soft_mask(embedding: torch.Tensor, s: float) -> torch.Tensor:
    return torch.sigmoid(s * embedding)


def binarise(embedding: torch.Tensor) -> torch.Tensor:
    """The task's final mask: sigmoid(s_max * e) >= 0.5, which is e >= 0 for any s_max > 0."""
    return embedding.detach() >= 0


@torch.no_grad()
def compensate_embedding_grad(embedding: torch.Tensor, s: float, s_e: float) -> None:
    """HAT gradient compensation: grad *= (s_e/s) * (cosh(clip(s e)) + 1) / (cosh(e) + 1)."""
    if embedding.grad is None:
        return
    e = embedding.detach()
    num = torch.cosh(torch.clamp(s * e, -COSH_CLIP, COSH_CLIP)) + 1
    den = torch.cosh(e) + 1
    embedding.grad.mul_((s_e / s) * num / den)


def sparsity(masks: list[torch.Tensor], reserved: list[torch.Tensor]) -> torch.Tensor:
    """R = sum m (1 - M_<t) / sum (1 - M_<t): only claiming free weights/units costs (METHOD.md §3.3)."""
    num = sum((m * (~r).to(m.dtype)).sum() for m, r in zip(masks, reserved, strict=True))
    den = sum((~r).sum() for r in reserved)
    return cast(torch.Tensor, num / max(int(den), 1))  # num is 0 only for no layers at all


def claimable(embedding: torch.Tensor, reserved: torch.Tensor, k: int) -> torch.Tensor:
    """Bool, embedding's shape: every reserved entry, and the k free entries with the largest embedding.

    `reserved` may live on the CPU (counting its free entries then needs no device sync); the answer
    is on the embedding's device.

    The claim cap (LearnerConfig.claim_cap): a later task may reuse any reserved unit or weight, but claim
    at most k free ones, so the expansion after it (which restores what it claimed) is at most k a layer.
    Entries beyond the k get mask 0 and no gradient, so the task learns within the budget it will keep.
    """
    if int((~reserved).sum()) <= k:
        return torch.ones_like(reserved)
    reserved = reserved.to(embedding.device, non_blocking=True)
    scores = embedding.masked_fill(reserved, -torch.inf).flatten()
    keep = torch.zeros(scores.numel(), dtype=torch.bool, device=embedding.device)
    keep[scores.topk(k).indices] = True
    return reserved | keep.view_as(reserved)
