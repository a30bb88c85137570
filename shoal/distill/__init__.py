"""Distillation: a small student trained on a big teacher's temperature-softened outputs.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531). The student's
loss mixes the hard labels and the teacher's "dark knowledge"::

    loss = a * CE(y, s) + (1 - a) * T^2 * KL(teacher_T || student_T)

where ``student_T`` is ``softmax(s / T)`` (multiclass) or ``sigmoid(s / T)`` (binary: a two-class softmax), and
``T^2`` keeps the soft term's gradients at the scale of the hard term's as ``T`` grows.

A teacher and its student may read the rows differently (``bytecnn`` reads byte sequences, ``bag`` hashed
n-grams), so the two meet at the level of raw rows: the teacher scores every training row once, keyed by the
row's line number in the training file (:class:`TeacherOutputs`, saved as ``teacher-logits.npz`` in the
student's run folder); the student's :class:`~shoal.training.loop.Trainer` then looks its mini-batches up by
``Batch.lines`` (:class:`DistillLoss`)::

    training file ──> teacher encoder ──> teacher ──> logits by line   (once: teacher-logits.npz)
          │                                                │
          └────────> student encoder ──> student ──> DistillLoss(student logits, batch.lines) ──> step

The student reads the same data config with the same seed, so the teacher's held-out validation rows stay held
out for the student too. An optional transfer set (unlabeled rows) is labelled by the teacher and trained on
with the soft term only (:func:`distill`'s ``transfer``).

With no unlabeled rows at hand, an augmented transfer set is made from the student's own training rows
(:mod:`shoal.distill.augment`: word masking and n-gram sampling of texts, Tang et al. 2019; MUNGE for tabular
rows, Buciluă et al. 2006), held-out rows left out: ``distill(..., augment=K)``.

The teacher may be an ensemble of runs trained on the same rows (§3-4 of the paper: "an ensemble of models ...
distilled into a single model"). Each teacher encodes and scores every row its own way; their probabilities are
averaged (the arithmetic mean, the paper's first choice) and the student learns the logits of that mean
(:func:`ensemble_logits`)::

    teacher 1 ──> p1 ─┐
    teacher 2 ──> p2 ─┼─> p = (p1 + ... + pK) / K ──> logit(p) (binary) | log p (multiclass) ──> teacher-logits.npz
    teacher K ──> pK ─┘

    import shoal.distill
    run = shoal.distill.distill("latest", "mlp", home="shoal-runs", temperature=2.0, alpha=0.5)
    run = shoal.distill.distill(["run-a", "run-b", "run-c"], "mlp", home="shoal-runs")   # an ensemble
    run = shoal.distill.distill("latest", "mlp", home="shoal-runs", augment=5)   # + 5 new rows per training row
    run = shoal.distill.resume("latest", home="shoal-runs")   # a killed run of any kind, from its checkpoint
"""

from shoal.distill.augment import Augmentation, augment_rows
from shoal.distill.loss import DistillLoss, distillation_loss
from shoal.distill.run import TEACHER_FILE, distill, resume, resume_distill
from shoal.distill.student import STUDENTS, student_config
from shoal.distill.teachers import TeacherOutputs, ensemble_logits, teacher_outputs, with_transfer

__all__ = [
    "STUDENTS",
    "TEACHER_FILE",
    "Augmentation",
    "DistillLoss",
    "TeacherOutputs",
    "augment_rows",
    "distill",
    "distillation_loss",
    "ensemble_logits",
    "resume",
    "resume_distill",
    "student_config",
    "teacher_outputs",
    "with_transfer",
]
