"""The shape of a model's inputs, from the config alone or from the first chunk of its training file.

The config fixes most of it: the dense width (one value and one missing flag per dense feature), the table sizes
(buckets), the outputs (1 logit for a binary label). What only the data knows is measured on the first chunk
when the file is there, else assumed and said so in :attr:`InputShape.notes`:

* ids per row of a list feature (``separator``) or a text bag (its n-grams);
* the distinct rows a batch touches (popular ids repeat: a Zipf log touches far fewer rows than it looks up);
* the padded byte length of a ``tokens: bytes`` text (a batch is padded to its longest row);
* the bins of a binned dense feature, and the classes of a multiclass label.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shoal.config import RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.features.media import MediaInput
from shoal.data.readers import BadRowSink
from shoal.data.stream import chunks

__all__ = ["ASSUMED_IDS_PER_LIST", "ASSUMED_TEXT_BYTES", "InputShape", "input_shape"]

log = logging.getLogger(__name__)

ASSUMED_IDS_PER_LIST = 3.0  # ids in a list cell when no data says otherwise
ASSUMED_TEXT_BYTES = 200.0  # bytes of a text cell when no data says otherwise
ROW_OVERHEAD_BYTES = 4 + 8  # an encoded row's label (float32) and line number (int64)


@dataclass(frozen=True)
class InputShape:
    """What a model of ``config`` is fed, per row.

    ``ids_per_row[k]``: mean ids of input k; ``unique_fraction[k]``: distinct rows / ids in a batch of
    ``batch`` rows (1.0: every id its own row, the worst case); ``seq_len``: the mean padded length of the
    byte sequences; ``rows``: training rows (None: unknown).
    """

    dense_dim: int
    buckets: list[int]
    outputs: int
    sequences: list[int]
    ids_per_row: list[float]
    unique_fraction: list[float]
    seq_len: float
    batch: int
    rows: int | None = None
    read_rows: int = 0  # rows the reader decodes at once beyond a chunk (a Parquet row group), 0: a chunk
    measured: bool = False
    notes: list[str] = field(default_factory=list)
    media: list[MediaInput] = field(default_factory=list)  # image and audio blocks at the end of the dense input
    # the encoded first chunk when read: the rows a calibrated plan times its steps on (:mod:`shoal.plan.sparse_step`)
    sample: Batch | None = field(default=None, repr=False, compare=False)

    @property
    def encoded_bytes_per_row(self) -> float:
        """Bytes of one encoded row held in memory: dense values, ids (int64), the offsets of jagged inputs."""
        jagged = sum(1 for n in self.ids_per_row if n != 1.0)
        return 4 * self.dense_dim + 8 * sum(self.ids_per_row) + 8 * jagged + ROW_OVERHEAD_BYTES


def _unique_fraction(ids: np.ndarray, offsets: np.ndarray, batch: int) -> float:
    """Distinct ids / ids over the consecutive batches of ``batch`` rows in one input (at most 8 batches)."""
    rows = len(offsets) - 1
    if rows == 0 or len(ids) == 0:
        return 1.0
    fractions = []
    for start in range(0, max(rows - batch, 0) + 1, max(batch, 1)):
        part = ids[offsets[start]:offsets[min(start + batch, rows)]]
        if len(part):
            fractions.append(len(np.unique(part)) / len(part))
        if len(fractions) == 8:
            break
    return float(np.mean(fractions)) if fractions else 1.0


def _padded_length(offsets: np.ndarray, batch: int) -> float:
    lengths = np.diff(offsets)
    maxima = [lengths[s:s + batch].max() for s in range(0, len(lengths), max(batch, 1)) if len(lengths[s:s + batch])]
    return float(np.mean(maxima)) if maxima else 1.0


def _first_chunk(config: RunConfig, encoder: Encoder) -> Batch | None:
    path = Path(config.data.train)
    if not path.is_file():
        return None
    sink = BadRowSink("count")
    first = next(iter(chunks(path, config.data, encoder.columns(), sink)), None)
    if first is None:
        return None
    encoder.fit([first], sink)
    if encoder.needs_classes:
        encoder.fit_classes([first])
    return encoder.encode(first, sink)


def _file_rows(config: RunConfig) -> tuple[int | None, int]:
    """(training rows, the largest row group) when the file's metadata says so cheaply (Parquet), else (None, 0)."""
    path = Path(config.data.train)
    if path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        rows = int(meta.num_rows)
        group = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
        return (round(rows * (1 - config.data.valid_fraction)) if config.data.holds_out else rows), group
    return None, 0


