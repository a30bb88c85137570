"""Media benchmark: shoal's image and audio features against scikit-learn logistic regression, same splits.

    python benchmarks/media.py --json bench-media.json [--quick] [--data-dir ../shared/data]

Datasets:

* ``mnist``: ``mnist_test`` (the 10,000 MNIST test images, IDX gzip). The first ``--mnist-rows`` (10,000;
  ``--quick``: 2,000) are written as PNG files with a CSV of ``path,label``; the first 80 % train, the last
  20 % test (8,000 / 2,000 for the whole set). shoal reads the PNG files through an ``image`` feature.
* ``fsdd``: the Free Spoken Digit Dataset, its own ``train.csv`` / ``test.csv`` (``path,digit,speaker``; 8 kHz
  mono WAV); shoal reads the WAV files through an ``audio`` feature.

Systems:

* ``shoal``: ``shoal.train`` on the config of :func:`config` (image: the small ResNet, widths 16-32-64, shifts
  and rotations while training; audio: the log-mel CNN, widths 16-32-64, SpecAugment; an ``mlp`` head of 128),
  Adam 3e-3, batches of 64, up to 12 epochs (mnist) / 24 (fsdd) (``--quick``: 3 / 6), 10 % of the training
  rows held out for early stopping (patience 4), then ``shoal.evaluate_file`` on the test file.
* ``sklearn-logistic``: ``LogisticRegression`` on raw pixels scaled to [0, 1] (mnist), and on the mean and
  standard deviation over frames of the same log-mel spectrogram shoal computes (fsdd, 2 x 40 values: the
  "MFCC means" floor in its log-mel form), standardised; trained on all training rows.

Metrics (one JSON row each: ``{"bench", "dataset", "system", "metric", "value"}``): ``accuracy``, ``macro_f1``
on the test rows; ``train_s`` (wall seconds from files to a model: shoal includes decoding the files in its
first pass and writing the bundle, the peer includes decoding its features); ``infer_rows_per_s`` (test rows
from raw files to class probabilities, batches of 256). Torch uses ``--threads`` threads (2).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, row, timer, write_json  # noqa: E402

BENCH = "media"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip): ubyte images (N, H, W) or labels (N,)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_mnist(src: Path, out: Path, rows: int) -> tuple[Path, Path]:
    """The first ``rows`` images as PNG files and two CSVs (path,label): the first 80 % and the last 20 %."""
    from PIL import Image

    images = read_idx(src / "t10k-images-idx3-ubyte.gz")[:rows]
    labels = read_idx(src / "t10k-labels-idx1-ubyte.gz")[:rows]
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(out / "images" / f"{i:05d}.png")
        lines.append(f"images/{i:05d}.png,{label}")
    cut = int(0.8 * rows)
    train, test = out / "train.csv", out / "test.csv"
    train.write_text("path,label\n" + "\n".join(lines[:cut]) + "\n", encoding="utf-8")
    test.write_text("path,label\n" + "\n".join(lines[cut:]) + "\n", encoding="utf-8")
    return train, test


def config(name: str, train: Path, label: str, feature: dict[str, Any], epochs: int, threads: int) -> Any:
    from shoal.config import parse_config

    return parse_config({
        "name": name,
        "data": {"train": str(train), "valid_fraction": 0.1},
        "label": {"column": label, "kind": "multiclass"},
        "features": [feature],
        "model": {"name": "mlp", "hidden": [128]},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 3e-3, "early_stopping_patience": 4, "threads": threads,
                  "pictures": False, "cache_mb": 512},
    })


def run_shoal(dataset: str, cfg: Any, test: Path, home: Path) -> list[dict[str, Any]]:
    import shoal
    from shoal.data.readers import BadRowSink
    from shoal.data.stream import chunks

    with timer() as t:
        record = shoal.train(cfg, home=home)
    report = shoal.evaluate_file(record.run_id, test, home=home)
    bundle = shoal.load(record.run_id, home=home)
    start = time.perf_counter()
    rows = 0
    read = cfg.data.model_copy(update={"chunk_rows": 256})
    for chunk in chunks(test, read, bundle.encoder.columns(with_label=False), BadRowSink("error")):
        batch = bundle.encoder.encode(chunk, BadRowSink("error"), with_label=False)
        bundle.predict_proba(batch)
        rows += len(batch)
    infer = rows / (time.perf_counter() - start)
    return [row(BENCH, dataset, "shoal", "accuracy", report["accuracy"]),
            row(BENCH, dataset, "shoal", "macro_f1", report["macro_f1"]),
            row(BENCH, dataset, "shoal", "train_s", t.seconds),
            row(BENCH, dataset, "shoal", "infer_rows_per_s", infer)]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pixels(csv_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    rows = _read_csv(csv_path)
    x = np.stack([np.asarray(Image.open(csv_path.parent / r["path"]).convert("L"), np.float32).ravel() / 255
                  for r in rows])
    return x, np.array([int(r["label"]) for r in rows])


def logmel_stats(csv_path: Path, feature: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from shoal.config import FeatureConfig
    from shoal.data.features.audio import AudioColumn

    col = AudioColumn.from_config(FeatureConfig(**feature))  # type: ignore[arg-type]
    rows = _read_csv(csv_path)
    waves = np.stack([col.decode((csv_path.parent / r["path"]).read_bytes()) for r in rows])
    spec = col.finish(waves)[:, 0]  # (N, M, T)
    x = np.concatenate([spec.mean(axis=2), spec.std(axis=2)], axis=1)  # (N, 2M)
    return x, np.array([int(r["digit"]) for r in rows])


def run_logistic(dataset: str, train: Path, test: Path, features: Any) -> list[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with timer() as t:
        x, y = features(train)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))
        model.fit(x, y)
    start = time.perf_counter()
    xt, yt = features(test)
    pred = model.predict(xt)
    infer = len(yt) / (time.perf_counter() - start)
    return [row(BENCH, dataset, "sklearn-logistic", "accuracy", accuracy_score(yt, pred)),
            row(BENCH, dataset, "sklearn-logistic", "macro_f1", f1_score(yt, pred, average="macro")),
            row(BENCH, dataset, "sklearn-logistic", "train_s", t.seconds),
            row(BENCH, dataset, "sklearn-logistic", "infer_rows_per_s", infer)]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="write the result rows here")
    parser.add_argument("--quick", action="store_true", help="2,000 MNIST images, fewer epochs")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mnist-rows", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["mnist", "fsdd"], default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    mnist_rows = args.mnist_rows or (2000 if args.quick else 10_000)
    epochs = 3 if args.quick else 12
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-media-") as tmp:
        home = Path(tmp) / "runs"
        if args.only in (None, "mnist"):
            train, test = write_mnist(args.data_dir / "mnist_test", Path(tmp) / "mnist", mnist_rows)
            image = {"name": "image", "column": "path", "kind": "image", "channels": 1, "size": [28, 28],
                     "widths": [16, 32, 64], "augment": True, "flip": False}
            results += run_shoal("mnist", config("mnist", train, "label", image, epochs, args.threads), test, home)
            results += run_logistic("mnist", train, test, pixels)
        if args.only in (None, "fsdd"):
            fsdd = args.data_dir / "fsdd"
            sound = {"name": "sound", "column": "path", "kind": "audio", "sample_rate": 8000, "seconds": 1.0,
                     "n_mels": 40, "widths": [16, 32, 64], "augment": True}
            cfg = config("fsdd", fsdd / "train.csv", "digit", sound, 2 * epochs, args.threads)
            results += run_shoal("fsdd", cfg, fsdd / "test.csv", home)
            results += run_logistic("fsdd", fsdd / "train.csv", fsdd / "test.csv",
                                    lambda p: logmel_stats(p, sound))
    write_json(results, args.json)
    sys.stdout.write(markdown_table(results, ["dataset", "system"], "metric") + "\n")
    return results


if __name__ == "__main__":
    main()
