"""Generator (the memory, masked per task) and discriminator (critic + the classifier head).

Shapes follow METHOD.md §2.3 at an internal 32x32 resolution: user images are resized to 32x32 on the
way in and back on the way out. Both mask variants share one generator: `variant` only decides whether
a task's mask multiplies weights (DGMw) or unit activations (DGMa).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from dgm import expansion, masks
from dgm.config import LearnerConfig
from dgm.errors import CheckpointError

INTERNAL_SIZE = 32
KERNEL = 4
# (stride, padding) of the masked transposed convs conv1..conv3: 1 -> 4 -> 8 -> 16; the head goes to 32.
LAYER_GEOMETRY = ((1, 0), (2, 1), (2, 1))
HEAD_GEOMETRY = (2, 1)
LAYER_NAMES = ("conv1", "conv2", "conv3")


def _xavier_relu(shape: tuple[int, ...]) -> torch.Tensor:
    w = torch.empty(shape)
    nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("relu"))
    return w


def _task_bn(widths: list[int]) -> nn.ModuleList:
    bns = [nn.BatchNorm2d(c) for c in widths]
    for bn in bns:
        nn.init.normal_(bn.weight, 1.0, 0.02)
        nn.init.zeros_(bn.bias)
    return nn.ModuleList(bns)


def load_strict(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the tensors named `prefix` + parameter name into `module`; all of them, nothing else."""
    own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint tensors do not match the architecture in its metadata: {exc}"
        ) from exc


