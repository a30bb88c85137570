"""The Trainer: one training run, from the training file to a bundle.

1. The first pass (:mod:`shoal.training.data`) fits the encoder, counts rows, reports bad rows and sets aside
   the validation rows.
2. Each epoch the training rows come in chunks, each shuffled by (seed, epoch, chunk) and cut into
   mini-batches; a step is Adam on the dense parameters and row-wise Adagrad on the embedding rows a batch
   touches (sparse gradients); Adam's learning rate follows ``train.lr_schedule`` over the run's steps.
3. Every ``checkpoint_every`` steps, and at an epoch end when the last checkpoint is old enough, the model, both
   optimizers, the schedule and the position are checkpointed (:mod:`shoal.training.checkpoints`); resuming
   continues from there, so a killed run that is resumed ends where an uninterrupted run ends.
4. After each epoch (or every ``eval_every`` steps) validation decides early stopping and keeps the best
   weights (:mod:`shoal.training.evaluation`); they become the bundle.

Where the run takes place, one process or one rank of a distributed job, is the :mod:`~shoal.training.strategy`
the Trainer is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from shoal.artifacts.bundle import save_bundle
from shoal.config import LabelConfig, RunConfig
from shoal.data.batch import Batch
from shoal.models import build, init_output_bias
from shoal.training.callbacks import Callbacks
from shoal.training.checkpoints import Checkpointer, Optimizers, Position
from shoal.training.data import TrainingData
from shoal.training.evaluation import Evaluator
from shoal.training.strategy import SingleProcess, Strategy, build_optimizers, build_schedule
from shoal.training.tensorboard import Tee, TensorBoardCallbacks, log_dir, require_tensorboard, run_hparams

__all__ = ["BatchLoss", "TrainResult", "Trainer"]

log = logging.getLogger(__name__)

BatchLoss = Callable[[torch.Tensor, Batch], torch.Tensor]  # (logits of a mini-batch, the mini-batch) -> loss


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    summary: dict[str, Any]
    bundle: Path


def training_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None,
                  label: LabelConfig | None = None, target: tuple[float, float] | None = None,
                  targets: Sequence[tuple[float, float] | None] = ()) -> torch.Tensor:
    """The mean loss of a mini-batch: cross-entropy ((B, C) logits) or binary cross-entropy ((B,) logits), each
    row weighted by ``weight`` when given (a distributed rank's padding rows weigh 0). A regression ``label``:
    the squared (or Huber) error of predictions ``logits`` in standard deviations ``target[1]`` of the label.
    Multilabel ((B, T) 0/1 ``labels``): binary cross-entropy per tag, averaged over the tags of a row.
    Multitask: :func:`multitask_loss`, with ``targets`` each regression task's (mean, std)."""
    if label is not None and label.kind == "multitask":
        return multitask_loss(logits, labels, weight, label, targets)
    reduction = "mean" if weight is None else "none"
    if labels.ndim == 2:  # multilabel: (B, T) tags
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)
        if weight is not None:
            loss = loss.mean(dim=1)
    elif label is not None and label.kind == "regression":
        assert target is not None
        err = (logits - labels) / target[1]  # (B,) in standard deviations of the training label
        zero = torch.zeros_like(err)
        loss = (nn.functional.huber_loss(err, zero, reduction=reduction, delta=label.huber_delta)
                if label.loss == "huber" else nn.functional.mse_loss(err, zero, reduction=reduction))
    elif logits.ndim == 2:
        loss = nn.functional.cross_entropy(logits, labels.long(), reduction=reduction)
    else:
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction=reduction)
    return loss if weight is None else (loss * weight).mean()


def multitask_loss(out: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, label: LabelConfig,
                   targets: Sequence[tuple[float, float] | None]) -> torch.Tensor:
    """The tasks' losses weighted by their ``weight`` (their weighted mean): per task, binary cross-entropy of a
    binary task's logit or the squared (Huber) error of a regression task's value in standard deviations, each the
    mean over the rows that know the task's label (NaN labels are left out; a mini-batch with none adds 0)."""
    assert label.tasks is not None and len(targets) == len(label.tasks) == out.shape[1]
    total = out.new_zeros(())
    rows = torch.ones(len(out)) if weight is None else weight  # (B,)
    for t, task in enumerate(label.tasks):
        known = ~torch.isnan(labels[:, t])  # (B,)
        y = torch.where(known, labels[:, t], torch.zeros_like(labels[:, t]))
        if task.kind == "binary":
            each = nn.functional.binary_cross_entropy_with_logits(out[:, t], y, reduction="none")
        else:
            std = targets[t]
            assert std is not None
            err = (out[:, t] - y) / std[1]  # in standard deviations of the task's training label
            zero = torch.zeros_like(err)
            each = (nn.functional.huber_loss(err, zero, reduction="none", delta=task.huber_delta)
                    if task.loss == "huber" else nn.functional.mse_loss(err, zero, reduction="none"))
        w = rows * known  # (B,)
        total = total + task.weight * (each * w).sum() / w.sum().clamp(min=1.0)
    return total / sum(task.weight for task in label.tasks)


