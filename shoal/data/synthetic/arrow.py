"""A chunk as an Arrow table: ranks become id strings, NaN becomes null, without a Python loop per row.

The string columns are assembled from raw buffers (offsets, bytes, validity bitmap) with numpy: formatting
millions of ``"s{j}_" + 6 hex digits`` ids one by one in Python would dominate the generator's run time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shoal.data.synthetic.ids import _ID_HEX, _ID_MASK, _U64, _id_codes
from shoal.data.synthetic.sampling import _Sample
from shoal.data.synthetic.spec import SynthSpec

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _string_array(prefix: bytes, codes: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Arrow strings ``prefix + 6 hex digits`` for each code, null where not ``valid`` (no Python loop)."""
    n = codes.shape[0]
    width = len(prefix) + _ID_HEX
    shifts = np.arange(_ID_HEX - 1, -1, -1, dtype=np.uint64) * _U64(4)
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, len(prefix) :] = _HEX[((codes[:, None] >> shifts[None, :]) & _U64(0xF)).astype(np.intp)]
    lengths = np.where(valid, width, 0)
    return _from_parts(buf[valid].ravel(), lengths, valid)


def _list_array(prefix: bytes, codes: np.ndarray, length: np.ndarray) -> pa.Array:
    """Arrow strings of ``"|"``-joined ids: the first ``length[i]`` codes of row ``i`` (null when 0)."""
    n, m = codes.shape
    width = len(prefix) + _ID_HEX + 1  # id + separator
    shifts = np.arange(_ID_HEX - 1, -1, -1, dtype=np.uint64) * _U64(4)
    safe = np.where(codes > _U64(_ID_MASK), _U64(0), codes)
    buf = np.empty((n, m, width), dtype=np.uint8)
    buf[:, :, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, :, len(prefix) : -1] = _HEX[((safe[:, :, None] >> shifts) & _U64(0xF)).astype(np.intp)]
    buf[:, :, -1] = ord("|")
    valid = length > 0
    lengths = np.where(valid, length * width - 1, 0)
    keep = np.arange(m * width)[None, :] < lengths[:, None]
    return _from_parts(buf.reshape(n, m * width)[keep], lengths, valid)


def _from_parts(data: np.ndarray, lengths: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A string array from its concatenated bytes, per-row byte lengths and validity."""
    n = lengths.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int32)  # chunk_rows <= 10M keeps a chunk's bytes < 2 GiB
    np.cumsum(lengths, out=offsets[1:])
    null_count = int(n - np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data)), bitmap, null_count
    )


def _schema(spec: SynthSpec) -> pa.Schema:
    """``label`` or the task names (int8), ``d0..`` (float64), ``s0..`` (string), then the numeric target."""
    cols = [pa.field(name, pa.int8()) for name in spec.label_names]
    cols += [pa.field(f"d{k}", pa.float64()) for k in range(spec.dense)]
    cols += [pa.field(f"s{j}", pa.string()) for j in range(spec.sparse)]
    if spec.target is not None:
        cols.append(pa.field(spec.target, pa.float64()))
    return pa.schema(cols)


def _table(spec: SynthSpec, sample: _Sample, labels: np.ndarray, schema: pa.Schema,
           target: np.ndarray | None = None) -> pa.Table:
    """The chunk's rows with their labels (shape ``(T, n)``: one row per task) and numeric target, as written."""
    arrays: list[pa.Array] = [pa.array(task_labels, type=pa.int8()) for task_labels in labels]
    for k in range(spec.dense):
        col = sample.dense[:, k]
        arrays.append(pa.array(col, type=pa.float64(), mask=np.isnan(col)))
    for j in range(spec.sparse - 1):
        r = sample.ranks[:, j]
        arrays.append(_string_array(f"s{j}_".encode(), _id_codes(j, r), r > 0))
    last = spec.sparse - 1
    arrays.append(_list_array(f"s{last}_".encode(), sample.list_codes, sample.list_len))
    if target is not None:
        arrays.append(pa.array(target, type=pa.float64()))
    return pa.Table.from_arrays(arrays, schema=schema)
