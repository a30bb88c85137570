"""fastText's side of the text benchmark (benchmarks/text.py): one training, or the scoring of a saved model.

Each function runs in a fresh process of its own (see ``run_fasttext`` in text.py), so this module imports only
what fastText needs: a spawned process starts in a fraction of a second instead of importing torch.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # imported as ``benchmarks.fasttext_runs`` or, from text.py run as a script, as ``fasttext_runs``
    from benchmarks.common import timer
except ImportError:  # pragma: no cover - depends on how the file is run
    from common import timer  # type: ignore[no-redef]


def train(path: Path, params: dict[str, Any], saved: Path, texts: list[str]) -> tuple[float, list[str], str | None]:
    """Train on ``path`` and write the model to ``saved`` (timed together, as shoal's fit writes its bundle);
    return (seconds, the top label of each of ``texts``, None) or (0, [], the error) when fastText diverged."""
    import fasttext

    try:
        with quiet_stderr(), timer() as t:
            model = fasttext.train_supervised(str(path), **params)
            model.save_model(str(saved))
    except RuntimeError as err:  # "Encountered NaN"
        return 0.0, [], str(err)
    labels, _ = model.predict(texts) if texts else ([], None)
    return t.seconds, [lab[0] for lab in labels], None


def score(saved: Path, texts: list[str], labels: list[str], infer_batch: int,
          latency_rows: int) -> tuple[float, float, np.ndarray]:
    """The saved model's rows/s in batches of ``infer_batch``, its median one-text latency in microseconds, and
    its class probabilities for ``texts`` (columns in the order of ``labels``)."""
    import fasttext

    model = fasttext.load_model(str(saved))
    index = {lab: i for i, lab in enumerate(labels)}
    with timer() as ti:
        got_labels, got_probs = [], []
        for s in range(0, len(texts), infer_batch):
            lab, pr = model.predict(texts[s:s + infer_batch], k=len(labels))
            got_labels += lab
            got_probs += pr
    p = np.zeros((len(texts), len(labels)))
    for i, (labs, prs) in enumerate(zip(got_labels, got_probs, strict=True)):
        for lab, pr in zip(labs, prs, strict=True):
            p[i, index[lab]] = pr
    p = np.clip(p, 0, 1)
    p /= np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    latencies = []
    for text in texts[:latency_rows]:
        start = time.perf_counter()
        model.predict(text)
        latencies.append(time.perf_counter() - start)
    return len(texts) / ti.seconds, statistics.median(latencies) * 1e6, p


@contextlib.contextmanager
def quiet_stderr() -> Any:
    """fastText prints its progress to the C stderr; keep the benchmark output readable."""
    fd = 2  # the C library's stderr (sys.stderr may be replaced, e.g. under pytest)
    saved = os.dup(fd)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