def input_shape(config: RunConfig, batch: int, rows: int | None = None, read_data: bool = True) -> InputShape:
    """The inputs of ``config``'s model for batches of ``batch`` rows (one process's share of a step).

    With ``read_data`` and the training file present, only its first chunk is read (the encoder fitted on it);
    ``rows`` (the training rows, for epoch time) defaults to the file's row count when its metadata gives it.
    """
    encoder = Encoder(config.features, config.label)
    notes: list[str] = []
    sample = _first_chunk(config, encoder) if read_data else None
    n_inputs = len(encoder.sparse_features) + len(encoder.text_features)
    lists = [f.separator is not None for f in encoder.sparse_features] + [True] * len(encoder.text_features)
    if sample is not None and len(sample):
        ids_per_row = [len(i) / len(sample) for i in sample.ids]
        unique = [_unique_fraction(i, o, batch) for i, o in zip(sample.ids, sample.offsets, strict=True)]
        seqs = encoder.sequence_slots
        seq_len = float(np.mean([_padded_length(sample.offsets[k], batch) for k in seqs])) if seqs else 0.0
        buckets, outputs = encoder.buckets, encoder.outputs
        notes.append(f"ids per row and distinct rows per batch measured on the first {len(sample):,} rows of "
                     f"{config.data.train}")
    else:
        text_ids = [ASSUMED_TEXT_BYTES if f.sequence else ASSUMED_TEXT_BYTES * (f.ngram_max - f.ngram_min + 1)
                    for f in encoder.text_features]
        ids_per_row = [ASSUMED_IDS_PER_LIST if f.separator else 1.0 for f in encoder.sparse_features] + text_ids
        ids_per_row += [1.0] * len(encoder.binned_features)
        unique = [1.0] * len(ids_per_row)
        seq_len = ASSUMED_TEXT_BYTES if encoder.sequence_slots else 0.0
        buckets = ([f.buckets for f in encoder.sparse_features] + [f.buckets for f in encoder.text_features]
                   + [f.bins + 1 for f in encoder.binned_features])
        outputs = max(encoder.outputs, len(config.label.classes or [])) if encoder.multiclass else 1
        if encoder.multiclass and not config.label.classes:
            outputs = 2
            notes.append("multiclass label without classes in the config: 2 outputs assumed")
        if any(lists[:n_inputs]):
            notes.append(f"no data read: {ASSUMED_IDS_PER_LIST:g} ids per list cell and {ASSUMED_TEXT_BYTES:g} "
                         "bytes per text assumed")
        notes.append("no data read: every id assumed to touch its own row (the worst case for updates)")
    # a batch cannot touch more rows than a table holds
    unique = [min(u, buckets[k] / max(n * batch, 1e-9)) for k, (u, n) in enumerate(zip(unique, ids_per_row,
                                                                                      strict=True))]
    if any(m.kind == "audio" for m in encoder.media_inputs):
        notes.append("audio: the log-mel spectrogram is computed once a row in the first pass (encoding), not in a "
                     "step; the first pass is not in the epoch time")
    file_rows, group = _file_rows(config)
    return InputShape(dense_dim=encoder.dense_dim, buckets=list(buckets), outputs=outputs,
                      sequences=list(encoder.sequence_slots), ids_per_row=ids_per_row, unique_fraction=unique,
                      seq_len=seq_len, batch=batch, rows=rows if rows is not None else file_rows,
                      read_rows=group, measured=sample is not None, notes=notes, media=encoder.media_inputs,
                      sample=sample if sample is not None and len(sample) else None)