class Trainer:
    """Trains ``config`` into ``run_dir`` (checkpoint, best weights, quarantine and split files, bundle).

    ``loss`` replaces the training loss (cross-entropy on the labels); it gets each mini-batch with its rows'
    line numbers, e.g. to look up a teacher's outputs (:mod:`shoal.distill`). Validation is unchanged.
    ``strategy`` is where the run takes place: this process alone (the default) or one rank of a distributed job.
    """

    def __init__(self, config: RunConfig, run_dir: Path, callbacks: Callbacks | None = None,
                 loss: BatchLoss | None = None, strategy: Strategy | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.strategy: Strategy = strategy or SingleProcess()
        # only the main process reports: every process of a job takes the same steps
        self.callbacks = (callbacks or Callbacks()) if self.strategy.is_main else Callbacks()
        if config.train.tensorboard is not False and self.strategy.is_main:
            require_tensorboard()  # before the first pass, not after it
        self.loss = loss
        self._target: tuple[float, float] | None = None  # a regression label's (mean, std), after the first pass
        self._targets: list[tuple[float, float] | None] = []  # a multitask label's, per task

    def fit(self, resume: bool = False) -> TrainResult:
        """Train, validate and save the bundle; ``resume`` continues from the run folder's checkpoint."""
        cfg, t = self.config, self.config.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = self.strategy.prepare(cfg, self.run_dir, self.callbacks)  # the first pass
        torch.manual_seed(t.seed)
        enc = data.encoder
        self._target, self._targets = enc.target_, enc.targets_
        heads = cfg.label.task_heads if enc.multitask else None
        built = build(cfg.model, enc.dense_dim, enc.buckets, enc.outputs, enc.sequence_slots, target=enc.target_,
                      media=enc.media_inputs, heads=heads, targets=enc.targets_)
        if not resume:  # a resumed run's weights come from its checkpoint
            init_output_bias(built, enc.task, data.prior)
        model = self.strategy.setup(built)
        opt_dense, opt_sparse = build_optimizers(model, t, self.strategy.fuse_sparse_step)
        opts: Optimizers = [opt_dense, opt_sparse]
        schedule = build_schedule(opt_dense, data)  # Adam's learning rate; None: constant
        checkpoints = self.strategy.checkpointer(self.run_dir)
        pos = self._start(checkpoints, model, opts, resume, schedule)
        reports = self._reports(opts, pos.step)  # the callbacks, and TensorBoard's with train.tensorboard
        if data.valid is None:  # asked for (valid_fraction 0: every row trains, as a refit does) or not
            (log.info if self.config.data.valid_fraction == 0 else log.warning)(
                "no validation rows: early stopping is off and the last weights are kept")
        evaluate = Evaluator(data, self.strategy, checkpoints, reports, t.early_stopping_patience)
        reports.on_start(int(data.summary["train_rows"]), t.epochs, pos.rows)
        stopped_by = self._epochs(model, (opts, schedule), data, pos, evaluate, reports, checkpoints)

        # the end: the best weights, their metrics, the bundle
        reports.on_end(pos.stopped_early)
        checkpoints.restore_best(model)
        metrics, confusion = evaluate.final(model, self.run_dir, cfg.name, pos.history, t.pictures)
        reports.on_final(metrics)
        summary = {**data.summary, **confusion, **pos.summary()}
        if stopped_by is not None:
            summary["stopped_by"] = stopped_by
        return TrainResult(metrics=metrics, summary=summary, bundle=self._save_bundle(model, data, metrics, summary))

    def _epochs(self, model: nn.Module, optimizing: tuple[Optimizers, LRScheduler | None], data: TrainingData,
                pos: Position, evaluate: Evaluator, reports: Callbacks, checkpoints: Checkpointer) -> str | None:
        """Train from ``pos`` until the last epoch, early stopping, or a callback's stop request (its reason is
        returned: the run ends there, without a checkpoint, validated once if it had not been yet, and keeps its
        best weights)."""
        t = self.config.train
        opts, schedule = optimizing
        model.train()
        net = self.strategy.training_module(model)  # what the steps call: the model itself, or its DDP wrapper
        started = time.perf_counter() - pos.train_seconds
        running: float | None = None  # the training loss, smoothed
        may_stop = isinstance(self.strategy, SingleProcess)  # a job's ranks would all have to agree, every step
        stopped_by: str | None = None
        while pos.epoch < t.epochs and not pos.stopped_early:  # epochs -> mini-batches -> a step each
            for ci, bi, mb in data.minibatches(pos.epoch, pos.chunk, pos.batch):
                loss = float(self._step(net, opts, mb))
                pos.advance(ci, bi, data.train.rows_in_step(ci, mb))
                running = loss if running is None else 0.98 * running + 0.02 * loss
                pos.train_seconds = time.perf_counter() - started
                reports.on_step(pos.rows, running, pos.rows / max(pos.train_seconds, 1e-9))
                if schedule is not None:
                    schedule.step()  # the next step's lr (after on_step: TensorBoard logs the lr this step used)
                stop = bool(t.eval_every and pos.step % t.eval_every == 0) and evaluate(model, pos, running)
                stopped_by = reports.stop_requested() if may_stop and not stop else None
                if stopped_by is not None:
                    log.info("stopping at step %d: %s", pos.step, stopped_by)
                    if not pos.history and data.valid is not None:
                        evaluate(model, pos, running)  # the weights so far, validated: they become the best
                    pos.stopped_early = True
                    break
                if pos.step % t.checkpoint_every == 0 or stop:
                    checkpoints.save(model, opts, pos, schedule)
                if stop:
                    pos.stopped_early = True
                    break
            if pos.stopped_early:
                break
            pos.next_epoch()
            if not t.eval_every:
                pos.stopped_early = evaluate(model, pos, running)
            if checkpoints.epoch_end_due():
                checkpoints.save(model, opts, pos, schedule)
        pos.train_seconds = time.perf_counter() - started
        return stopped_by

    def _start(self, checkpoints: Checkpointer, model: nn.Module, opts: Optimizers, resume: bool,
               schedule: LRScheduler | None) -> Position:
        """The position to train from: the checkpoint's when resuming (model, optimizers and schedule restored)."""
        if resume:
            checkpoints.discard_partial()  # half a file from the killed process
        if resume and checkpoints.path.exists():
            pos = checkpoints.load(model, opts, schedule)
            log.info("resuming at epoch %d chunk %d batch %d (step %d)", pos.epoch, pos.chunk, pos.batch, pos.step)
            return pos
        if resume:
            log.warning("no checkpoint in %s; starting from the beginning", self.run_dir)
        return Position()

    def _reports(self, opts: Optimizers, first_step: int) -> Callbacks:
        """The callbacks training reports to: the given ones, and a TensorBoard writer when the config asks for
        one (main process only), its steps counted from ``first_step``."""
        folder = log_dir(self.config.train.tensorboard, self.run_dir)
        if folder is None or not self.strategy.is_main:
            return self.callbacks
        hparams = run_hparams(self.config.train, self.config.model.model_dump(mode="json"))
        return Tee(self.callbacks, TensorBoardCallbacks(folder, opts, first_step, hparams=hparams))

    def _step(self, net: nn.Module, opts: Optimizers, mb: Batch) -> torch.Tensor:
        """One optimisation step on mini-batch ``mb``; returns its loss."""
        assert mb.label is not None
        for o in opts:
            if o is not None:
                o.zero_grad(set_to_none=True)
        out = net(*mb.inputs())
        if self.loss is not None:
            loss = self.loss(out, mb)
        else:
            weight = None if mb.weight is None else torch.from_numpy(mb.weight)
            loss = training_loss(out, torch.from_numpy(mb.label), weight, self.config.label, self._target,
                                 self._targets)
        loss.backward()
        for o in opts:
            if o is not None:
                o.step()
        return loss.detach()

    def _save_bundle(self, model: nn.Module, data: TrainingData, metrics: dict[str, Any],
                     summary: dict[str, Any]) -> Path:
        enc, prior = data.encoder, data.prior
        labels: dict[str, Any] = ({"task": "multitask", "tasks": data.summary["tasks"]} if enc.multitask
                                  else {"classes": enc.classes_, "train_class_prior": prior} if enc.multiclass
                                  else {"task": "regression", "target": prior} if enc.regression
                                  else {"task": "multilabel", "tags": enc.classes_, "train_tag_prior": prior}
                                  if enc.multilabel
                                  else {"train_base_rate": prior})
        shown = {k: v for k, v in summary.items() if k != "history"}
        return save_bundle(self.run_dir / "bundle", model, enc, self.config,
                           {**labels, "metrics": metrics, "summary": shown})
