"""The training data (``shoal.training.data``): the first pass, and the mini-batches of an epoch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from shoal.config import parse_config
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.split import HeldOutSplit, valid_mask
from shoal.training.callbacks import Callbacks
from shoal.training.data import FileRows, TrainingData


def _write(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    label = (rng.random(rows) < 0.3).astype(int)
    pacsv.write_csv(pa.table({"d0": rng.normal(size=rows) + label, "s0": [f"k{i % 7}" for i in range(rows)],
                              "label": label}), path)
    return path


def _config(train: Path, **data: object) -> dict[str, object]:
    return {
        "data": {"train": str(train), "valid_fraction": 0.25, "chunk_rows": 100, **data},
        "label": {"column": "label"},
        "features": [{"name": "d0", "kind": "dense"}, {"name": "s0", "kind": "sparse", "buckets": 64}],
        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [4], "top_mlp": [4]},
        "train": {"batch_size": 32, "seed": 11},
    }


class _Scans(Callbacks):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_scan(self, rows: int) -> None:
        self.seen.append(rows)


def test_the_first_pass_counts_splits_and_caches(tmp_path: Path) -> None:
    cfg = parse_config(_config(_write(tmp_path / "train.csv", 450)), source="test")
    scans = _Scans()
    data = TrainingData.scan(cfg, tmp_path, scans)
    s = data.summary
    lines = np.arange(2, 452)  # CSV: line 1 is the header
    held = valid_mask(lines, 0.25, 11)
    assert s["valid_rows"] == int(held.sum()) and s["train_rows"] == 450 - int(held.sum())
    assert s["train_base_rate"] == s["train_positives"] / s["train_rows"] and data.prior == s["train_base_rate"]
    assert scans.seen[-1] == 450 and len(data.chunk_spans) == 5  # 100-row chunks
    assert isinstance(data.train, FileRows) and data.train.cached is not None  # small: kept in memory
    assert data.valid is not None and data.valid.rows == s["valid_rows"]
    split_lines = HeldOutSplit(tmp_path).read().lines
    assert split_lines.tolist() == lines[held].tolist()
    assert sum(len(b) for b in data.eval_batches(data.valid)) == s["valid_rows"]


def _fake_rows(sizes: list[int]) -> list[Batch]:
    out, line = [], 0
    for n in sizes:
        out.append(Batch(dense=np.arange(line, line + n, dtype=np.float32)[:, None], ids=[], offsets=[],
                         label=np.zeros(n, dtype=np.float32), lines=np.arange(line, line + n)))
        line += n
    return out


class _Rows:
    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def chunks(self, epoch: int, skip: int) -> Iterator[tuple[int, Batch]]:
        yield from enumerate(self.batches[skip:], start=skip)

    def rows_in_step(self, index: int, batch: Batch) -> int:
        return len(batch)


def _data(tmp_path: Path, chunk_sizes: list[int]) -> TrainingData:
    """Training data whose chunks hold ``chunk_sizes`` rows (line numbers 0, 1, ... in order)."""
    cfg = parse_config(_config(tmp_path / "unused.csv"), source="test")
    encoder = Encoder(cfg.features, cfg.label)  # not used: the rows come encoded
    return TrainingData(cfg, encoder, _Rows(_fake_rows(chunk_sizes)), None, None, {}, [])


def test_an_epoch_shuffles_each_chunk_by_seed_epoch_and_chunk(tmp_path: Path) -> None:
    data = _data(tmp_path, [70, 40])
    epoch = list(data.minibatches(epoch=1, chunk=0, batch=0))
    assert [(ci, bi, len(mb)) for ci, bi, mb in epoch] == [(0, 0, 32), (0, 1, 32), (0, 2, 6), (1, 0, 32), (1, 1, 8)]
    order = np.random.default_rng([11, 1, 0]).permutation(70)
    assert np.concatenate([mb.lines for ci, _, mb in epoch if ci == 0]).tolist() == order.tolist()
    assert sorted(np.concatenate([mb.lines for ci, _, mb in epoch if ci == 1]).tolist()) == list(range(70, 110))
    other = list(data.minibatches(epoch=2, chunk=0, batch=0))
    assert other[0][2].lines.tolist() != epoch[0][2].lines.tolist()  # another epoch, another order


def test_a_resumed_epoch_continues_with_the_next_batch(tmp_path: Path) -> None:
    data = _data(tmp_path, [70, 40, 50])
    whole = [(ci, bi, mb.lines.tolist()) for ci, bi, mb in data.minibatches(0, 0, 0)]
    rest = [(ci, bi, mb.lines.tolist()) for ci, bi, mb in data.minibatches(0, chunk=1, batch=1)]
    assert rest == whole[4:]  # chunk 0 has batches 0-2, chunk 1 batch 0 was trained: from chunk 1 batch 1 on
