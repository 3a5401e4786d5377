"""One training loop for every objective: AdamW, linear warm-up then cosine decay,
checkpoints and resume, a time limit, a progress bar with the loss, mixed precision on GPU.

Determinism: epoch e visits the rows in the order drawn from (seed, e), and step s augments
with a generator seeded from (seed, s), so a run resumed from a checkpoint continues exactly
as it would have without the interruption.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from plankton_stream.config import TrainConfig, to_dict
from plankton_stream.errors import PlanktonStreamError

BatchLoss = Callable[[np.ndarray, torch.Generator], torch.Tensor]
CHECKPOINT = "checkpoint.pt"


@dataclass
class History:
    steps: int = 0
    epochs_done: int = 0
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    seconds: float = 0.0
    stopped_early: bool = False

    def summary(self) -> dict:
        return {"steps": self.steps, "epochs_done": self.epochs_done,
                "epoch_losses": [round(x, 4) for x in self.losses],
                "wall_seconds": round(self.seconds, 1), "stopped_early": self.stopped_early}


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise PlanktonStreamError("training.device is 'cuda' but torch sees no CUDA GPU; "
                                      "use 'auto' or 'cpu', or install a CUDA build of torch")
        return torch.device("cuda")
    return torch.device("cpu")


def learning_rate(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on biases, norms and loss scales (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)


def fit(model: nn.Module, batch_loss: BatchLoss, n_rows: int, cfg: TrainConfig, run_dir: Path,
        device: torch.device, resume: bool = False, progress: bool = True) -> History:
    """Train `model` in place; checkpoints go to `run_dir/checkpoint.pt`."""
    per_epoch = n_rows // cfg.batch_size
    if per_epoch == 0:
        raise PlanktonStreamError(f"{n_rows} training pairs cannot fill one batch of "
                                  f"{cfg.batch_size}; use a smaller --batch-size or more data")
    total = per_epoch * cfg.epochs
    opt = _optimizer(model, cfg)
    history = History()
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume and (run_dir / CHECKPOINT).exists():
        history = _load_checkpoint(run_dir / CHECKPOINT, model, opt)
    amp = cfg.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext
    started = time.monotonic() - history.seconds
    bar = _Progress(total, history.steps, progress)
    model.train()
    step, epoch_losses = history.steps, []
    while step < total:
        epoch, i = divmod(step, per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(n_rows)
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, total, cfg)
        with autocast():
            loss = batch_loss(order[i * cfg.batch_size:(i + 1) * cfg.batch_size], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        epoch_losses.append(float(loss.detach()))
        bar.update(step, epoch, epoch_losses[-1], opt.param_groups[0]["lr"])
        history.steps, history.seconds = step, time.monotonic() - started
        out_of_time = cfg.max_minutes > 0 and history.seconds > 60 * cfg.max_minutes
        if step % per_epoch == 0 or out_of_time or step == total:
            if step % per_epoch == 0:
                history.epochs_done += 1
                history.losses.append(float(np.mean(epoch_losses)))
                epoch_losses = []
            _save_checkpoint(run_dir / CHECKPOINT, model, opt, history, cfg)
        if out_of_time and step < total:
            history.stopped_early = True
            break
    bar.close()
    model.eval()
    return history


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, history: History,
                     cfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "history": history.summary() | {"losses": history.losses},
                "config": to_dict(cfg)}, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> History:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    h = state["history"]
    return History(h["steps"], h["epochs_done"], list(h["losses"]), h["wall_seconds"])


class _Progress:
    """A rich progress bar on a terminal; a line per ~10 % otherwise (logs, CI)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.total, self.enabled, self.bar, self.last = total, enabled, None, -1
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total} steps"),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.bar.add_task("training", total=total, completed=done, info="")
            self.bar.start()

    def update(self, step: int, epoch: int, loss: float, lr: float) -> None:
        info = f"epoch {epoch + 1} loss {loss:.3f} lr {lr:.2e}"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif self.enabled and (10 * step // self.total) != self.last:
            self.last = 10 * step // self.total
            print(f"  step {step}/{self.total}  {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
