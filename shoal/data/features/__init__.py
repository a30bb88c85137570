"""Feature columns, one class per feature kind, and the one place that picks the class for a feature.

==========  ==========================  =============================================================
kind        config (:mod:`shoal.config`)  column: what it encodes
==========  ==========================  =============================================================
dense       :class:`DenseFeature`       :class:`DenseColumn`: the value, a missing flag, a quantile bin
sparse      :class:`SparseFeature`      :class:`SparseColumn`: hashed or vocabulary ids, one or a list per row
text        :class:`TextFeature`        :class:`TextColumn`: hashed n-grams, or the bytes in order
image       :class:`ImageFeature`       :class:`ImageColumn`: pixels (C, H, W), in the dense part of a batch
audio       :class:`AudioFeature`       :class:`AudioColumn`: a log-mel spectrogram (1, M, T), likewise
time        :class:`TimeFeature`        :class:`TimeColumn`: calendar parts as ids, and an age in days (dense)
==========  ==========================  =============================================================

A new kind is a config class, a column class here, and a line in :func:`column_for` and :data:`COLUMNS`.
"""

from __future__ import annotations

from typing import Any

from shoal.config import (
    AudioFeature,
    DenseFeature,
    FeatureConfig,
    ImageFeature,
    SparseFeature,
    TextFeature,
    TimeFeature,
)
from shoal.data.features.audio import AudioColumn
from shoal.data.features.base import FeatureColumn, IdColumn, Problems, as_strings
from shoal.data.features.dense import NUMBER, DenseColumn
from shoal.data.features.image import ImageColumn
from shoal.data.features.media import MediaColumn, MediaInput
from shoal.data.features.sparse import SparseColumn
from shoal.data.features.text import TextColumn
from shoal.data.features.time import TimeColumn

__all__ = ["COLUMNS", "NUMBER", "AudioColumn", "DenseColumn", "FeatureColumn", "IdColumn", "ImageColumn",
           "MediaColumn", "MediaInput", "Problems", "SparseColumn", "TextColumn", "TimeColumn", "as_strings",
           "column_for", "column_from_dict"]

COLUMNS: dict[str, type[FeatureColumn]] = {c.kind: c for c in (DenseColumn, SparseColumn, TextColumn, ImageColumn,
                                                                AudioColumn, TimeColumn)}


def column_for(f: FeatureConfig) -> FeatureColumn:
    """The column that encodes feature ``f``, by its config class."""
    if isinstance(f, DenseFeature):
        return DenseColumn.from_config(f)
    if isinstance(f, SparseFeature):
        return SparseColumn.from_config(f)
    if isinstance(f, TextFeature):
        return TextColumn.from_config(f)
    if isinstance(f, ImageFeature):
        return ImageColumn.from_config(f)
    if isinstance(f, AudioFeature):
        return AudioColumn.from_config(f)
    if isinstance(f, TimeFeature):
        return TimeColumn.from_config(f)
    raise TypeError(f"feature {f.name!r} of kind {f.kind!r} has no encoder column; "
                    "build it as DenseFeature, SparseFeature, TextFeature, ImageFeature, AudioFeature or TimeFeature")


def column_from_dict(d: dict[str, Any]) -> FeatureColumn:
    """The column a saved feature describes (:meth:`FeatureColumn.to_dict`), by its ``kind``."""
    kind = d.get("kind")
    if kind not in COLUMNS:
        raise ValueError(f"saved feature {d.get('name')!r} has kind {kind!r}; known kinds: {', '.join(COLUMNS)}")
    return COLUMNS[kind].from_dict(d)
