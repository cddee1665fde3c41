"""Safetensors checkpoints: every tensor in the file, the architecture in its metadata, never pickle.

This module only reads and writes files; the networks name their own tensors and rebuild themselves
(`Generator.state`/`from_state`, `Discriminator.state`/`from_state`), and the learner puts the two
together (`Learner.save`/`load`). Two kinds, both self-describing:
- `learner`: generator weights (`gen.*`), per-task BN (with running stats), heads, binary task masks
  (`mask.<task>.<layer>`) and the cumulative mask (`cumulative.<layer>`), plus the serving classifier
  (`disc.*`); enough to continue learning. Metadata: `kind`, `config` and `state`.
- `classifier`: only the discriminator trunk and class head (`disc.*`), for fast serving (dgm.inference).
Every metadata value but `format` and `format_version` is stored as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from dgm.errors import CheckpointError

FORMAT = "dgm-serve"
FORMAT_VERSION = "1"


def write(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str | Path) -> None:
    """Write `tensors` (copied to the CPU first) and `meta` (each value as JSON) to a checkpoint file."""
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
