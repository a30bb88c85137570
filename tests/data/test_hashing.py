"""Tests for the stable id hashing (``shoal.data.hashing``).

The hash decides which embedding row every id uses: a saved model is only usable while the hash is
unchanged, so the exact values are pinned here and checked against an independent pure-Python reference.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.data import hash_kernel
from shoal.data.hashing import bucketize, hash_strings, seed_for

M64 = (1 << 64) - 1
VALUES = ["", "a", "hello", "ü", "12345", "click_id_987654321"]


# -- an independent reference, from the definition: two polynomial hashes of the UTF-8 bytes mod 2^31 - 1 (the
# seed's offsets and the length weighted in), joined into 62 bits, then SplitMix64's finalizer -------------------
P = 2**31 - 1


def ref_hash(s: str, seed: int = 0) -> int:
    data = s.encode("utf-8")
    offsets = ((seed * 0x9E3779B1 + 1) % P, ((seed >> 31) * 0x85EBCA77 + (seed & 0x7FFFFFFF) + 2) % P)
    halves = [(offset + len(data) * weight + sum(b * pow(base, i, P) for i, b in enumerate(data))) % P
              for offset, weight, base in zip(offsets, (0x27D4EB2F, 0x165667B1), (0x5BD1E995, 0x1B873593), strict=True)]
    h = halves[0] << 31 | halves[1]
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


def ref_seed(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def as_ints(a: np.ndarray) -> list[int]:
    return [int(x) for x in a]


# -- golden values: a change here silently breaks every saved model -------------------------------------------
GOLDEN_SEED0 = [14061298673637463162, 8917639792515013466, 848920169042202754, 14492485637990578579,
                7441769500047275962, 3533127457734490159]
GOLDEN_C1 = [11305188254266175419, 17469095811565067086, 2018839877757619885, 11137373677067361,
             11637567258826589912, 2268251248133195786]


def test_seed_for_golden() -> None:
    assert seed_for("c1") == 622199369613600857
    assert seed_for("user_id") == 9278023968149642234
    assert seed_for("") == 0xCBF29CE484222325  # the FNV offset basis
    for name in ("c1", "user_id", "", "ünïcode"):
        assert seed_for(name) == ref_seed(name)


def test_hash_strings_golden() -> None:
    h = hash_strings(pa.array(VALUES), seed=0)
    assert h.dtype == np.uint64
    assert as_ints(h) == GOLDEN_SEED0
    seed = seed_for("c1") & 0xFFFFFFFF  # what the encoder uses for feature "c1"
    assert seed == 3041552473
    assert as_ints(hash_strings(pa.array(VALUES), seed=seed)) == GOLDEN_C1


def test_bucketize_golden() -> None:
    assert bucketize(np.array(GOLDEN_SEED0, dtype=np.uint64), 1000).tolist() == [311, 354, 938, 779, 5, 506]
    assert bucketize(np.array(GOLDEN_C1, dtype=np.uint64), 1000).tolist() == [620, 113, 2, 628, 804, 885]


def test_golden_values_match_reference() -> None:
    assert [ref_hash(v) for v in VALUES] == GOLDEN_SEED0
    assert [ref_hash(v, 3041552473) for v in VALUES] == GOLDEN_C1


def test_seed_changes_hash() -> None:
    a = hash_strings(pa.array(VALUES), seed=1)
    b = hash_strings(pa.array(VALUES), seed=2)
    assert not np.any(a == b)


def test_same_string_same_hash_regardless_of_neighbours() -> None:
    alone = hash_strings(pa.array(["hello"]))
    mixed = hash_strings(pa.array(["x", "hello", "a much longer neighbour", "hello"]))
    assert mixed[1] == alone[0] == mixed[3]


# -- vectorized paths against the reference -------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=20), min_size=1, max_size=30), st.integers(0, M64))
def test_ragged_matches_reference(values: list[str], seed: int) -> None:
    got = hash_strings(pa.array(values, pa.string()), seed)
    assert as_ints(got) == [ref_hash(v, seed) for v in values]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 12).flatmap(
    lambda n: st.lists(st.text(min_size=n, max_size=n, alphabet=st.characters(max_codepoint=127)),
                       min_size=1, max_size=30)),
    st.integers(0, 0xFFFFFFFF))
def test_uniform_length_matches_reference(values: list[str], seed: int) -> None:
    # ASCII strings of one length: equal byte lengths, the vectorized fast path
    got = hash_strings(pa.array(values, pa.string()), seed)
    assert as_ints(got) == [ref_hash(v, seed) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=30), st.data())
def test_sliced_array_hashes_like_unsliced(values: list[str], data: st.DataObject) -> None:
    arr = pa.array(values, pa.string())
    start = data.draw(st.integers(0, len(values) - 1))
    length = data.draw(st.integers(0, len(values) - start))
    sliced = arr.slice(start, length)
    assert sliced.offset == start
    expected = hash_strings(pa.array(values[start:start + length], pa.string()), 7)
    assert as_ints(hash_strings(sliced, 7)) == as_ints(expected)
    assert as_ints(expected) == [ref_hash(v, 7) for v in values[start:start + length]]


def test_sliced_uniform_length() -> None:
    arr = pa.array(["aa", "bb", "cc", "dd", "ee"])
    assert as_ints(hash_strings(arr.slice(2, 2), 5)) == [ref_hash("cc", 5), ref_hash("dd", 5)]


def test_large_string_chunked_and_non_string_inputs() -> None:
    values = ["x", "yy", "", "zzz"]
    expected = [ref_hash(v, 3) for v in values]
    assert as_ints(hash_strings(pa.array(values, pa.large_string()), 3)) == expected
    assert as_ints(hash_strings(pa.chunked_array([values[:1], values[1:]], pa.string()), 3)) == expected
    # integers hash as their decimal text (a Parquet int column and a CSV column agree)
    assert as_ints(hash_strings(pa.array([7, 42, -1]), 3)) == [ref_hash(v, 3) for v in ("7", "42", "-1")]


def test_empty_inputs() -> None:
    assert hash_strings(pa.array([], pa.string())).shape == (0,)
    assert as_ints(hash_strings(pa.array(["", ""]))) == [ref_hash("")] * 2


def test_nulls_raise() -> None:
    with pytest.raises(ValueError, match="null"):
        hash_strings(pa.array(["a", None, "b"]))
    with pytest.raises(ValueError, match="null"):
        hash_strings(pa.array(["a", None, "b"]).slice(1, 2))


def test_sliced_without_nulls_in_window_is_fine() -> None:
    arr = pa.array([None, "a", "b"])
    assert as_ints(hash_strings(arr.slice(1, 2))) == [ref_hash("a"), ref_hash("b")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, M64), min_size=1, max_size=50), st.integers(2, 10**8))
def test_bucketize_range(hashes: list[int], buckets: int) -> None:
    ids = bucketize(np.array(hashes, dtype=np.uint64), buckets)
    assert ids.dtype == np.int64
    assert np.all(ids >= 1) and np.all(ids < buckets)  # 0 is reserved for missing
    assert ids.tolist() == [h % (buckets - 1) + 1 for h in hashes]


def test_bucketize_two_buckets_is_always_one() -> None:
    assert bucketize(hash_strings(pa.array(VALUES)), 2).tolist() == [1] * len(VALUES)


def test_buckets_spread() -> None:
    ids = bucketize(hash_strings(pa.array([f"id{i}" for i in range(20_000)])), 101)
    counts = np.bincount(ids, minlength=101)
    assert counts[0] == 0
    assert counts[1:].min() > 100 and counts[1:].max() < 300  # ~198 each


# -- the compiled loop against the numpy code it replaces (kept as the reference: compiled=False) -------------
needs_numba = pytest.mark.skipif(hash_kernel.kernel() is None, reason="numba is not available")


@needs_numba
@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.text(min_size=200, max_size=3000)), min_size=1, max_size=20),
       st.integers(0, M64), st.data())
def test_compiled_matches_numpy_reference(values: list[str], seed: int, data: st.DataObject) -> None:
    arr = pa.array(values, data.draw(st.sampled_from([pa.string(), pa.large_string()])))
    start = data.draw(st.integers(0, len(values) - 1))
    arr = arr.slice(start)
    compiled = hash_strings(arr, seed)
    assert as_ints(compiled) == as_ints(hash_strings(arr, seed, compiled=False))
    assert as_ints(compiled[:3]) == [ref_hash(v, seed) for v in values[start:start + 3]]


@needs_numba
def test_a_long_id_hashes_in_linear_time() -> None:
    # the numpy code takes one numpy call per byte of the longest id: over a second for 900 KB; the loop ~1 ms
    values = pa.array(["a", "x" * 900_000, "bb"])
    hash_strings(values)  # compiled (or loaded from the cache) outside the timing
    start = time.perf_counter()
    got = hash_strings(values, 11)
    assert time.perf_counter() - start < 0.1
    assert as_ints(got) == [ref_hash(v, 11) for v in ("a", "x" * 900_000, "bb")]
