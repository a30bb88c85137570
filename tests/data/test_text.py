"""Raw text -> hashed n-gram bags: checked against a plain-Python reference, bytes-safe, vectorized or compiled."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.config import ConfigError, FeatureConfig, LabelConfig, parse_config
from shoal.data import text as text_module
from shoal.data.encoder import Encoder
from shoal.data.hashing import mix64
from shoal.data.readers import BadRowSink, Chunk
from shoal.data.text import text_bag

M64 = (1 << 64) - 1
PRIME = 0x100000001B3
WS = b" \t\n\r\x0b\x0c"


def _mix(x: int) -> int:
    return int(mix64(np.array([x], dtype=np.uint64))[0])


def reference_bag(text: bytes, buckets: int, max_bytes: int, n_min: int, n_max: int, words: int,
                  seed: int) -> list[int]:
    """The same bag, one byte and one word at a time (slow and obvious)."""
    b = text[:max_bytes]
    out = []
    for n in range(n_min, n_max + 1):
        for i in range(len(b) - n + 1):
            h = seed
            for byte in b[i:i + n]:
                h = ((h ^ byte) * PRIME) & M64
            out.append(_mix(h ^ n))
    if words:
        wseed = seed ^ 0x5BD1E995
        hashes = []
        for w in [w for w in bytes(c if c not in WS else 32 for c in b).split(b" ") if w]:
            h = 0
            for k, byte in enumerate(w):
                h = (h + _mix(byte ^ (k << 8) ^ wseed)) & M64
            hashes.append(h)
        out += [_mix(h ^ (1 << 40)) for h in hashes]
        for n in range(2, words + 1):
            for i in range(len(hashes) - n + 1):
                h = hashes[i]
                for j in range(1, n):
                    h = ((h * PRIME) & M64) ^ hashes[i + j]
                out.append(_mix(h ^ (n << 40)))
    ids = [x % (buckets - 1) + 1 for x in out]
    return sorted(ids) if ids else [0]


texts = st.lists(st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=30).map(str.encode)), max_size=12)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@settings(max_examples=60, deadline=None)
@given(rows=texts, n_min=st.integers(1, 3), extra=st.integers(0, 3), words=st.integers(0, 3),
       max_bytes=st.integers(1, 50))
def test_matches_reference(rows: list[bytes | None], n_min: int, extra: int, words: int, max_bytes: int,
                           compiled: bool) -> None:
    arr = pa.array(rows, pa.binary())
    ids, offsets, truncated = text_bag(arr, buckets=997, max_bytes=max_bytes, ngram_min=n_min,
                                       ngram_max=n_min + extra, word_ngrams=words, seed=12345, compiled=compiled)
    assert offsets[0] == 0 and len(offsets) == len(rows) + 1
    for i, row in enumerate(rows):
        got = sorted(ids[offsets[i]:offsets[i + 1]].tolist())
        assert got == reference_bag(row or b"", 997, max_bytes, n_min, n_min + extra, words, 12345)
    assert truncated == sum(1 for r in rows if r is not None and len(r) > max_bytes)


def test_the_compiled_loop_runs() -> None:
    """numba is a dependency: the default path is the compiled loop, not the numpy fallback."""
    assert text_module.bag_kernel.AVAILABLE and text_module.bag_kernel.kernel() is not None


def test_one_compiled_version_serves_every_input() -> None:
    """numba compiles a function once per kind of argument, and a read-only array (a memory-mapped Arrow
    file's buffers) is another kind than a writable one: neither may cost a second compilation at run time,
    e.g. after a server warmed up on a placeholder row."""
    kwargs = {"buckets": 101, "max_bytes": 64, "ngram_min": 2, "ngram_max": 3, "word_ngrams": 2, "seed": 3}
    for values in (pa.array([""]), pa.array([None], pa.string()), pa.array(["some text"]),
                   pa.array([b"bytes"], pa.large_binary()), pa.chunked_array([["a b"], ["c"]])):
        text_bag(values, **kwargs)
    data = np.frombuffer(b"read only", dtype=np.uint8)
    starts, lengths = np.array([0, 5]), np.array([4, 4])
    assert not data.flags.writeable
    kernel_kwargs = {"buckets": 101, "ngram_min": 2, "ngram_max": 3, "word_ngrams": 2, "seed": 3, "word_seed": 4}
    got = text_module.bag_kernel.bag_ids(data, starts, lengths, **kernel_kwargs)
    again = text_module.bag_kernel.bag_ids(data.copy(), starts, lengths, **kernel_kwargs)  # writable
    np.testing.assert_array_equal(got[0], again[0])
    assert len(text_module.bag_kernel.kernel().signatures) == 1


def test_where_numba_does_not_import_the_numpy_code_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    arr = pa.array(["a text, another", None, ""])
    kwargs = {"buckets": 101, "max_bytes": 64, "ngram_min": 2, "ngram_max": 3, "word_ngrams": 2, "seed": 3}
    want = text_bag(arr, **kwargs)
    monkeypatch.setattr(text_module.bag_kernel, "kernel", lambda: None)  # what it gives where numba fails to import
    got = text_bag(arr, **kwargs)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    with pytest.raises(RuntimeError, match="numba is not available"):
        text_module.bag_kernel.bag_ids(np.zeros(1, np.uint8), np.zeros(1), np.ones(1), buckets=101, ngram_min=1,
                                       ngram_max=1, word_ngrams=0, seed=0, word_seed=0)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=40).map(str.encode)),
                     max_size=20),
       start=st.integers(0, 3), n_min=st.integers(1, 4), extra=st.integers(0, 2), words=st.integers(0, 3),
       max_bytes=st.integers(1, 70), seed=st.integers(0, (1 << 64) - 1), large=st.booleans())
def test_compiled_ids_equal_the_numpy_ids_in_order(rows: list[bytes | None], start: int, n_min: int, extra: int,
                                                   words: int, max_bytes: int, seed: int, large: bool) -> None:
    """The compiled loop gives the numpy code's ids in the same order (not only the same bags), on a sliced
    array (Arrow offset), 64-bit offsets, and any 64-bit seed."""
    arr = pa.array(rows, pa.large_binary() if large else pa.binary()).slice(min(start, len(rows)))
    kwargs = {"buckets": 1_000_003, "max_bytes": max_bytes, "ngram_min": n_min, "ngram_max": n_min + extra,
              "word_ngrams": words, "seed": seed}
    got = text_bag(arr, **kwargs)
    want = text_bag(arr, **kwargs, compiled=False)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2] and got[0].dtype == want[0].dtype == np.int64


@settings(max_examples=40, deadline=None)
@given(rows=texts, block=st.integers(1, 5))
def test_blocks_of_rows_hash_as_one(rows: list[bytes | None], block: int) -> None:
    """text_bag hashes long columns in blocks of rows: the ids, offsets and truncation count are those of one pass."""
    arr = pa.array(rows, pa.binary())
    kwargs = {"buckets": 997, "max_bytes": 20, "ngram_min": 2, "ngram_max": 3, "word_ngrams": 2, "seed": 7}
    whole = text_bag(arr, **kwargs, compiled=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(text_module, "BAG_BLOCK_ROWS", block)
        blocked = text_bag(arr, **kwargs, compiled=False)
    np.testing.assert_array_equal(blocked[0], whole[0])
    np.testing.assert_array_equal(blocked[1], whole[1])
    assert blocked[2] == whole[2]


def test_invalid_utf8_is_just_bytes_and_strings_equal_their_bytes() -> None:
    bad = pa.array([b"\xff\xfe caf\xc3", b"\x80"], pa.binary())
    ids, offsets, _ = text_bag(bad, buckets=100, max_bytes=64, ngram_min=1, ngram_max=3, word_ngrams=2, seed=1)
    assert (ids >= 1).all() and (ids < 100).all() and offsets.tolist()[-1] == len(ids)
    s = pa.array(["héllo wörld"])
    b = pa.array(["héllo wörld".encode()], pa.binary())
    a1 = text_bag(s, buckets=100, max_bytes=64, ngram_min=1, ngram_max=3, word_ngrams=2, seed=1)
    a2 = text_bag(b, buckets=100, max_bytes=64, ngram_min=1, ngram_max=3, word_ngrams=2, seed=1)
    assert np.array_equal(a1[0], a2[0])


def test_no_lowercasing_and_order_matters() -> None:
    def bag(t: str) -> list[int]:
        ids, _, _ = text_bag(pa.array([t]), buckets=10**6, max_bytes=64, ngram_min=2, ngram_max=3,
                             word_ngrams=2, seed=7)
        return sorted(ids.tolist())

    assert bag("Good film") != bag("good film")
    assert bag("ab cd") != bag("cd ab")


def test_text_feature_in_the_encoder_and_config() -> None:
    enc = Encoder([FeatureConfig(name="t", kind="text", buckets=50, ngram_min=1, ngram_max=2, word_ngrams=1),
                   FeatureConfig(name="c", kind="sparse", buckets=10)], LabelConfig(column="y"))
    assert enc.buckets == [10, 50]  # sparse first, then text
    table = pa.table({"t": ["a b", None], "c": ["x", "y"], "y": ["1", "0"]})
    batch = enc.encode(Chunk(table, np.arange(1, 3), "mem"), BadRowSink("error"))
    # "a b": bytes a, " ", b; 2-grams "a ", " b"; words a, b -> 7 ids. A missing text -> the one id 0.
    assert batch.offsets[1].tolist() == [0, 7, 8] and batch.ids[1][7] == 0
    with pytest.raises(ConfigError, match="ngram_min 4 > ngram_max 2"):
        parse_config({"data": {"train": "x.csv"}, "label": {"column": "y"}, "model": {"name": "mlp"},
                      "features": [{"name": "t", "kind": "text", "ngram_min": 4, "ngram_max": 2}]})


def test_truncated_texts_are_counted_in_the_batch_and_the_run_summary(tmp_path) -> None:  # noqa: ANN001
    from shoal.training.loop import Trainer

    enc = Encoder([FeatureConfig(name="t", kind="text", buckets=50, max_bytes=5)], LabelConfig(column="y"))
    table = pa.table({"t": ["short", "longer text", None, "ünïc"], "y": ["1", "0", "1", "0"]})
    assert enc.encode(Chunk(table, np.arange(1, 5), "mem"), BadRowSink("error")).truncated == 2  # 11 and 6 bytes

    rows = ["text,label"] + [f"{'good' if i % 2 else 'bad'} {'x' * (i % 7)},{i % 2}" for i in range(200)]
    data = tmp_path / "t.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = parse_config({"data": {"train": str(data), "valid_fraction": 0.0}, "label": {"column": "label"},
                        "features": [{"name": "text", "kind": "text", "max_bytes": 6, "buckets": 1000}],
                        "model": {"name": "logistic"}, "train": {"epochs": 1}})
    expected = sum(1 for r in rows[1:] if len(r.rsplit(",", 1)[0].encode()) > 6)
    summary = Trainer(cfg, tmp_path / "run").fit().summary
    assert expected > 0 and summary["text_truncated_rows"] == expected


def test_text_bytes_are_the_bytes_in_order_and_count_truncation() -> None:
    from shoal.data.text import text_bytes

    ids, offsets, cut = text_bytes(pa.array(["ab", None, "", "xyz\u00e9", "hello"]), max_bytes=4)
    rows = [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(5)]
    assert rows == [[98, 99], [0], [0], [121, 122, 123, 0xC3 + 1], [105, 102, 109, 109]]
    assert cut == 2  # "xyz\u00e9" is 5 bytes, "hello" 5: both cut to 4 (mid-character is fine: bytes)
    ids, offsets, _ = text_bytes(pa.array([b"\xff\xfe"], pa.binary()), max_bytes=10)
    assert ids.tolist() == [256, 255]
