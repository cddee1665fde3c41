"""The public entry point: a continual classifier that learns tasks of new classes one after another."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgm import checkpoint, fidelity, images
from dgm.config import LearnerConfig
from dgm.consolidate import consolidate
from dgm.errors import CheckpointError, DGMInputError
from dgm.networks import LAYER_NAMES, Discriminator, Generator
from dgm.shared import MAX_LABEL_CHARS, bad_labels
from dgm.train import ProgressFn, TaskTrainer, generate


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TaskReport:
    """What one task did to the learner: the figures a model version publishes."""

    task_index: int
    classes: list[str]
    samples: int
    seconds: float
    parameters: int
    widths: dict[str, int]
    mask_usage: dict[str, float]  # fraction of the layer's mask this task switched on
    reserved: dict[str, int]  # weights (DGMw) or units (DGMa) reserved by all tasks so far
    newly_reserved: dict[str, int]
    units_added: dict[str, int]  # channels added by expansion after this task
    free: dict[str, int]  # free weights/units after expansion
    losses: dict[str, float]
    # every known class -> fraction of its generated samples that an independent classifier, trained on
    # its task's real images, assigns to it (dgm/fidelity.py); None for classes of one-class tasks learned
    # without a reference
    fidelity: dict[str, float | None]
    low_fidelity: list[str]  # this task's classes whose fidelity is below fidelity.WARN_BELOW

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ForgetReport:
    """What forgetting classes did to the learner: the figures its model version publishes."""

    removed: list[str]
    heads_removed: int
    tasks_removed: list[int]  # the learner's task indices left with no class, whose masks were released
    released: dict[str, int]  # weights (DGMw) or units (DGMa) per layer given back to later tasks
    classes: list[str]  # the classes left, in output order
    classifier: str  # "rebuilt" from replay of the remaining classes, or "pruned" (their rows kept)
    seconds: float
    parameters: int
    widths: dict[str, int]
    reserved: dict[str, int]
    free: dict[str, int]
    fidelity: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalise_labels(y: Sequence[Any], n: int) -> list[str]:
    labels = [str(v.item() if hasattr(v, "item") else v) for v in np.asarray(y).reshape(-1)]
    if len(labels) != n:
        raise DGMInputError(f"got {n} images but {len(labels)} labels; send one label per image")
    if bad := bad_labels(labels):
        raise DGMInputError(f"labels must be non-empty and at most {MAX_LABEL_CHARS} characters: {bad[:3]}")
    return labels


class Learner:
    """DGM continual learner: `learn_task` new classes, `predict` over every class seen so far."""

    def __init__(
        self, config: LearnerConfig, seed: int = 0, device: str | torch.device | None = None
    ) -> None:
        self.config = config
        self.seed = seed
        self.device = resolve_device(device)
        self.classes: list[str] = []
        self.history: list[dict[str, Any]] = []
        torch.manual_seed(seed)
        self.generator = Generator(config).to(self.device)
        self.classifier: Discriminator | None = None  # what predict() uses; see dgm/consolidate.py

    # ----- learning --------------------------------------------------------------------------
    def check_task(self, x: np.ndarray, y: Sequence[Any]) -> tuple[torch.Tensor, list[str], list[str]]:
        """Validate a task without changing anything: images tensor, labels, the new classes (sorted).

        The library's own guard. The service checks an upload before storing it (service/routes/tasks.py,
        with the learner's pending tasks and the file's name in its messages), and the worker's call lands
        here again: that second look is what refuses a class a held version already learned, when the task
        trains from that version (core/gate.py) rather than from the active one the upload was checked
        against. dgm imports nothing of the service, so the rules are written in both places.
        """
        xt = images.prepare(x, self.config.image_shape, self.device)
        labels = normalise_labels(y, len(xt))
        new = sorted(set(labels))
        known = sorted(set(new) & set(self.classes))
        if known:
            raise DGMInputError(f"classes already learned: {known[:10]}; a task must bring only new classes")
        counts = {c: labels.count(c) for c in new}
        few = {c: n for c, n in counts.items() if n < self.config.min_samples_per_class}
        if few:
            raise DGMInputError(
                f"each class needs at least {self.config.min_samples_per_class} samples; too few: {few}"
            )
        if len(self.classes) + len(new) > self.config.max_classes:
            raise DGMInputError(
                f"this learner holds at most {self.config.max_classes} classes (max_classes); it knows "
                f"{len(self.classes)} and the task adds {len(new)}"
            )
        return xt, labels, new

    def learn_task(
        self,
        x: np.ndarray,
        y: Sequence[Any],
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        reference: tuple[np.ndarray, Sequence[Any]] | None = None,
    ) -> TaskReport:
        """Learn a task of new classes. On any error or cancellation the learner is left as it was.

        reference: real labelled images of classes the learner already knows (the service's kept
        holdouts, say), checked like the task. A one-class task's fidelity judge then learns its class
        against them (dgm/fidelity.py one_class_fidelity: the fidelity is relative to the judge's rate
        on real images of the class, and needs `fidelity_min_images` of them); without them a one-class
        task reports no fidelity. A multi-class task's judge does not use them.
        """
        xt, labels, new = self.check_task(x, y)
        ref = self.check_reference(reference) if reference is not None else None
        # Subnormal floats appear in the mask and critic gradients; on CPU they made a step ~15x slower.
        torch.set_flush_denormal(True)
        snapshot = (copy.deepcopy(self.generator), copy.deepcopy(self.classifier), list(self.classes))
        try:
            return self._learn(xt, labels, new, progress, should_stop, ref)
        except BaseException:
            self.generator, self.classifier, self.classes = snapshot
            raise

    def check_reference(self, reference: tuple[np.ndarray, Sequence[Any]]) -> tuple[torch.Tensor, list[int]]:
        """A fidelity reference's images and the learner's class indices of its labels."""
        x, y = reference
        xr = images.prepare(x, self.config.image_shape, self.device)
        labels = normalise_labels(y, len(xr))
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise DGMInputError(f"reference labels the learner has not learned: {unknown[:10]}")
        return xr, [index[c] for c in labels]

    def _learn(self, xt, labels, new, progress, should_stop, ref=None) -> TaskReport:
        started = time.perf_counter()
        task = self.generator.n_tasks
        seed = self.task_seed(task)
        torch.manual_seed(seed)
        rng = torch.Generator(device=self.device).manual_seed(seed)
        cfg = self.config
        old_ids = list(range(len(self.classes)))
        self.classes = self.classes + new
        index = {c: i for i, c in enumerate(self.classes)}
        yt = torch.tensor([index[c] for c in labels], device=self.device)
        # D is re-initialised every task (reinit_D, METHOD.md §2.1): old classes live on only as replay.
        critic = Discriminator.for_task(cfg, xt.shape[1], len(self.classes))
        replay_x, replay_y = xt[:0], yt[:0]
        if cfg.trains_class_head:  # it learns old classes from a fixed replay set
            per_class = min(cfg.replay_per_class, max(labels.count(c) for c in new))
            replay_x = generate(self.generator, old_ids, per_class, rng, cfg.truncation)
            replay_y = torch.arange(len(old_ids), device=self.device).repeat_interleave(per_class)
        self.generator.begin_task(len(new))
        trainer = TaskTrainer(cfg, self.generator, critic.to(self.device), task, rng)
        self.generator.train()
        losses = trainer.run(xt, yt, replay_x, replay_y, progress, should_stop)
        self.generator.eval()
        grown = self.generator.end_task()
        if cfg.classifier == "critic_head":
            self.classifier = critic
        else:
            real = (xt, yt) if cfg.consolidate_real else None
            self.classifier = consolidate(cfg, self.generator, len(self.classes), rng, real)
        new_ids = [index[c] for c in new]
        if ref is not None and len(new_ids) == 1:  # the judge learns the class against known ones
            x_ref, y_ref = ref
            scores = [fidelity.one_class_fidelity(cfg, self.generator, xt, new_ids[0], x_ref, y_ref, seed)[0]]
        else:
            scores = fidelity.task_fidelity(cfg, self.generator, xt, yt, new_ids, seed)
        report = self._report(task, new, len(labels), time.perf_counter() - started, grown, losses, scores)
        self.history.append(report.as_dict())
        return report

    def task_seed(self, task: int) -> int:
        """The seed of task `task`'s training, classifier and fidelity judge: each task draws its own
        stream, so a task's result does not depend on what earlier tasks consumed."""
        return self.seed * 100_003 + task

    # ----- forgetting ------------------------------------------------------------------------
    def check_forget(self, labels: Sequence[str]) -> list[str]:
        """Validate a forget request without changing anything; returns the labels, deduplicated."""
        wanted = list(dict.fromkeys(str(lab) for lab in labels))
        unknown = [lab for lab in wanted if lab not in self.classes]
        if unknown:
            raise DGMInputError(f"unknown classes {unknown[:10]}; known classes: {self.classes[:20]}")
        if not wanted:
            raise DGMInputError("name at least one class to forget")
        if len(wanted) >= len(self.classes):
            raise DGMInputError(
                f"cannot forget every class the learner knows ({self.classes[:20]}); at least one must stay"
            )
        return wanted

    def forget(self, labels: Sequence[str], rebuild: bool = True) -> ForgetReport:
        """Remove classes: their generator heads go, a task left without classes gives its mask back
        (later tasks reuse it before the network grows), and the classifier is rebuilt from fresh replay
        of the remaining classes (dgm/consolidate.py). Their names leave the history too, so a saved
        checkpoint holds no trace of them. The remaining classes' samples are bit-identical.

        rebuild=False prunes instead: the current classifier minus the classes' output rows. An image
        it got right stays right, so no remaining class loses accuracy; a rebuilt classifier is a fresh
        draw from replay, whose accuracy on real images can move either way (the service keeps the
        pruned one when the rebuilt one falls behind it by more than the regression gate allows).
        On error nothing changes.
        """
        wanted = self.check_forget(labels)
        started = time.perf_counter()
        snapshot = (copy.deepcopy(self.generator), copy.deepcopy(self.classifier), list(self.classes))
        history = copy.deepcopy(self.history)
        try:
            heads = len(self.generator.heads)
            keep = [i for i, c in enumerate(self.classes) if c not in wanted]
            freed = self.generator.forget_classes([self.classes.index(lab) for lab in wanted])
            self.classes = [c for c in self.classes if c not in wanted]
            self.history = [_without(report, wanted) for report in self.history]
            # a seed of its own per forget: the number of classes dropped so far
            rng = torch.Generator(device=self.device).manual_seed(self.seed * 100_003 + 50_000 + heads)
            if rebuild:
                self.classifier = consolidate(self.config, self.generator, len(self.classes), rng)
            else:
                self.classifier = _pruned(self._require_classes(), keep)
        except BaseException:
            self.generator, self.classifier, self.classes = snapshot
            self.history = history
            raise
        cap = self.generator.capacity()
        return ForgetReport(
            removed=wanted,
            heads_removed=heads - len(self.generator.heads),
            tasks_removed=freed["tasks_removed"],
            released=dict(zip(LAYER_NAMES, freed["released"], strict=True)),
            classes=list(self.classes),
            classifier="rebuilt" if rebuild else "pruned",
            seconds=round(time.perf_counter() - started, 3),
            parameters=self.parameter_count(),
            widths={k: v["channels"] for k, v in cap.items()},
            reserved={k: v["reserved"] for k, v in cap.items()},
            free={k: v["free"] for k, v in cap.items()},
            fidelity=self.fidelity(),
        )

    def _report(self, task, new, n, seconds, grown, losses, scores) -> TaskReport:
        cap = self.generator.capacity()

        def per_layer(values):
            return dict(zip(LAYER_NAMES, values, strict=True))

        return TaskReport(
            task_index=task,
            classes=new,
            samples=n,
            seconds=round(seconds, 3),
            parameters=self.parameter_count(),
            widths={k: v["channels"] for k, v in cap.items()},
            mask_usage=per_layer([round(u, 6) for u in grown["mask_usage"]]),
            reserved={k: v["reserved"] for k, v in cap.items()},
            newly_reserved=per_layer(grown["newly_reserved"]),
            units_added=per_layer(grown["units_added"]),
            free={k: v["free"] for k, v in cap.items()},
            losses={k: round(v, 5) for k, v in losses.items()},
            fidelity={**self.fidelity(), **dict(zip(new, scores, strict=True))},
            low_fidelity=[
                c for c, f in zip(new, scores, strict=True) if f is not None and f < fidelity.WARN_BELOW
            ],
        )

    def fidelity(self) -> dict[str, float | None]:
        """Every known class's memory fidelity, from the task that learned it (see dgm/fidelity.py)."""
        out: dict[str, float | None] = {}
        for report in self.history:
            out.update(report.get("fidelity") or {c: None for c in report["classes"]})
        return out

    # ----- using what was learned -----------------------------------------------------------
    def _require_classes(self) -> Discriminator:
        if self.classifier is None:
            raise DGMInputError("the learner has not learned any task yet; call learn_task first")
        return self.classifier

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Labels (argmax over every class seen) and softmax scores N x K for images x."""
        disc = self._require_classes()
        disc.eval()
        xt = images.prepare(x, self.config.image_shape, self.device)
        probs = torch.cat([disc.logits(c).float().softmax(1) for c in xt.split(512)]).cpu().numpy()
        return [self.classes[i] for i in probs.argmax(1)], probs

    def evaluate(self, x: np.ndarray, y: Sequence[Any]) -> float:
        labels = normalise_labels(y, len(x))
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise DGMInputError(f"labels the learner has not learned: {unknown[:10]}")
        predicted, _ = self.predict(x)
        return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))

    def sample(self, label: str, n: int = 16, seed: int = 0) -> np.ndarray:
        """n images the generator makes for class `label`: N x C x H x W float in [0, 1]."""
        if str(label) not in self.classes:
            raise DGMInputError(f"unknown class {label!r}; known classes: {self.classes[:20]}")
        if not 1 <= n <= 10_000:
            raise DGMInputError(f"n must be in 1..10000, got {n}")
        rng = torch.Generator(device=self.device).manual_seed(seed)
        out = generate(self.generator, [self.classes.index(str(label))], n, rng, self.config.truncation)
        return images.to_user(out, self.config.image_shape)

    def parameter_count(self) -> int:
        """Generator plus the serving classifier."""
        gen = self.generator_parameter_count()
        clf = sum(p.numel() for p in self.classifier.parameters()) if self.classifier else 0
        return gen + clf

    def generator_parameter_count(self) -> int:
        """Generator weights, BN and heads (not the training-time mask embeddings)."""
        return sum(
            p.numel() for name, p in self.generator.named_parameters() if not name.startswith("embedding")
        )

    # ----- persistence (file layout: dgm/checkpoint.py) --------------------------------------
    def save(self, path: str | Path) -> None:
        """Everything needed to continue learning: generator, serving classifier, config and history."""
        tensors, state = self.generator.state()
        if self.classifier is not None:
            tensors.update(self.classifier.state())
        state = {**state, "seed": self.seed, "history": self.history, **self._classifier_meta()}
        checkpoint.write(tensors, {"kind": "learner", "config": self.config.to_dict(), "state": state}, path)

    def save_classifier(self, path: str | Path) -> None:
        """The small serving file: the classifier and the class names only (dgm.inference loads it)."""
        if self.classifier is None:
            raise CheckpointError("nothing to save: the learner has not learned any task yet")
        meta = {"kind": "classifier", "state": self._classifier_meta(), "config": self.config.to_dict()}
        checkpoint.write(self.classifier.state(), meta, path)

    def _classifier_meta(self) -> dict[str, Any]:
        # the serving classifier's own width: the critic's (ndf), or classifier_ndf where that is set
        ndf = self.config.ndf if self.classifier is None else self.classifier.trunk[0].out_channels
        return {"classes": self.classes, "image_shape": list(self.config.image_shape), "ndf": ndf}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Learner:
        tensors, meta = checkpoint.read(path, "learner")
        return cls.from_state(tensors, meta, device)

    @classmethod
    def from_state(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: str | torch.device | None = None
    ) -> Learner:
        """The learner a `learner` checkpoint's tensors and metadata (`kind`, `config`, `state`) describe."""
        cfg = LearnerConfig.from_dict(
            {**meta["config"], "extra": tuple(tuple(kv) for kv in meta["config"]["extra"])}
        )
        state = meta["state"]
        learner = cls(cfg, seed=state["seed"], device="cpu")
        learner.generator = Generator.from_state(cfg, tensors, state)
        learner.classes = list(state["classes"])
        learner.history = list(state["history"])
        if learner.classes:
            learner.classifier = Discriminator.from_state(tensors, state)
        learner.device = resolve_device(device)
        learner.generator.to(learner.device)
        if learner.classifier is not None:
            learner.classifier.to(learner.device)
        return learner


@torch.no_grad()
def _pruned(clf: Discriminator, keep: list[int]) -> Discriminator:
    """A copy of `clf` whose class outputs are only `keep` (old output indices, in the new order)."""
    out = copy.deepcopy(clf)
    for name in ("classify", "embed"):
        old = getattr(out, name)
        if old is None:
            continue
        new = torch.nn.Linear(old.in_features, len(keep), bias=old.bias is not None).to(old.weight.device)
        new.weight.copy_(old.weight[keep])
        if old.bias is not None:
            new.bias.copy_(old.bias[keep])
        setattr(out, name, new)
    return out.eval()


def _without(report: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """A history entry with `labels` struck from its classes, fidelity and warnings."""
    out = dict(report)
    out["classes"] = [c for c in report.get("classes", []) if c not in labels]
    if report.get("fidelity") is not None:
        out["fidelity"] = {c: f for c, f in report["fidelity"].items() if c not in labels}
    if "low_fidelity" in report:
        out["low_fidelity"] = [c for c in report["low_fidelity"] if c not in labels]
    return out