class Generator(nn.Module):
    """Conditional DCGAN generator whose three hidden layers are shared across tasks under binary masks.

    Per task t: a BatchNorm set (bns[t]) and the layer widths it saw (task_caps[t]); per class: an
    unmasked output head. Finished tasks keep a binary mask each (task_masks[t][l]) and only ever read
    the weight block W[:cap_in(t), :cap_out(t)], so growth is invisible to them.
    """

    def __init__(self, cfg: LearnerConfig, widths: list[int] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.nz, self.nc = cfg.nz, cfg.image_shape[0]
        self.initial_widths = [4 * cfg.ngf, 2 * cfg.ngf, cfg.ngf]
        self.widths = list(widths or self.initial_widths)
        ins = [self.nz, *self.widths[:-1]]
        # ConvTranspose2d weight layout: (in, out, k, k)
        self.weights = nn.ParameterList(
            nn.Parameter(_xavier_relu((i, o, KERNEL, KERNEL))) for i, o in zip(ins, self.widths, strict=True)
        )
        self.bns = nn.ModuleList()
        self.heads = nn.ParameterList()
        self.embedding = nn.ParameterList()  # the task being trained: one real-valued mask per layer
        self.task_caps: list[list[int]] = []
        self.class_task: list[int] = []
        # per class: the slot of the latent's one-hot that codes it. It is fixed for the class's life, so
        # forgetting another class (which renumbers the class ids) leaves its samples bit-identical.
        self.class_codes: list[int] = []
        self.task_masks = []  # bool, per finished task and layer (on the CPU: checkpoints, unions)
        self.cumulative = [torch.zeros(self.mask_shape(l), dtype=torch.bool) for l in range(3)]
        # per layer: free weights (DGMw) or units (DGMa) above the level the expansion rule keeps: what a
        # forgotten task gave back and (carry_surplus) what whole channels added beyond a claim. Later
        # tasks' claims draw on it before the network grows (see end_task)
        self.spare = [0, 0, 0]
        self.masking = True  # False only to time the same network without masks (benchmarks)

    # ----- state: what a checkpoint holds ----------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """A finished generator as checkpoint tensors and JSON-able metadata (`from_state` rebuilds it).

        Tensors: `gen.<name>` for every parameter and buffer (weights, per-task BN with running stats,
        heads), the binary masks `mask.<task>.<layer>` and `cumulative.<layer>` as uint8. Metadata: the
        widths now and per task, and the class bookkeeping. CheckpointError while a task is open: its
        mask is still real-valued.
        """
        if self.training_task is not None:
            raise CheckpointError("a task is still being learned; save after learn_task returns")
        tensors = {f"gen.{k}": v for k, v in self.state_dict().items()}
        for t, task_masks in enumerate(self.task_masks):
            tensors.update({f"mask.{t}.{l}": m.to(torch.uint8) for l, m in enumerate(task_masks)})
        tensors.update({f"cumulative.{l}": c.to(torch.uint8) for l, c in enumerate(self.cumulative)})
        meta = {
            "widths": self.widths,
            "task_caps": self.task_caps,
            "class_task": self.class_task,
            "class_codes": self.class_codes,
            # named when only forgetting made capacity spare; kept so either code reads the other's files
            "released": self.spare,
        }
        return tensors, meta

    @classmethod
    def from_state(
        cls, cfg: LearnerConfig, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> Generator:
        """The generator `state()` described, in eval mode on the CPU; other keys in `tensors` are ignored."""
        gen = cls(cfg, widths=meta["widths"])
        gen.task_caps = [list(c) for c in meta["task_caps"]]
        gen.class_task = list(meta["class_task"])
        # checkpoints from before forgetting existed: class i is coded by slot i, nothing was released
        gen.class_codes = list(meta.get("class_codes", range(len(gen.class_task))))
        gen.spare = list(meta.get("released", [0, 0, 0]))
        for caps in gen.task_caps:
            gen.bns.append(_task_bn(caps))
        for t in gen.class_task:
            gen.heads.append(nn.Parameter(torch.empty(gen.task_caps[t][-1], gen.nc, KERNEL, KERNEL)))
        load_strict(gen, tensors, "gen.")
        gen.task_masks = [[tensors[f"mask.{t}.{l}"].bool() for l in range(3)] for t in range(gen.n_tasks)]
        gen.cumulative = [tensors[f"cumulative.{l}"].bool() for l in range(3)]
        return gen.eval()

    # ----- bookkeeping -------------------------------------------------------------------------
    def mask_shape(self, layer: int) -> tuple[int, ...]:
        if self.cfg.variant == "dgmw":
            return tuple(self.weights[layer].shape)
        return (self.widths[layer],)

    @property
    def n_tasks(self) -> int:
        return len(self.task_caps)

    @property
    def training_task(self) -> int | None:
        """Index of the task whose mask is still real-valued, if one is being learned."""
        return self.n_tasks - 1 if len(self.embedding) else None

    def task_class_ids(self, task: int) -> list[int]:
        return [c for c, t in enumerate(self.class_task) if t == task]

    def begin_task(self, n_new_classes: int) -> int:
        """Open task t: its BN set and heads at today's widths, and a fresh mask embedding (zeros)."""
        device = self.weights[0].device
        self.task_caps.append(list(self.widths))
        self.bns.append(_task_bn(self.widths).to(device))
        for _ in range(n_new_classes):
            head = _xavier_relu((self.widths[-1], self.nc, KERNEL, KERNEL)).to(device)
            self.heads.append(nn.Parameter(head))
            self.class_task.append(self.n_tasks - 1)
            self.class_codes.append(min(set(range(self.cfg.max_classes)) - set(self.class_codes)))
        for l in range(3):
            self.embedding.append(nn.Parameter(self._embedding_start(l).to(device)))
        return self.n_tasks - 1

    def _embedding_start(self, layer: int) -> torch.Tensor:
        """+reuse_start on reserved entries, -reuse_start on free ones; all 0 for the first task."""
        reserved = self.cumulative[layer]
        if not reserved.any():
            return torch.zeros(self.mask_shape(layer))
        return (reserved.float() * 2 - 1) * self.cfg.reuse_start

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        heads = [self.heads[c] for c in self.task_class_ids(task)]
        return [*self.weights, *self.embedding, *self.bns[task].parameters(), *heads]

    # ----- forward -----------------------------------------------------------------------------
    def latent(self, noise: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """z: (N, nz) noise whose first max_classes entries are overwritten by the class's one-hot code."""
        z = noise.clone()
        codes = torch.as_tensor(self.class_codes, device=classes.device)[classes]
        z[:, : self.cfg.max_classes] = F.one_hot(codes, self.cfg.max_classes).to(z.dtype)
        return z

    def task_masks_for(self, task: int, s: float | None) -> list[torch.Tensor]:
        if task == self.training_task:
            if s is None:
                return [b.float() for b in self.open_binary_masks()]
            return self.open_soft_masks(s)
        # a frozen mask never changes: made float and moved to the weights' device once, not per batch
        key = (task, self.weights[0].device)
        if (frozen := self._served_masks.get(key)) is None:
            frozen = self._served_masks[key] = [m.to(key[1]).float() for m in self.task_masks[task]]
        return frozen

    @property
    def task_masks(self) -> list[list[torch.Tensor]]:
        return self._task_masks

    @task_masks.setter
    def task_masks(self, value: list[list[torch.Tensor]]) -> None:
        """Replacing the list (forget renumbers tasks, a checkpoint loads them) drops the served copies."""
        self._task_masks = value
        self._served_masks: dict[tuple[int, torch.device], list[torch.Tensor]] = {}

    def forward(self, noise: torch.Tensor, classes: torch.Tensor, task: int, s: float | None = None):
        """noise (N, nz), classes (N,) global class ids all of `task` -> images (N, nc, 32, 32) in [-1, 1].

        s: the anneal scale while training the current task; None means the final binary mask.
        """
        caps = self.task_caps[task]
        task_masks = self.task_masks_for(task, s)
        x = self.latent(noise, classes)[:, :, None, None]
        bns = cast(nn.ModuleList, self.bns[task])  # one BatchNorm2d per layer
        cin = self.nz
        for l, (stride, pad) in enumerate(LAYER_GEOMETRY):
            w = self.weights[l][:cin, : caps[l]]
            if self.masking and self.cfg.variant == "dgmw":
                w = w * task_masks[l]
            x = F.relu(bns[l](F.conv_transpose2d(x, w, stride=stride, padding=pad)))
            if self.masking and self.cfg.variant == "dgma":
                # After BN and ReLU (as HAT), so a masked unit is exactly 0 for this task.
                x = x * task_masks[l].view(1, -1, 1, 1)
            cin = caps[l]
        return self._heads(x, classes, task)

    def _heads(self, x: torch.Tensor, classes: torch.Tensor, task: int) -> torch.Tensor:
        """Every head of the task at once (k heads -> k*nc channels), then each sample keeps its own."""
        ids = self.task_class_ids(task)
        w = torch.cat([self.heads[c] for c in ids], dim=1)  # (cap3, k*nc, 4, 4)
        out = F.conv_transpose2d(x, w, stride=HEAD_GEOMETRY[0], padding=HEAD_GEOMETRY[1])
        out = out.view(x.shape[0], len(ids), self.nc, INTERNAL_SIZE, INTERNAL_SIZE)
        local = torch.as_tensor([ids.index(int(c)) for c in classes.tolist()], device=x.device)
        return torch.tanh(out[torch.arange(x.shape[0], device=x.device), local])

    def open_soft_masks(self, s: float) -> list[torch.Tensor]:
        """The task being trained: sigmoid(s e) per layer, zero on free entries beyond its claim cap."""
        soft = [masks.soft_mask(e, s) for e in self.embedding]
        return [m * k for m, k in zip(soft, self.claimable(), strict=True)] if self.capped else soft

    def open_binary_masks(self) -> list[torch.Tensor]:
        """The task being trained, binarised (e >= 0), within its claim cap."""
        binary = [masks.binarise(e) for e in self.embedding]
        return [b & k for b, k in zip(binary, self.claimable(), strict=True)] if self.capped else binary

    @property
    def capped(self) -> bool:
        """Whether the open task's claim on free capacity is capped: `claim_cap` > 0 and an earlier task
        reserved something (the first task claims freely; it has nothing to reuse)."""
        return self.cfg.claim_cap > 0 and any(bool(c.any()) for c in self.cumulative)

    @torch.no_grad()
    def claimable(self) -> list[torch.Tensor]:
        """Per layer, bool: reserved entries (reuse is free) and the open task's top-k free entries by
        mask embedding, k = claim_cap x the layer's mask size at the start (masks.claimable)."""
        out = []
        for l, e in enumerate(self.embedding):  # cumulative stays on the CPU: no device sync per step
            out.append(masks.claimable(e.detach(), self.cumulative[l], self.claim_budget(l)))
        return out

    def claim_budget(self, layer: int) -> int:
        """Free entries a task after the first may claim in `layer`: claim_cap x its first mask size."""
        units = self.initial_widths[layer]
        if self.cfg.variant == "dgmw":
            units *= (self.nz if layer == 0 else self.initial_widths[layer - 1]) * KERNEL * KERNEL
        return max(1, int(self.cfg.claim_cap * units))

    def sparsity_loss(self, s: float) -> torch.Tensor:
        if not self.masking:
            return self.weights[0].new_zeros(())
        soft = self.open_soft_masks(s)
        return masks.sparsity(soft, [c.to(e.device) for c, e in zip(self.cumulative, soft, strict=True)])

    # ----- protecting earlier tasks -------------------------------------------------------------
    def gradient_multipliers(self) -> list[torch.Tensor]:
        """Per weight: 0 where an earlier task reserved it, 1 where it is free (METHOD.md §3.2-3.3).

        With `cfg.own_code_rows`, conv1's rows fed by the open task's own latent codes are 1 as well:
        no finished task's latent has a 1 in those slots, so none reads them.
        """
        if self.cfg.variant == "dgmw":
            out = [(~c).float() for c in self.cumulative]
        else:
            out = self._unit_multipliers()
        if self.cfg.own_code_rows and (task := self.training_task) is not None:
            out[0][[self.class_codes[c] for c in self.task_class_ids(task)]] = 1.0
        return out

    def _unit_multipliers(self) -> list[torch.Tensor]:
        """DGMa: a weight is frozen where its output unit and its input unit are both reserved."""
        out = []
        for l, cum in enumerate(self.cumulative):
            o = cum.float().view(1, -1, 1, 1)
            if l == 0:  # input is the latent: nothing upstream to protect
                out.append(1 - o.expand_as(self.weights[0]))
            else:
                prev = self.cumulative[l - 1].float().view(-1, 1, 1, 1)
                out.append(1 - torch.minimum(prev, o).expand_as(self.weights[l]))
        return [m.contiguous() for m in out]

    @torch.no_grad()
    def block_gradients(self, multipliers: list[torch.Tensor]) -> None:
        if not self.masking:
            return
        for w, m in zip(self.weights, multipliers, strict=True):
            if w.grad is not None:
                w.grad.mul_(m)

    def compensate(self, s: float, s_e: float) -> None:
        if not self.masking:
            return
        for e in self.embedding:
            masks.compensate_embedding_grad(e, s, s_e)

    # ----- end of task: binarise, union, expand --------------------------------------------------
    @torch.no_grad()
    def end_task(self) -> dict[str, list[int] | list[float]]:
        """Freeze the task's binary mask, union it into the cumulative mask, grow the network."""
        binary = [b.cpu() for b in self.open_binary_masks()]
        before = self.cumulative
        self.task_masks.append(binary)
        self.cumulative = [c | b for c, b in zip(self.cumulative, binary, strict=True)]
        newly = expansion.newly_reserved(before, self.cumulative)
        self.embedding = nn.ParameterList()
        # spare capacity (a forgotten task's, rounding's) pays for this task's claim first; only the rest
        # is grown
        to_grow, self.spare = expansion.claim_spare(newly, self.spare)
        maskable = [c.numel() for c in self.cumulative]
        added = self.expand(to_grow)
        if self.cfg.carry_surplus:
            grown = [c.numel() - m for c, m in zip(self.cumulative, maskable, strict=True)]
            self.spare = [s + x for s, x in zip(self.spare, expansion.surplus(grown, to_grow), strict=True)]
        return {"newly_reserved": newly, "units_added": added, "mask_usage": expansion.mask_usage(binary)}

    def expansion_for(self, newly_reserved: list[int]) -> list[int]:
        """Channels to add per layer so free capacity returns to its level before the task (§5)."""
        return expansion.channels_to_add(self.cfg.variant, newly_reserved, self.nz, self.widths, KERNEL)

    @torch.no_grad()
    def expand(self, newly_reserved: list[int]) -> list[int]:
        added = self.expansion_for(newly_reserved)
        ins = [self.nz, *self.widths[:-1]]
        for l in range(3):
            grow_in = added[l - 1] if l else 0
            old = self.weights[l]
            shape = (ins[l] + grow_in, self.widths[l] + added[l], KERNEL, KERNEL)
            if self.cfg.variant == "dgmw":
                new = torch.empty(shape).normal_(0.0, 0.02)
            else:
                new = _xavier_relu(shape)
            new = new.to(old.device)
            new[: old.shape[0], : old.shape[1]] = old
            self.weights[l] = nn.Parameter(new)
        self.widths = [w + a for w, a in zip(self.widths, added, strict=True)]
        self.cumulative = [_pad_to(c, self.mask_shape(l)) for l, c in enumerate(self.cumulative)]
        return added

    # ----- forgetting -------------------------------------------------------------------------
    @torch.no_grad()
    def forget_classes(self, class_ids: list[int]) -> dict[str, list[int]]:
        """Remove the heads of `class_ids`; a task left with no class is removed and its mask released.

        Class ids above a removed one shift down (the heads list stays indexed by class id) and task
        indices above a removed task shift down; each class keeps its latent code. Nothing any remaining
        task reads changes (its weights block, mask, BN set and heads), so its samples stay bit-identical.
        Returns the task indices removed (before the shift) and the units released per layer.
        """
        if self.training_task is not None:
            raise RuntimeError("a task is being learned; forget after it ends")
        drop = set(class_ids)
        keep = [c for c in range(len(self.class_task)) if c not in drop]
        dead = sorted({self.class_task[c] for c in drop} - {self.class_task[c] for c in keep})
        alive = [t for t in range(self.n_tasks) if t not in dead]
        renumber = {t: i for i, t in enumerate(alive)}
        self.heads = nn.ParameterList([self.heads[c] for c in keep])
        self.class_codes = [self.class_codes[c] for c in keep]
        self.class_task = [renumber[self.class_task[c]] for c in keep]
        self.bns = nn.ModuleList([self.bns[t] for t in alive])
        self.task_caps = [self.task_caps[t] for t in alive]
        self.task_masks = [self.task_masks[t] for t in alive]
        before = [int(c.sum()) for c in self.cumulative]
        self.cumulative = [
            _union([_pad_to(m[l], self.mask_shape(l)) for m in self.task_masks], self.mask_shape(l))
            for l in range(3)
        ]
        freed = [b - int(c.sum()) for b, c in zip(before, self.cumulative, strict=True)]
        self.spare = [r + f for r, f in zip(self.spare, freed, strict=True)]
        return {"tasks_removed": dead, "released": freed}

    # ----- reporting -------------------------------------------------------------------------
    def capacity(self) -> dict[str, dict[str, int]]:
        out = {}
        for l, name in enumerate(LAYER_NAMES):
            total = self.cumulative[l].numel()
            reserved = int(self.cumulative[l].sum())
            out[name] = {
                "channels": self.widths[l],
                "maskable": total,
                "reserved": reserved,
                "free": total - reserved,
            }
        return out


def _union(masks_: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.bool)
    for m in masks_:
        out |= m
    return out


def _pad_to(mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.bool)
    out[tuple(slice(0, n) for n in mask.shape)] = mask
    return out


class Discriminator(nn.Module):
    """A conv trunk with two linear heads (METHOD.md §2.3): the WGAN-GP critic and a class head.

    `projection=True` makes the critic conditional (Miyato & Koyama's projection discriminator): the
    score of image x as class y is critic(h) + <embed(y), h> on the trunk's features h. The generator
    then only wins by drawing each label's own class, so the heads of a multi-class task cannot swap
    (the unconditional critic of the official code accepts any real-looking image for any label).
    The classifier that serves is an instance without projection, trained by `dgm.consolidate`.
    """

    def __init__(
        self, nc: int, ndf: int, n_classes: int, projection: bool = False, batch_std: bool = False
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(nc, ndf, 5, 2, 2, bias=False),  # 32 -> 16
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, 2 * ndf, 5, 2, 2, bias=False),  # 16 -> 8
            nn.BatchNorm2d(2 * ndf),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ndf, 4 * ndf, 5, 2, 2, bias=False),  # 8 -> 4
            nn.BatchNorm2d(4 * ndf),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        feat = 4 * ndf * 4 * 4
        self.critic = nn.Linear(feat, 1)
        self.classify = nn.Linear(feat, n_classes)
        # the class embeddings as one bias-free linear map: <embed(y), h> = (h @ E^T)[y]. An nn.Embedding
        # computes the same but its double backward (gradient penalty) is ~9x slower on CPU.
        self.embed = nn.Linear(feat, n_classes, bias=False) if projection else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        # batch_std: the critic also scores how varied each class's images in the batch are (a
        # minibatch-deviation feature, as ProGAN's), so a generator that draws one kind of each class
        # loses to real batches; it judges, it never serves
        self.spread = nn.Parameter(torch.zeros(())) if batch_std else None
        for m in self.trunk:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def state(self) -> dict[str, torch.Tensor]:
        """The serving classifier's tensors as `disc.<name>`: trunk and class head. A projection critic's
        class embedding and the batch-deviation weight judge, they never serve, so they are left out."""
        judging = ("embed.", "spread")
        return {f"disc.{k}": v for k, v in self.state_dict().items() if not k.startswith(judging)}

    @classmethod
    def for_task(cls, cfg: LearnerConfig, nc: int, n_classes: int) -> Discriminator:
        """A task's fresh critic as `cfg` asks for it (projection, batch deviation)."""
        return cls(nc, cfg.ndf, n_classes, projection=cfg.projection, batch_std=cfg.critic_batch_std)

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Discriminator:
        """The serving classifier (no projection, eval mode) from `disc.*` tensors and the metadata's
        `image_shape`, `ndf` and `classes`; other keys in `tensors` are ignored."""
        disc = cls(meta["image_shape"][0], meta["ndf"], len(meta["classes"]))
        load_strict(disc, tensors, "disc.")
        return disc.eval()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.trunk(x))

    def score(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Critic score (N,); with projection, y (N,) is the class each image is judged as."""
        h = self.trunk(x)
        out = self.critic(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a projection critic scores each image as a class: pass y")
            out = out + self.embed(h).gather(1, y[:, None]).squeeze(1)
        if self.spread is not None:
            out = out + self.spread * class_spread(h, y)
        return out


def class_spread(h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The batch's within-class deviation: each feature's standard deviation over the images of one class,
    averaged over features, then over the classes with two or more images (y None: one class)."""
    groups = [h] if y is None else [h[y == c] for c in torch.unique(y)]
    spreads = [g.std(0).mean() for g in groups if len(g) > 1]
    return torch.stack(spreads).mean() if spreads else h.new_zeros(())
