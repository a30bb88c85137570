""":func:`generate`: draw the log chunk by chunk, write it to Parquet, and write its truth beside it.

Memory is bounded by ``chunk_rows`` for the features (each chunk is sampled, labelled, written and dropped); only
the labels and true probabilities of all rows (of each task) are kept, because the Bayes AUC needs them together.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from shoal.data.synthetic.arrow import _schema, _table
from shoal.data.synthetic.logit import _bias, _logit, _sigmoid
from shoal.data.synthetic.params import _params
from shoal.data.synthetic.sampling import _sample
from shoal.data.synthetic.spec import _TAG_CHUNK, _TAG_TARGET, TARGET_SCALE, SynthSpec, _validate
from shoal.data.synthetic.tasks import _post_click, _task_biases, _task_logit, _task_rng
from shoal.data.synthetic.truth import SynthTruth, _bayes_truth, _write_truth

__all__ = ["generate"]


def generate(path: str | Path, spec: SynthSpec, progress: Callable[[int], None] | None = None) -> SynthTruth:
    """Write the log as Parquet (one row group per chunk) and the truth as JSON at ``truth_path(path)``.

    Both files are written to temporary names and renamed into place, so a crash never leaves a
    half-written log behind a valid-looking name.  ``progress(n_rows_done)`` is called after each chunk.
    Returns the :class:`SynthTruth` that was written.
    """
    _validate(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = _params(spec)
    bias = _bias(spec, params)
    task_biases = _task_biases(spec, params, bias) if spec.tasks is not None else []
    schema = _schema(spec)

    n_tasks = len(spec.label_names)
    probs = np.empty((n_tasks, spec.rows), dtype=np.float64)  # (T, rows): each task's true probability
    labels_all = np.empty((n_tasks, spec.rows), dtype=np.int8)
    loss_sum = np.zeros(n_tasks)
    signal = np.zeros(3)  # the target's signal: rows, sum, sum of squares (its variance sets the R^2 ceiling)
    tmp = path.with_name(path.name + ".tmp")
    done = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in range(math.ceil(spec.rows / spec.chunk_rows)):
                n = min(spec.chunk_rows, spec.rows - done)
                rng = np.random.default_rng([spec.seed, _TAG_CHUNK, chunk])
                sample = _sample(rng, spec, params, n)
                planted = _logit(sample, params)
                logit = bias + planted
                p = _sigmoid(logit)
                labels = (rng.random(n) < p).astype(np.int8)
                # log loss from the logit: softplus(x) - y * x, stable for any x
                loss_sum[0] += float(np.sum(np.logaddexp(0.0, logit) - labels * logit))
                probs[0, done : done + n] = p
                labels_all[0, done : done + n] = labels
                for t, task_bias in enumerate(task_biases, start=1):
                    cvr_logit = task_bias + _task_logit(sample, params, planted, t)
                    y, q, loss = _post_click(_task_rng(spec, t, chunk), labels, logit, cvr_logit)
                    labels_all[t, done : done + n], probs[t, done : done + n] = y, q
                    loss_sum[t] += loss
                target = None
                if spec.target is not None:
                    clean = TARGET_SCALE * logit
                    noise = np.random.default_rng([spec.seed, _TAG_TARGET, chunk]).normal(0.0, spec.target_noise, n)
                    target = clean + noise
                    signal += [n, clean.sum(), np.square(clean).sum()]
                table = _table(spec, sample, labels_all[:, done : done + n], schema, target)
                writer.write_table(table, row_group_size=n)
                done += n
                if progress is not None:
                    progress(done)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

    truth = _bayes_truth(spec, labels_all, probs, loss_sum, signal)
    _write_truth(path, truth)
    return truth
