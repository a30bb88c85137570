""":func:`generate`: draw the log chunk by chunk, write it to Parquet, and write its truth beside it.

Memory is bounded by ``chunk_rows`` for the features (each chunk is sampled, labelled, written and dropped); only
the labels and true probabilities of all rows are kept, because the Bayes AUC needs them together.
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
    schema = _schema(spec)

    probs = np.empty(spec.rows, dtype=np.float64)
    labels_all = np.empty(spec.rows, dtype=np.int8)
    loss_sum = 0.0
    signal = np.zeros(3)  # the target's signal: rows, sum, sum of squares (its variance sets the R^2 ceiling)
    tmp = path.with_name(path.name + ".tmp")
    done = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in range(math.ceil(spec.rows / spec.chunk_rows)):
                n = min(spec.chunk_rows, spec.rows - done)
                rng = np.random.default_rng([spec.seed, _TAG_CHUNK, chunk])
                sample = _sample(rng, spec, params, n)
                logit = bias + _logit(sample, params)
                p = _sigmoid(logit)
                labels = (rng.random(n) < p).astype(np.int8)
                # log loss from the logit: softplus(x) - y * x, stable for any x
                loss_sum += float(np.sum(np.logaddexp(0.0, logit) - labels * logit))
                probs[done : done + n] = p
                labels_all[done : done + n] = labels
                target = None
                if spec.target is not None:
                    clean = TARGET_SCALE * logit
                    noise = np.random.default_rng([spec.seed, _TAG_TARGET, chunk]).normal(0.0, spec.target_noise, n)
                    target = clean + noise
                    signal += [n, clean.sum(), np.square(clean).sum()]
                writer.write_table(_table(spec, sample, labels, schema, target), row_group_size=n)
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
