"""The expansion rule (METHOD.md §5) as pure functions: how much the generator grows after a task.

After each task the generator adds as much capacity as the task newly reserved, so the free capacity
returns to its level before the task. Counts are per layer, in the mask's unit: weights for DGMw,
units (output channels) for DGMa. The answer is output channels to add per layer; `Generator.expand`
applies it to the weights. Spare capacity (a forgotten task's released mask; with `carry_surplus`,
what whole DGMw channels added beyond an earlier claim) pays a claim before anything grows.
"""

from __future__ import annotations

import math

import torch


def mask_usage(task_masks: list[torch.Tensor]) -> list[float]:
    """Per layer: the fraction of the layer's mask that a task switched on."""
    return [float(m.float().mean()) for m in task_masks]


def newly_reserved(before: list[torch.Tensor], after: list[torch.Tensor]) -> list[int]:
    """delta_l = |M_l after| - |M_l before|: ones a task added to each layer's cumulative (bool) mask."""
    return [int(a.sum()) - int(b.sum()) for b, a in zip(before, after, strict=True)]


def claim_spare(newly: list[int], spare: list[int]) -> tuple[list[int], list[int]]:
    """Pay a task's newly reserved capacity from spare capacity before growing.

    Spare: free capacity above the level the rule keeps, from forgotten tasks that released their mask
    or (with `carry_surplus`) from whole channels that outgrew an earlier claim.
    Returns (still to grow for, spare capacity left), per layer.
    """
    reused = [min(n, r) for n, r in zip(newly, spare, strict=True)]
    to_grow = [n - u for n, u in zip(newly, reused, strict=True)]
    left = [r - u for r, u in zip(spare, reused, strict=True)]
    return to_grow, left


def surplus(grown: list[int], to_grow: list[int]) -> list[int]:
    """Per layer: capacity the expansion added beyond what it had to restore (DGMw rounds weights up to
    whole output channels, and a layer whose input grew gains weights it did not claim). DGMa: 0."""
    return [g - t for g, t in zip(grown, to_grow, strict=True)]


def channels_to_add(variant: str, newly: list[int], nz: int, widths: list[int], kernel: int) -> list[int]:
    """Output channels to add per layer so free capacity returns to its level before the task.

    variant: "dgma" (`newly` counts units) or "dgmw" (`newly` counts weights); nz: the first layer's
    input channels (the latent); widths: output channels per layer now; kernel: the square kernel size.
    """
    if variant == "dgma":
        return dgma_channels(newly)
    return dgmw_channels(newly, nz, widths, kernel)


def dgma_channels(newly_units: list[int]) -> list[int]:
    """DGMa: one channel per newly reserved unit, so the free units are restored exactly."""
    return list(newly_units)


def dgmw_channels(newly_weights: list[int], nz: int, widths: list[int], kernel: int) -> list[int]:
    """DGMw: weights to whole output channels, counting the weights the previous layer's growth gave.

    Layer 1: ceil(delta_1 / (nz k k)). Layer l >= 2: the input growth dc_{l-1} already adds
    A_l = dc_{l-1} C_out,l k k weights; then max(0, ceil((delta_l - A_l) / (C_in,l,new k k))).
    """
    k2 = kernel * kernel
    added: list[int] = []
    cin = nz
    for l, delta in enumerate(newly_weights):
        cout = widths[l]
        from_inputs = (added[l - 1] * cout * k2) if l else 0  # weights the input growth already gave
        cin_new = cin + (added[l - 1] if l else 0)
        added.append(max(0, math.ceil((delta - from_inputs) / (cin_new * k2))))
        cin = cout
    return added
