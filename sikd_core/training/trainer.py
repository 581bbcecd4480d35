"""One training loop with hooks (nnU-Net style); the SIKD student overrides one step of it.

Randomness is fully derived from ``(seed, epoch)``: batch order and augmentation of epoch ``e`` come from
a generator seeded with both. ``latest.pt`` is written when ``checkpoint_interval_s`` has elapsed, at the
next step boundary, also in the middle of an epoch (with the step, the generator's state and the epoch's
running sums), so a crash repeats at most that interval of training and a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sikd_core.errors import TrainingCancelled, TrainingHealthError
from sikd_core.files import save_atomically
from sikd_core.losses import SegmentationLoss
from sikd_core.metrics import batch_dice
from sikd_core.training.callbacks import Callback, CallbackList
from sikd_core.training.health import make_finding

InputFn = Callable[[Tensor, Tensor], Tensor]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an unavailable explicit device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available on this machine")
    return dev


def epoch_seed(seed: int, epoch: int, salt: str = "") -> int:
    digest = hashlib.sha256(f"{seed}:{epoch}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    steps_per_epoch: int | None = None
    loss: str = "ce"
    amp: bool = True
    device: str = "auto"
    eval_batch_size: int | None = None
    poly_power: float = 0.9
    #: NHWC tensors: faster convolutions on CUDA and on CPU (oneDNN), measured in bench/speed.py.
    channels_last: bool = True
    #: Write ``latest.pt`` when this much time has passed since the last write, at the next step boundary
    #: (mid-epoch too), and always after the last epoch; resuming repeats at most this much work (plus one
    #: step). 0 writes it after every epoch only. Large models write hundreds of MB per checkpoint.
    checkpoint_interval_s: float = 30.0


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    global_step: int = 0
    step_in_epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    last_loss: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Structured health findings (sikd_core.training.health); their messages are also in ``warnings``.
    health: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0  # training seconds before this (re)start


@dataclass
class TrainResult:
    stage: str
    best_score: float
    best_epoch: int
    epochs: int
    history: list[dict[str, Any]]
    warnings: list[str]
    best_path: str | None
    seconds: float
    health: list[dict[str, Any]] = field(default_factory=list)


def _atomic_save(obj: Any, path: Path) -> None:
    save_atomically(obj, path, "checkpoint")


class Trainer:
    """Train ``model`` on ``train`` (images ``N,C,H,W`` float in [0,1], labels ``N,H,W`` int).

    Hooks to override: :meth:`build_optimizer`, :meth:`build_scheduler`, :meth:`build_loss`,
    :meth:`train_step`, :meth:`validation_step`, :meth:`on_epoch_end`.
    ``input_fn(images, labels)`` maps a batch (after augmentation) to the network input: identity for
    baseline and student, the class-wise averaged image for the SIKD teacher.
    """

    def __init__(
        self,
        model: nn.Module,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor] | None,
        config: TrainConfig,
        *,
        num_classes: int,
        stage: str = "train",
        checkpoint_dir: str | Path | None = None,
        callbacks: Iterable[Callback] = (),
        augmenter: Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]] | None = None,
        input_fn: InputFn | None = None,
        meta: dict[str, Any] | None = None,
    ):
        images, labels = train
        if images.ndim != 4 or labels.ndim != 3 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"train data must be N,C,H,W images and N,H,W labels; got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        if images.shape[0] == 0:
            raise ValueError("the training split is empty")
        for split, split_labels in (("training", labels), ("validation", val[1] if val is not None else None)):
            if split_labels is not None and split_labels.numel():
                lo, hi = (int(v) for v in torch.aminmax(split_labels))
                if lo < 0 or hi >= num_classes:
                    raise ValueError(f"{split} labels must lie in [0, {num_classes}); found range [{lo}, {hi}]")
        self.model = model
        self.train_images, self.train_labels = images, labels
        self.val = val if val is not None and val[0].shape[0] > 0 else None
        self.config = config
        self.num_classes = num_classes
        self.stage = stage
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.callbacks = CallbackList(callbacks)
        self.augmenter = augmenter
        self.input_fn = input_fn
        self.meta = dict(meta or {})
        self.device = resolve_device(config.device)
        self.state = TrainState()
        n = images.shape[0]
        self.batch_size = min(config.batch_size, n)
        self.steps_per_epoch = config.steps_per_epoch or max(1, n // self.batch_size)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self._val_counts: Tensor | None = None
        self.channels_last = bool(config.channels_last)
        self._t0 = time.monotonic()
        self._mid_epoch: dict[str, Any] | None = None  # set by _resume from a mid-epoch latest.pt
        self.mid_epoch_saves = 0

    # ----------------------------------------------------------------------------- hooks
    def build_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        epochs, power = self.config.epochs, self.config.poly_power
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(0.0, 1 - e / epochs) ** power)

    def build_loss(self) -> nn.Module:
        return SegmentationLoss(self.config.loss, self.num_classes)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.use_amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def model_input(self, images: Tensor, labels: Tensor) -> Tensor:
        x = self.input_fn(images, labels) if self.input_fn is not None else images
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """One optimisation step; returns the loss terms (tensors, ``loss`` is the total)."""
        with self.autocast():
            logits = self.model(self.model_input(images, labels))
            loss = self.loss_fn(logits, labels)
        self.backward(loss)
        return {"loss": loss}

    def backward(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    @torch.no_grad()
    def validation_step(self, images: Tensor, labels: Tensor) -> Tensor:
        """Per-sample, per-foreground-class Dice ``B,K-1`` of one validation batch."""
        with self.autocast():
            logits = self.model(self.model_input(images, labels))
        pred = logits.argmax(1)
        self._count_classes(pred, labels)
        return batch_dice(pred, labels, self.num_classes)

    def _count_classes(self, pred: Tensor, labels: Tensor) -> None:
        """Accumulate predicted and true pixels per class for this validation pass (health checks)."""
        k = self.num_classes
        counts = torch.stack([torch.bincount(pred.flatten(), minlength=k)[:k],
                              torch.bincount(labels.flatten(), minlength=k)[:k]])
        self._val_counts = counts if self._val_counts is None else self._val_counts + counts

    def on_epoch_end(self, logs: dict[str, Any]) -> None:
        """Hook for subclasses; called before callbacks see the epoch's logs."""

    # ----------------------------------------------------------------------------- loop
    def _setup(self) -> None:
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = self.build_optimizer()
        self.scheduler = self.build_scheduler(self.optimizer)
        self.loss_fn = self.build_loss().to(self.device)

    def _batch(self, data: tuple[Tensor, Tensor], idx: Tensor) -> tuple[Tensor, Tensor]:
        images = data[0].index_select(0, idx).to(self.device, non_blocking=True).float()
        labels = data[1].index_select(0, idx).to(self.device, non_blocking=True).long()
        return images, labels

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": "sikd-checkpoint/1",
            "stage": self.stage,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.state.epoch,
            "state": asdict(self.state),
            "config": asdict(self.config),
            "best_score": self.state.best_score,
            "meta": self.meta,
        }

    def _resume(self) -> bool:
        if self.checkpoint_dir is None:
            return False
        path = self.checkpoint_dir / "latest.pt"
        if not path.exists():
            return False
        ckpt = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = TrainState(**ckpt["state"])
        self._mid_epoch = ckpt.get("mid_epoch")
        return True

    def _save_mid_epoch(self, step: int, gen: torch.Generator, losses: list[float], terms: dict[str, float]) -> None:
        """``latest.pt`` after ``step`` of the current epoch, when the checkpoint interval has elapsed: the
        weights and optimiser as usual, plus what resuming inside the epoch needs (the next step, the epoch
        generator's state, the global RNG and the epoch's running loss sums)."""
        interval = self.config.checkpoint_interval_s
        if self.checkpoint_dir is None or interval <= 0 or step + 1 >= self.steps_per_epoch:
            return  # the epoch end writes its own checkpoint
        now = time.monotonic()
        if now - self._last_save < interval:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.state.step_in_epoch = step + 1
        ckpt = self.checkpoint()
        ckpt["mid_epoch"] = {"epoch": self.state.epoch, "next_step": step + 1, "generator": gen.get_state(),
                             "torch_rng": torch.get_rng_state(), "losses": list(losses), "terms": dict(terms)}
        _atomic_save(ckpt, self.checkpoint_dir / "latest.pt")
        self._last_save = now
        self.mid_epoch_saves += 1

    def _epoch_start(self, epoch: int, gen: torch.Generator) -> tuple[int, list[float], dict[str, float]]:
        """Where epoch ``epoch`` starts: step 0, or the step a mid-epoch checkpoint stopped at (its generator
        and RNG states restored, after the batch order was drawn exactly as the first time)."""
        mid, self._mid_epoch = self._mid_epoch, None
        if not mid or mid["epoch"] != epoch:
            return 0, [], {}
        gen.set_state(mid["generator"])
        torch.set_rng_state(mid["torch_rng"])
        return int(mid["next_step"]), list(mid["losses"]), dict(mid["terms"])

    def _save(self, improved: bool) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        now = time.monotonic()
        due = (self.state.epoch >= self.config.epochs
               or now - self._last_save >= self.config.checkpoint_interval_s)
        if improved:
            _atomic_save({"format": "sikd-weights/1", "stage": self.stage, "model": self.model.state_dict(),
                          "epoch": self.state.epoch, "best_score": self.state.best_score, "meta": self.meta},
                         self.checkpoint_dir / "best.pt")
        if due:
            _atomic_save(self.checkpoint(), self.checkpoint_dir / "latest.pt")
            self._last_save = now
        (self.checkpoint_dir / "history.json").write_text(json.dumps(self.state.history, indent=1))

    def warn(self, message: str, finding: dict[str, Any] | None = None) -> None:
        """Record a warning (once); ``finding`` is its structured form (sikd_core.training.health)."""
        if finding is not None:
            self.state.health.append(finding)
        if message not in self.state.warnings:
            self.state.warnings.append(message)
            self.callbacks.on_warning(self, message)
        elif finding is not None:
            self.callbacks.on_warning(self, message)

    @property
    def progress(self) -> float:
        total = self.config.epochs * self.steps_per_epoch
        return min(1.0, self.state.global_step / total) if total else 1.0

    @property
    def eta_seconds(self) -> float | None:
        """Remaining seconds, from the throughput since this (re)start."""
        done = self.state.global_step - self._start_step
        if done <= 0:
            return None
        rate = (time.monotonic() - self._t0) / done
        return rate * (self.config.epochs * self.steps_per_epoch - self.state.global_step)

    def fit(self) -> TrainResult:
        self._setup()
        self._resume()
        self._t0 = self._last_save = time.monotonic()
        self._start_step = self.state.global_step
        self.callbacks.on_train_start(self)
        n = self.train_images.shape[0]
        data = (self.train_images, self.train_labels)
        while self.state.epoch < self.config.epochs:
            epoch = self.state.epoch
            gen = torch.Generator().manual_seed(epoch_seed(self.config.seed, epoch, self.stage))
            self.model.train()
            self.callbacks.on_epoch_start(self)
            needed = self.steps_per_epoch * self.batch_size
            order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(needed / n))])
            first, losses, terms = self._epoch_start(epoch, gen)
            t_epoch = time.monotonic()
            for step in range(first, self.steps_per_epoch):
                self.state.step_in_epoch = step
                idx = order[step * self.batch_size:(step + 1) * self.batch_size]
                images, labels = self._batch(data, idx)
                if self.augmenter is not None:
                    images, labels = self.augmenter(images, labels, gen)
                out = self.train_step(images, labels)
                values = {k: float(v.detach()) for k, v in out.items()}
                loss = values["loss"]
                if not math.isfinite(loss):
                    message = (f"{self.stage}: the loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                               f"training stopped. Lower the learning rate (now {self.config.lr:g}) or check the "
                               f"data (images must be finite; labels must lie in [0, {self.num_classes})).")
                    self.warn(message, finding=make_finding(
                        "nonfinite_loss", message, stage=self.stage, seed=self.config.seed,
                        method=self.meta.get("method"), epoch=epoch + 1,
                        values={"loss": str(loss), "step": step + 1, "lr": self.config.lr}))
                    raise TrainingHealthError(message)
                losses.append(loss)
                for k, v in values.items():
                    terms[k] = terms.get(k, 0.0) + v
                self.state.global_step += 1
                self.state.last_loss = loss
                self.callbacks.on_step_end(self, values)
                if self.callbacks.should_stop(self):
                    raise TrainingCancelled(f"{self.stage}: cancelled at epoch {epoch + 1}, step {step + 1}")
                self._save_mid_epoch(step, gen, losses, terms)
            logs: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                                    "train_seconds": time.monotonic() - t_epoch}
            self.scheduler.step()
            logs.update({k: v / self.steps_per_epoch for k, v in terms.items()})
            logs.update(self.validate())
            score = logs.get("val_dice")
            if score is None or math.isnan(score):
                score = -logs["loss"]  # no validation split: the latest epoch wins
            improved = score > self.state.best_score
            self.state.epoch = epoch + 1
            self.state.step_in_epoch = 0
            if improved:
                self.state.best_score, self.state.best_epoch = score, epoch + 1
            self.state.elapsed += time.monotonic() - t_epoch
            logs["best_val_dice"] = self.state.best_score if self.val is not None else None
            self.state.history.append(logs)
            self.on_epoch_end(logs)
            self._check_zero_classes()
            self._save(improved)
            self.callbacks.on_epoch_end(self, logs)
        if self.val is None:
            self.warn("no validation split: the final epoch's weights are kept (no model selection)")
        result = self._finish()
        self.callbacks.on_train_end(self, result)
        return result

    def _check_zero_classes(self) -> None:
        """Warn once per class when a foreground class has had zero validation Dice in every epoch so far
        (checked from epoch max(3, epochs/2) on, so slow starters are not flagged)."""
        hist = [h["val_dice_per_class"] for h in self.state.history if h.get("val_dice_per_class")]
        if len(hist) < min(self.config.epochs, max(3, self.config.epochs // 2)):
            return
        for c in range(self.num_classes - 1):
            if all(h[c] == 0.0 for h in hist):
                names = self.meta.get("class_names") or []
                name = names[c + 1] if len(names) > c + 1 else f"class {c + 1}"
                if not any(w.startswith(f"{name} has had zero validation Dice") for w in self.state.warnings):
                    self.warn(f"{name} has had zero validation Dice in every epoch (first {len(hist)}): it may "
                              f"be too rare or too small at this image size, or the learning rate too high")

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        if self.val is None:
            return {"val_dice": None, "val_dice_per_class": None}
        self.model.eval()
        bs = self.config.eval_batch_size or self.batch_size
        n = self.val[0].shape[0]
        scores = []
        self._val_counts = None
        for start in range(0, n, bs):
            idx = torch.arange(start, min(n, start + bs))
            images, labels = self._batch(self.val, idx)
            scores.append(self.validation_step(images, labels).float().cpu())
        per_class = torch.cat(scores).mean(0)
        out: dict[str, Any] = {"val_dice": float(per_class.mean()), "val_dice_per_class": [float(v) for v in per_class]}
        if self._val_counts is not None:  # per-class pixel fractions, predicted and true (health checks)
            counts = self._val_counts.cpu().double()
            frac = counts / counts.sum(1, keepdim=True).clamp_min(1)
            out["val_pred_fraction"] = [float(v) for v in frac[0]]
            out["val_true_fraction"] = [float(v) for v in frac[1]]
        return out

    def _finish(self) -> TrainResult:
        best_path = None
        if self.checkpoint_dir is not None and (self.checkpoint_dir / "best.pt").exists():
            best_path = str(self.checkpoint_dir / "best.pt")
            best = torch.load(best_path, map_location=self.device, weights_only=False)
            self.model.load_state_dict(best["model"])
        self.model.eval()
        return TrainResult(stage=self.stage, best_score=self.state.best_score, best_epoch=self.state.best_epoch,
                           epochs=self.state.epoch, history=list(self.state.history),
                           warnings=list(self.state.warnings), best_path=best_path, seconds=self.state.elapsed,
                           health=list(self.state.health))
