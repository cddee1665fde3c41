"""Safetensors checkpoints: every tensor in the file, the architecture in its metadata, never pickle.

Two kinds, both self-describing:
- `learner`: generator weights, per-task BN (with running stats), heads, binary task masks and the
  cumulative mask, plus the discriminator; enough to continue learning.
- `classifier`: only the discriminator trunk and class head, for fast serving (dgm.inference).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from dgm.config import LearnerConfig
from dgm.errors import CheckpointError
from dgm.networks import Discriminator, Generator, _task_bn

if TYPE_CHECKING:
    from dgm.learner import Learner

FORMAT = "dgm-serve"
FORMAT_VERSION = "1"


def _write(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str | Path) -> None:
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION}
    metadata.update({k: json.dumps(v) for k, v in meta.items()})
    save_file(tensors, str(path), metadata=metadata)


def read(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and decoded metadata of a checkpoint of `kind`; CheckpointError if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dgm-serve checkpoint (metadata format={raw.get('format')!r})")
    meta = {k: json.loads(v) for k, v in raw.items() if k not in ("format", "format_version")}
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path} is a {meta.get('kind')!r} checkpoint; expected {kind!r}")
    return tensors, meta


def _disc_meta(learner: Learner) -> dict[str, Any]:
    return {
        "classes": learner.classes,
        "image_shape": list(learner.config.image_shape),
        "ndf": learner.config.ndf,
    }


def save_learner(learner: Learner, path: str | Path) -> None:
    gen = learner.generator
    if gen.training_task is not None:
        raise CheckpointError("a task is still being learned; save after learn_task returns")
    tensors = {f"gen.{k}": v for k, v in gen.state_dict().items()}
    for t, task_masks in enumerate(gen.task_masks):
        tensors.update({f"mask.{t}.{l}": m.to(torch.uint8) for l, m in enumerate(task_masks)})
    tensors.update({f"cumulative.{l}": c.to(torch.uint8) for l, c in enumerate(gen.cumulative)})
    if learner.classifier is not None:
        tensors.update({f"disc.{k}": v for k, v in _classifier_state(learner).items()})
    state = {
        "widths": gen.widths,
        "task_caps": gen.task_caps,
        "class_task": gen.class_task,
        "class_codes": gen.class_codes,
        "released": gen.released,
        "seed": learner.seed,
        "history": learner.history,
        **_disc_meta(learner),
    }
    _write(tensors, {"kind": "learner", "config": learner.config.to_dict(), "state": state}, path)


def load_learner(path: str | Path, device: str | torch.device | None = None) -> Learner:
    from dgm.learner import Learner, resolve_device

    tensors, meta = read(path, "learner")
    cfg = LearnerConfig.from_dict(
        {**meta["config"], "extra": tuple(tuple(kv) for kv in meta["config"]["extra"])}
    )
    state = meta["state"]
    learner = Learner(cfg, seed=state["seed"], device="cpu")
    gen = Generator(cfg, widths=state["widths"])
    gen.task_caps = [list(c) for c in state["task_caps"]]
    gen.class_task = list(state["class_task"])
    # checkpoints from before forgetting existed: class i is coded by slot i, nothing was released
    gen.class_codes = list(state.get("class_codes", range(len(gen.class_task))))
    gen.released = list(state.get("released", [0, 0, 0]))
    for caps in gen.task_caps:
        gen.bns.append(_task_bn(caps))
    for t in gen.class_task:
        gen.heads.append(torch.nn.Parameter(torch.empty(gen.task_caps[t][-1], gen.nc, 4, 4)))
    _load_state(gen, tensors, "gen.")
    gen.task_masks = [[tensors[f"mask.{t}.{l}"].bool() for l in range(3)] for t in range(len(gen.task_caps))]
    gen.cumulative = [tensors[f"cumulative.{l}"].bool() for l in range(3)]
    learner.generator = gen.eval()
    learner.classes = list(state["classes"])
    learner.history = list(state["history"])
    if learner.classes:
        learner.classifier = _build_disc(tensors, state).eval()
    learner.device = resolve_device(device)
    learner.generator.to(learner.device)
    if learner.classifier is not None:
        learner.classifier.to(learner.device)
    return learner


def _load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint tensors do not match the architecture in its metadata: {exc}"
        ) from exc


def _build_disc(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Discriminator:
    disc = Discriminator(meta["image_shape"][0], meta["ndf"], len(meta["classes"]))
    _load_state(disc, tensors, "disc.")
    return disc


def save_classifier(learner: Learner, path: str | Path) -> None:
    if learner.classifier is None:
        raise CheckpointError("nothing to save: the learner has not learned any task yet")
    tensors = {f"disc.{k}": v for k, v in _classifier_state(learner).items()}
    meta = {"kind": "classifier", "state": _disc_meta(learner), "config": learner.config.to_dict()}
    _write(tensors, meta, path)


def _classifier_state(learner: Learner) -> dict[str, torch.Tensor]:
    """The serving classifier's tensors; a projection critic's class embedding judges, it never serves."""
    return {k: v for k, v in learner.classifier.state_dict().items() if not k.startswith("embed.")}


def load_classifier_parts(path: str | Path) -> tuple[Discriminator, dict[str, Any]]:
    tensors, meta = read(path, "classifier")
    return _build_disc(tensors, meta["state"]).eval(), meta["state"]
