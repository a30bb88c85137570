"""The distillation loss: hard labels mixed with the teacher's temperature-softened outputs.

``distillation_loss`` is the formula of Hinton et al. 2015 on tensors; ``DistillLoss`` is what the
:class:`~shoal.training.loop.Trainer` calls, so it finds the teacher's logits of each mini-batch by ``batch.lines``
(the teacher scored the rows once, before training: :mod:`shoal.distill.teachers`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from shoal.data.batch import Batch
from shoal.distill.teachers import TeacherOutputs


# -- the loss ---------------------------------------------------------------------------------------------------
def distillation_loss(student: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, temperature: float,
                      alpha: float, labelled: torch.Tensor | None = None) -> torch.Tensor:
    """``a * CE(y, s) + (1 - a) * T^2 * KL(teacher_T || student_T)``, the mean over rows.

    ``student`` and ``teacher`` are logits, (B,) for a binary label (sigmoid) or (B, C) (softmax); ``labels``
    (B,) holds 0/1 or class indices. Rows whose ``labelled`` is False (transfer rows) take the soft term only.
    """
    t = float(temperature)
    if student.ndim == 1:
        y = labels.to(student.dtype)
        ce = F.binary_cross_entropy_with_logits(student, y, reduction="none")  # (B,)
        p_t = torch.sigmoid(teacher / t)
        # KL of two Bernoullis = cross-entropy(p_t, p_s) - entropy(p_t), both as logits for stability
        kl = (F.binary_cross_entropy_with_logits(student / t, p_t, reduction="none")
              - F.binary_cross_entropy_with_logits(teacher / t, p_t, reduction="none"))  # (B,)
    else:
        ce = F.cross_entropy(student, labels.long(), reduction="none")  # (B,)
        log_p_t = F.log_softmax(teacher / t, dim=1)  # (B, C)
        kl = (log_p_t.exp() * (log_p_t - F.log_softmax(student / t, dim=1))).sum(dim=1)  # (B,)
    w = torch.full_like(ce, alpha) if labelled is None else alpha * labelled.to(ce.dtype)
    return (w * ce + (1.0 - w) * (t * t) * kl).mean()


def regression_distillation_loss(student: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, alpha: float,
                                 scale: float, labelled: torch.Tensor | None = None) -> torch.Tensor:
    """``a * ((s - y) / scale)^2 + (1 - a) * ((s - t) / scale)^2``, the mean over rows: a regression student
    learns the labels and the teacher's predictions (Hinton et al.'s soft targets become the teacher's values;
    there is no temperature), both in standard deviations ``scale`` of the training label. Rows whose
    ``labelled`` is False (transfer rows) take the teacher term only."""
    hard = ((student - labels.to(student.dtype)) / scale) ** 2  # (B,)
    soft = ((student - teacher) / scale) ** 2  # (B,)
    w = torch.full_like(hard, alpha) if labelled is None else alpha * labelled.to(hard.dtype)
    return (w * hard + (1.0 - w) * soft).mean()


def multitask_distillation_loss(student: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor,
                                temperature: float, alpha: float, scales: list[float | None], weights: list[float],
                                labelled: torch.Tensor | None = None) -> torch.Tensor:
    """A multitask student: per task (column of (B, T) ``student``, ``labels``, ``teacher``), :func:`distillation_loss`
    of a binary task (``scales[t]`` None) or :func:`regression_distillation_loss` of a regression one (``scales[t]``
    its training label's standard deviation), weighted by ``weights``. A row whose label of a task is unknown (NaN)
    learns that task from the teacher alone, as a transfer row does."""
    rows = torch.ones(len(student), dtype=torch.bool) if labelled is None else labelled.bool()
    total = student.new_zeros(())
    for t, (scale, weight) in enumerate(zip(scales, weights, strict=True)):
        known = ~torch.isnan(labels[:, t])
        y = torch.where(known, labels[:, t], torch.zeros_like(labels[:, t]))
        hard = rows & known  # (B,)
        loss = (distillation_loss(student[:, t], y, teacher[:, t], temperature, alpha, hard) if scale is None
                else regression_distillation_loss(student[:, t], y, teacher[:, t], alpha, scale, hard))
        total = total + weight * loss
    return total / sum(weights)


class DistillLoss:
    """The :class:`~shoal.training.loop.Trainer` loss of a student: :func:`distillation_loss` against the teacher's
    logits of each mini-batch's rows, looked up by ``batch.lines``; for a regression label (``scale``: the
    training label's standard deviation), :func:`regression_distillation_loss` against its predictions."""

    def __init__(self, teacher: TeacherOutputs, temperature: float = 2.0, alpha: float = 0.5,
                 scale: float | None = None, tasks: list[dict[str, Any]] | None = None) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature!r} (1 is the plain softmax; try 2 to 4)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {alpha!r} (the weight of the hard labels; 0.5 mixes)")
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.scale = scale
        self.tasks = tasks  # a multitask label's: [{"kind", "weight", "scale"}] per task

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.label is not None
        t_logits, labelled = self.teacher.lookup(batch.lines)
        if t_logits.shape[1:] != logits.shape[1:]:
            raise ValueError(f"teacher logits have shape {t_logits.shape[1:]} per row, the student's "
                             f"{tuple(logits.shape[1:])}: teacher and student must predict the same label")
        if self.tasks is not None:
            return multitask_distillation_loss(
                logits, torch.from_numpy(batch.label), torch.from_numpy(t_logits), self.temperature, self.alpha,
                [t.get("scale") for t in self.tasks], [float(t.get("weight", 1.0)) for t in self.tasks],
                torch.from_numpy(labelled))
        if self.scale is not None:
            return regression_distillation_loss(logits, torch.from_numpy(batch.label), torch.from_numpy(t_logits),
                                                self.alpha, self.scale, torch.from_numpy(labelled))
        return distillation_loss(logits, torch.from_numpy(batch.label), torch.from_numpy(t_logits),
                                 self.temperature, self.alpha, torch.from_numpy(labelled))
