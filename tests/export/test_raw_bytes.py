"""Ids packed as bytes + lengths (:mod:`shoal.export.raw_bytes`): trimmed as ``str.strip()`` trims, by the compiled
pass or by numpy and pyarrow alike, whatever the nulls, slices, widths and whitespace."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.export import raw_bytes as rb

SPACES = " \t\n\x0b\x1c\x85\xa0\u1680\u2000\u2028\u3000"
ids = st.one_of(st.none(), st.text(alphabet=SPACES + "ab|é中🙂", max_size=8))
NUMPY = {"_copy_kernel": lambda: None, "_trim_kernel": lambda: None}  # the paths without numba


def _arrays(values: list[str | None], start: int) -> list[pa.Array]:
    """The values, repeated to enough ids for the compiled pass, as a plain array, a slice of one, and an array
    whose nulls hold bytes."""
    values = values * (rb.COMPILED_FROM // len(values) + 1)
    arr = pa.array(values, pa.string())
    holed = pc.if_else(pa.array([v is None for v in values]), pa.scalar(None, pa.string()),
                       pa.array([" xyz" if v is None else v for v in values]))
    return [arr, arr.slice(min(start, len(values))), holed]


@settings(max_examples=80, deadline=None)
@given(st.lists(ids, min_size=1, max_size=12), st.integers(0, 3))
def test_trimmed_equals_utf8_trim_whitespace(values: list[str | None], start: int) -> None:
    arr = pa.array(values, pa.string()).slice(min(start, len(values)))
    assert rb._trimmed(arr).to_pylist() == pc.utf8_trim_whitespace(arr).to_pylist()


def test_trimmed_skips_ids_that_need_no_trim() -> None:
    arr = pa.array(["s0_2f9032", "a b", None, "", "x-é-x"])
    assert rb._trimmed(arr) is arr
    assert rb._trimmed(pa.array(["a", "b "])).to_pylist() == ["a", "b"]


@settings(max_examples=80, deadline=None)
@given(st.lists(ids, min_size=1, max_size=12), st.integers(0, 3), st.sampled_from([None, 40]))
def test_trimmed_matrix_packs_each_id_stripped(values: list[str | None], start: int, width: int | None) -> None:
    """Compiled (ASCII whitespace cut in the pass; a multi-byte edge sends the batch to pyarrow) or not: each id's
    ``str.strip()`` bytes, left-aligned, zeros after; a null or blank id has length 0."""
    for arr in _arrays(values, start):
        cells = arr.to_pylist()
        want = [b"" if c is None else c.strip().encode("utf-8") for c in cells]
        compiled = rb.trimmed_matrix(arr, width, ["u"], len(arr))
        with mock.patch.multiple(rb, **NUMPY):
            numpy = rb.trimmed_matrix(arr, width, ["u"], len(arr))
        for out, lengths in (compiled, numpy):
            assert lengths.dtype == np.int64 and lengths.tolist() == [len(b) for b in want]
            assert out.shape == (len(want), width or max([1, *map(len, want)]))
            assert [bytes(row) for row in out] == [b.ljust(out.shape[1], b"\0") for b in want]


def test_trimmed_matrix_names_the_feature_of_a_too_long_id() -> None:
    n = rb.COMPILED_FROM  # two features of n ids each, one of v's 5 bytes once trimmed
    arr = pa.array(["a"] * (n + 1) + ["  ccccc  "] + ["d"] * (n - 2))
    assert rb.trimmed_matrix(arr, 5, ["u", "v"], n)[1].max() == 5
    refused = "an id of 'v' is 5 bytes long; this raw export reads at most 4 bytes per id"
    with pytest.raises(ValueError, match=refused):
        rb.trimmed_matrix(arr, 4, ["u", "v"], n)
    with mock.patch.multiple(rb, **NUMPY), pytest.raises(ValueError, match=refused):
        rb.trimmed_matrix(arr, 4, ["u", "v"], n)


def test_few_ids_take_numpy() -> None:
    """Below COMPILED_FROM ids the compiled loops are not even asked for (no numba import for a small request)."""
    with mock.patch.multiple(rb, _copy_kernel=mock.Mock(), _trim_kernel=mock.Mock()):
        few = pa.array([" a", "bc", None] * 3)
        assert rb.trimmed_matrix(few, 4, ["u"], 9)[1].tolist() == [1, 2, 0] * 3
        assert rb.bytes_matrix(few, 4, "u")[1].tolist() == [2, 2, 0] * 3
        rb._copy_kernel.assert_not_called()
        rb._trim_kernel.assert_not_called()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=9)), min_size=1, max_size=30), st.integers(0, 3),
       st.sampled_from([None, 40]))
def test_packing_compiled_or_in_numpy_gives_the_same_bytes(values: list[str | None], start: int,
                                                           width: int | None) -> None:
    for arr in _arrays(values, start):
        compiled = rb.bytes_matrix(arr, width, "u")
        with mock.patch.multiple(rb, **NUMPY):
            numpy = rb.bytes_matrix(arr, width, "u")
        for c, n in zip(compiled, numpy, strict=True):
            np.testing.assert_array_equal(c, n)
