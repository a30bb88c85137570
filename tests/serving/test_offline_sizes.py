"""``shoal predict`` times the backends (``--backend auto``) at the batches it will score: its chunk, or a small
file's rows rounded up to a power of two (300 long texts were timed at 1,024 rows: 48 s for a 10 s file)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoal.serving import offline


def _csv(path: Path, rows: int) -> Path:
    path.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(rows)), encoding="utf-8")
    return path


def test_small_files_are_timed_at_their_rows(tmp_path: Path) -> None:
    assert offline._batch_size(_csv(tmp_path / "a.csv", 299), 65_536) == 512  # 299 rows + header + last newline
    assert offline._batch_size(_csv(tmp_path / "b.csv", 5), 65_536) == 8
    assert offline._batch_size(_csv(tmp_path / "c.csv", 5), 4) == 4  # never above the chunk
    pq.write_table(pa.table({"x": list(range(100))}), tmp_path / "d.parquet")
    assert offline._batch_size(tmp_path / "d.parquet", 65_536) == 128
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress(b"x,y\n1,0\n"))  # compressed: lines are not rows
    assert offline._batch_size(tmp_path / "e.csv.gz", 65_536) == 65_536
    (tmp_path / "parts").mkdir()
    assert offline._batch_size(tmp_path / "parts", 65_536) == 65_536


def test_predict_file_asks_for_that_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import pandas as pd

    import shoal

    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    frame = pd.DataFrame({"x": x, "y": (x > 0).astype(int)})
    shoal.fit(frame, label="y", home=tmp_path / "home", model="logistic", train__epochs=1, train__pictures=False)
    data = tmp_path / "score.csv"
    frame.head(50).to_csv(data, index=False)
    asked: list[Any] = []
    real = offline.select_end_to_end

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["batch_sizes"])
        return real(*args, **kwargs)

    monkeypatch.setattr(offline, "select_end_to_end", spy)
    summary = offline.predict_file("latest", data, tmp_path / "out.csv", home=tmp_path / "home")
    assert asked == [(64,)] and summary.rows_predicted == 50
