"""The table path of :func:`~shoal.export.raw_feed.raw_feed`, piece by piece: lists split, trimmed and their
empty ids dropped; numbers read as one block (ids packed: :mod:`tests.export.test_raw_bytes`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.export import raw_feed as rf

SPACES = " \t\n\x0b\x1c\x85\xa0\u1680\u2000\u2028\u3000"
ids = st.one_of(st.none(), st.text(alphabet=SPACES + "ab|é中🙂", max_size=8))


@settings(max_examples=80, deadline=None)
@given(st.lists(ids, min_size=1, max_size=12), st.sampled_from(["|", " ", "ab"]), st.sampled_from([None, 40]))
def test_split_ids_are_the_cells_split_trimmed_and_kept_when_not_empty(cells: list[str | None], separator: str,
                                                                       width: int | None) -> None:
    col = pa.chunked_array([pa.array(cells[:2], pa.string()), pa.array(cells[2:], pa.string())])
    data, lengths, counts = rf._split_ids(col, {"column": "t", "name": "t", "separator": separator}, width)
    kept = [[t.strip().encode("utf-8") for t in (c or "").split(separator) if t.strip()] for c in cells]
    assert counts.dtype == np.int64 and counts.tolist() == [len(k) for k in kept]
    flat = [b for k in kept for b in k]
    assert lengths.tolist() == [len(b) for b in flat]
    assert [bytes(row[:n]) for row, n in zip(data, lengths, strict=True)] == flat
    assert data.shape[1] == (width or max([1, *map(len, flat)]))


def test_numbers_read_floats_and_integers_as_one_block() -> None:
    cols = [pa.chunked_array([pa.array([1.5, None, -2.0], pa.float64())]),
            pa.chunked_array([pa.array([0.25, 3.0], pa.float32()), pa.array([None], pa.float32())]),
            pa.chunked_array([pa.array([7, None, -3], pa.int64())])]
    feed: dict[str, np.ndarray] = {}
    rf._numbers(feed, [({"inputs": {"value": f"d{k}"}, "column": f"d{k}"}, c) for k, c in enumerate(cols)], 3)
    np.testing.assert_array_equal(feed["d0"], np.array([1.5, np.nan, -2.0], np.float32))
    np.testing.assert_array_equal(feed["d1"], np.array([0.25, 3.0, np.nan], np.float32))
    np.testing.assert_array_equal(feed["d2"], np.array([7, np.nan, -3], np.float32))
    assert all(feed[f"d{k}"].dtype == np.float32 for k in range(3))


@pytest.mark.parametrize(("column", "error"), [
    (pa.array([1.0, float("inf")]), "row 1, column 'x': inf is infinite or beyond float32's range"),
    (pa.array([1e39, 0.0]), "row 0, column 'x': 1e\\+39 is infinite"),
    (pa.array([2**60 + 1, 0]), "(?i)integer value .* not in range|would lose"),  # pyarrow refuses the lossy cast
])
def test_numbers_refuse_what_float32_cannot_hold(column: pa.Array, error: str) -> None:
    with pytest.raises((ValueError, pa.ArrowInvalid), match=error):
        rf._numbers({}, [({"inputs": {"value": "x"}, "column": "x"}, pa.chunked_array([column]))], 2)
