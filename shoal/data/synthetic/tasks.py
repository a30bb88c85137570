"""Further tasks: post-click events (a conversion) planted on top of the click, for multi-task learning.

As in ESMM (Ma et al., 2018, "Entire Space Multi-Task Model"), a further task ``t`` is an event that can only
follow a click: its label is ``click * Bernoulli(cvr_t)`` with the post-click rate::

    cvr_t = sigmoid(b_t + SHARED * (logit - bias) + OWN * O_t)
    O_t   = sum_{j informative, single id} sigma_j * g((task, t, j), r_j) / sqrt(1 + (r_j - 1) / 20)

so the event shares the click's planted structure (the same dense, per-id and interaction effects, weighted by
``SHARED``) and adds per-id effects of its own (``O_t``, drawn like the click's per-id effects from hashes with
their own tag, ``SHARED^2 + OWN^2 = 1``).  ``b_t`` is calibrated on the pilot sample so that the mean of
``cvr_t`` over clicks (each pilot row weighted by its click probability) is ``task_rate``.

Over all rows the label is 1 with probability ``p * cvr_t`` (``p`` the click probability): that is the
Bayes-optimal predictor of the label as written, and its AUC and NE are the task's truth (:mod:`.truth`).  Most of
what predicts the sparse event is learned more easily from the dense click, which is the point of the data: a
model that shares its embeddings between the tasks should beat a single-task model on the sparse one.
"""

from __future__ import annotations

import numpy as np

from shoal.data.synthetic.ids import _decay, _rank_gauss, _tag
from shoal.data.synthetic.logit import _calibrate_bias, _logit, _pilot, _sigmoid
from shoal.data.synthetic.params import _Params
from shoal.data.synthetic.sampling import _Sample
from shoal.data.synthetic.spec import _TAG_TASK, SynthSpec

SHARED = 0.8
"""Weight of the click's planted logit in a further task's logit."""
OWN = 0.6
"""Weight of the task's own per-id effects."""

_HASH_PURPOSE = 8  # hash tag (8, t, j) of task t's own effect of feature j (1..3 and 7 are the click's and the ids')


def _own_logit(sample: _Sample, params: _Params, t: int) -> np.ndarray:
    """``O_t``: task ``t``'s own per-id effects on the informative single-id features, shape ``(n,)``."""
    out = np.zeros(sample.rows, dtype=np.float64)
    for j in range(sample.ranks.shape[1]):
        if params.sigma[j] == 0.0:
            continue
        r = sample.ranks[:, j]
        eff = params.sigma[j] * _rank_gauss(_tag(_HASH_PURPOSE, t, j), r) * _decay(r)
        out += np.where(r > 0, eff, 0.0)
    return out


def _task_logit(sample: _Sample, params: _Params, click: np.ndarray, t: int) -> np.ndarray:
    """Task ``t``'s post-click logit without its bias; ``click`` is the click logit without the click's bias."""
    return SHARED * click + OWN * _own_logit(sample, params, t)


def _task_biases(spec: SynthSpec, params: _Params, bias: float) -> list[float]:
    """``b_t`` of each further task ``t = 1..``: mean ``cvr_t`` among the pilot's clicks is ``spec.task_rate``."""
    pilot = _pilot(spec, params)
    click = _logit(pilot, params)
    weight = _sigmoid(bias + click)
    return [_calibrate_bias(_task_logit(pilot, params, click, t), spec.task_rate, weight)
            for t in range(1, len(spec.label_names))]


def _post_click(rng: np.random.Generator, clicks: np.ndarray, logit: np.ndarray, cvr_logit: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels of a post-click event, their true probability ``p * cvr`` over all rows, and the summed log loss.

    ``logit`` and ``cvr_logit`` include their biases.  The loss is taken from the logits, stably for any value:
    ``log(p cvr) = -softplus(-logit) - softplus(-cvr_logit)`` and
    ``log(1 - p cvr) = log(sigmoid(-logit) + sigmoid(logit) sigmoid(-cvr_logit))``, a sum of two positive terms.
    """
    labels = (clicks.astype(bool) & (rng.random(clicks.shape[0]) < _sigmoid(cvr_logit))).astype(np.int8)
    log_pos = -np.logaddexp(0.0, -logit) - np.logaddexp(0.0, -cvr_logit)
    log_neg = np.logaddexp(-np.logaddexp(0.0, logit), -np.logaddexp(0.0, -logit) - np.logaddexp(0.0, cvr_logit))
    loss = float(-np.sum(np.where(labels == 1, log_pos, log_neg)))
    return labels, np.exp(log_pos), loss


def _task_rng(spec: SynthSpec, t: int, chunk: int) -> np.random.Generator:
    """The stream of task ``t``'s draws in ``chunk`` (``[seed, 4, t, chunk]``): the click labels never change."""
    return np.random.default_rng([spec.seed, _TAG_TASK, t, chunk])
