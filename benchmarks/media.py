"""Media benchmark: shoal's image and audio features against a plain PyTorch script and scikit-learn logistic
regression, same splits; and a student distilled from shoal's model.

    python benchmarks/media.py --json bench-media.json [--quick] [--only mnist|fsdd] [--data-dir ../shared/data]
    python benchmarks/media.py --write-mnist data/mnist   # the PNG files and CSVs configs/mnist.yaml reads

Datasets:

* ``mnist``: ``mnist_test`` (the 10,000 MNIST test images, IDX gzip). The first ``--mnist-rows`` (10,000;
  ``--quick``: 2,000) are written as PNG files with a CSV of ``path,label``; the first 80 % train, the last
  20 % test (8,000 / 2,000 for the whole set). shoal reads the PNG files through an ``image`` feature.
* ``fsdd``: the Free Spoken Digit Dataset, its own ``train.csv`` / ``test.csv`` (``path,digit,speaker``; 8 kHz
  mono WAV); shoal reads the WAV files through an ``audio`` feature.
* ``fsdd-heldout-speaker``: all FSDD recordings (train.csv and test.csv) of every speaker but one to train, that
  speaker's to test: the first speaker in sorted order (:func:`write_heldout_speaker`). shoal and
  ``sklearn-logistic`` only.

Systems:

* ``shoal``: ``shoal.train`` on ``configs/mnist.yaml`` (its data paths pointed at the files written here) and on
  the config of :func:`config` for fsdd (the log-mel CNN, widths 16-32-64, SpecAugment; an ``mlp`` head of 128,
  Adam 3e-3, batches of 64, up to 24 epochs), 10 % of the training rows held out for early stopping, then
  ``shoal.evaluate_file`` on the test file. ``--quick``: 3 epochs (mnist) / 6 (fsdd).
* ``torch-script`` (mnist, fsdd): the code a user would write without shoal (:mod:`media_script`): the same
  network written out in plain PyTorch, the files read with Pillow (images) or ``wave`` + ``torch.stft`` + a mel
  filterbank (sounds), the same augmentation, optimiser, batch size, held-out rows, epochs and early stopping.
* ``shoal-student`` (mnist, fsdd): ``shoal.distill.distill(shoal's run, "mlp")``: the named ``mlp`` student,
  whose CNN has half the channels and one block per stage (:func:`shoal.distill.student.smaller_media`).
* ``sklearn-logistic``: ``LogisticRegression`` on raw pixels scaled to [0, 1] (mnist), and on the mean and
  standard deviation over frames of the same log-mel spectrogram shoal computes (fsdd, 2 x 40 values: the
  "MFCC means" floor in its log-mel form), standardised; trained on all training rows.

Metrics (one JSON row each: ``{"bench", "dataset", "system", "metric", "value"}``): ``accuracy``, ``macro_f1``
on the test rows; ``train_s`` (wall seconds from files to a model: shoal includes decoding the files in its
first pass and writing the bundle, the peer includes decoding its features); ``infer_rows_per_s`` (test rows
from raw files to class probabilities, batches of 256); ``latency_ms_p50`` / ``latency_ms_p99`` at batch 1 end to
end, one thread: a PNG's or WAV's bytes in, the class out (shoal: a one-row Arrow table through the bundle's
encoder and model; the script: its decoding, a tensor, its model); the student's ``gain_kept`` ((student -
majority class) / (teacher - majority class) accuracy) and ``speedup_p99`` (teacher p99 / student p99). Torch
trains with ``--threads`` threads (2). At equal accuracy (:func:`equal_accuracy`): the script holds out shoal's
validation rows, both record their held-out accuracy after each epoch, and ``train_s_to_common_accuracy`` is each
one's seconds to the best held-out accuracy both reached (``held_out_accuracy_common``): early stopping ends the
two runs after different numbers of epochs, at different accuracies, so ``train_s`` alone compares unlike models.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, row, timer, write_json  # noqa: E402

from shoal.training.callbacks import Callbacks  # noqa: E402 - light: no torch

BENCH = "media"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
HELDOUT = "fsdd-heldout-speaker"
LATENCY_ROUNDS = 5  # interleaved rounds per system; the median of their p50s and p99s
SOUND = {"name": "sound", "column": "path", "kind": "audio", "sample_rate": 8000, "seconds": 1.0, "n_mels": 40,
         "widths": [16, 32, 64], "augment": True}  # FSDD's feature, as in configs/fsdd.yaml


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


def mnist_config(train: Path, epochs: int | None, threads: int) -> Any:
    """``configs/mnist.yaml`` reading ``train`` (the test file is scored apart), ``threads`` threads, no pictures."""
    from shoal.config import load_config, parse_config

    doc = load_config(CONFIGS / "mnist.yaml").resolved()
    doc["data"] = {**doc["data"], "train": str(train), "test": None}
    doc["train"] = {**doc["train"], "threads": threads, "pictures": False, **({"epochs": epochs} if epochs else {})}
    return parse_config(doc, source="configs/mnist.yaml, as the benchmark runs it")


class Validations(Callbacks):
    """Training callbacks that keep (seconds since ``started``, held-out accuracy) at each validation: shoal's side
    of :data:`media_script.Curve`."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.curve: list[tuple[float, float]] = []

    def on_eval(self, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.curve.append((time.perf_counter() - self.started, float(metrics["accuracy"])))


def run_shoal(dataset: str, cfg: Any, test: Path, home: Path, system: str = "shoal",
              record: Any = None) -> tuple[list[dict[str, Any]], Any, list[tuple[float, float]]]:
    """Train ``cfg`` (or take the finished ``record``: a distilled student), score the test file; (rows, record,
    the held-out accuracy after each epoch with the seconds since the call began: empty for a given record)."""
    import shoal
    from shoal.data.readers import BadRowSink
    from shoal.data.stream import chunks

    with timer() as t:
        seen = Validations(t.started)
        record = record or shoal.train(cfg, home=home, callbacks=seen)
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
    return [row(BENCH, dataset, system, "accuracy", report["accuracy"]),
            row(BENCH, dataset, system, "macro_f1", report["macro_f1"]),
            row(BENCH, dataset, system, "train_s", t.seconds),
            row(BENCH, dataset, system, "infer_rows_per_s", infer)], record, seen.curve


def shoal_one(run_id: str, home: Path) -> Callable[[bytes], int]:
    """A run's bundle as one served request: a file's bytes in (a one-row Arrow table), the class index out."""
    import pyarrow as pa

    import shoal
    from shoal.data.readers import BadRowSink, Chunk

    bundle = shoal.load(run_id, home=home)
    column = bundle.encoder.media_features[0].column
    lines = np.arange(1)

    def one(data: bytes) -> int:
        table = pa.table({column: pa.array([data], pa.binary())})
        batch = bundle.encoder.encode(Chunk(table, lines, "request"), BadRowSink("error"), with_label=False)
        return int(bundle.predict_proba(batch)[0].argmax())

    return one


def shoal_raw_one(run_id: str, home: Path) -> Callable[[bytes], int]:
    """A run's bundle through its self-contained graph (``shoal export --raw``, written here): a file's bytes in
    (decoded by ``raw_feed``: Pillow or the WAV/FLAC reader), resize / log-mel and the model in one ONNX Runtime
    call, the class index out."""
    import shoal
    from shoal.export.raw import RawOnnxModel, export_raw_onnx

    record = shoal.load_model(run_id, home=home).record
    assert record is not None
    report = export_raw_onnx(record.artifact_dir / "bundle", parity_rows=32)
    model = RawOnnxModel(report.path, threads=1)
    column = shoal.load(run_id, home=home).encoder.media_features[0].column

    def one(data: bytes) -> int:
        return int(model.predict_proba([{column: data}])[0].argmax())

    return one


def end_to_end(systems: dict[str, Callable[[bytes], int]], images: Sequence[bytes], seconds: float,
               threads: int) -> dict[str, tuple[float, float]]:
    """(p50, p99) ms per call of each system at batch 1, one thread, in :data:`LATENCY_ROUNDS` interleaved rounds
    (the load of other jobs falls on every system alike): the median of the rounds' figures."""
    import torch

    from shoal.runtime.latency import latency

    torch.set_num_threads(1)
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
    try:
        for _ in range(LATENCY_ROUNDS):
            for name, one in systems.items():
                cycle = itertools.cycle(images)
                stats = latency(lambda o=one, c=cycle: o(next(c)), seconds=seconds / LATENCY_ROUNDS)
                got[name].append((stats.p50_ms, stats.p99_ms))
    finally:
        torch.set_num_threads(threads)
    return {name: (float(np.median([p for p, _ in v])), float(np.median([p for _, p in v]))) for name, v in got.items()}


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


def _value(rows: Sequence[dict[str, Any]], system: str, metric: str) -> float:
    return float(next(r["value"] for r in rows if r["system"] == system and r["metric"] == metric))


def equal_accuracy(dataset: str, curves: dict[str, tuple[list[tuple[float, float]], float]],
                   level: float | None = None) -> list[dict[str, Any]]:
    """Each system's seconds to a model as accurate on the same held-out rows as the least accurate system's best:
    the time of its first epoch at that accuracy, plus what its call took after its last epoch (the best weights
    restored, shoal's final validation and bundle). ``curves``: system -> (its (seconds, held-out accuracy) after
    each epoch, its whole training seconds); ``level``: that accuracy, given (another pair of runs'). Rows
    ``held_out_accuracy_common`` and ``train_s_to_common_accuracy``."""
    common = min(max(a for _, a in curve) for curve, _ in curves.values()) if level is None else level
    rows = []
    for system, (curve, total) in curves.items():
        reached = next((s for s, a in curve if a >= common), curve[-1][0])  # ``level`` never reached: all of it
        rows += [row(BENCH, dataset, system, "held_out_accuracy_common", common),
                 row(BENCH, dataset, system, "train_s_to_common_accuracy", reached + total - curve[-1][0])]
    return rows


def majority(train: Path, test: Path, label: str) -> float:
    """The test accuracy of always answering the training rows' most frequent class."""
    counts = np.bincount([int(r[label]) for r in _read_csv(train)])
    return float((np.array([int(r[label]) for r in _read_csv(test)]) == counts.argmax()).mean())


def run_systems(dataset: str, cfg: Any, train: Path, test: Path, home: Path, script: Any, features: Any,
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """shoal, the torch script (``script``: :mod:`media_script`'s runner), the student distilled from shoal's run,
    the latencies of all three at batch 1 and logistic regression on ``features`` of ``train`` / ``test``."""
    import shoal.distill

    results, teacher, curve = run_shoal(dataset, cfg, test, home)
    held_out = set(pq.read_table(teacher.artifact_dir / "valid-split.parquet", columns=[cfg.features[0].source])
                   .column(0).to_pylist())  # the script holds out shoal's validation rows: one held-out accuracy
    rows, script_one, script_curve = script(dataset, cfg, train, test, held_out)
    common = equal_accuracy(dataset, {"shoal": (curve, _value(results, "shoal", "train_s")),
                                      "torch-script": (script_curve, _value(rows, "torch-script", "train_s"))})
    results += rows
    if args.abba:  # again in the other order (shoal, script, script, shoal): the means cancel a drifting machine
        again, _, script_again = script(dataset, cfg, train, test, held_out)
        shoal_again, _, curve_again = run_shoal(dataset, cfg, test, home)
        seconds = {"shoal": [_value(results, "shoal", "train_s"), _value(shoal_again, "shoal", "train_s")],
                   "torch-script": [_value(rows, "torch-script", "train_s"), _value(again, "torch-script", "train_s")]}
        print(f"{dataset}: training seconds, shoal, script, script, shoal: {seconds['shoal'][0]:.1f}, "
              f"{seconds['torch-script'][0]:.1f}, {seconds['torch-script'][1]:.1f}, {seconds['shoal'][1]:.1f}")
        second = equal_accuracy(dataset, {"shoal": (curve_again, seconds["shoal"][1]),
                                          "torch-script": (script_again, seconds["torch-script"][1])},
                                level=_value(common, "shoal", "held_out_accuracy_common"))
        results = [r if r["metric"] != "train_s" or r["system"] not in seconds
                   else {**r, "value": float(np.mean(seconds[r["system"]]))} for r in results]
        common = [r if r["metric"] != "train_s_to_common_accuracy" else {**r, "value": (r["value"] + b["value"]) / 2}
                  for r, b in zip(common, second, strict=True)]  # to the first pair's common accuracy
        results += [row(BENCH, dataset, system, "train_runs", 2) for system in seconds]
    results += common
    with timer() as t:  # the student's training time includes the teacher's pass over the training rows
        student = shoal.distill.distill(teacher.run_id, "mlp", home, train={"pictures": False})
    rows, student, _ = run_shoal(dataset, cfg, test, home, "shoal-student", student)
    results += [r if r["metric"] != "train_s" else {**r, "value": t.seconds} for r in rows]
    files = [(test.parent / r[cfg.features[0].source]).read_bytes() for r in _read_csv(test)[:256]]
    served = end_to_end({"shoal": shoal_one(teacher.run_id, home), "shoal-student": shoal_one(student.run_id, home),
                         "shoal-raw": shoal_raw_one(teacher.run_id, home),
                         "shoal-student-raw": shoal_raw_one(student.run_id, home),
                         "torch-script": script_one}, files, args.latency_seconds, args.threads)
    for system, (p50, p99) in served.items():
        results += [row(BENCH, dataset, system, "latency_ms_p50", p50),
                    row(BENCH, dataset, system, "latency_ms_p99", p99)]
    base = majority(train, test, cfg.label.column)
    got = {(r["system"], r["metric"]): r["value"] for r in results}
    results.append(row(BENCH, dataset, "shoal-student", "speedup_p99", served["shoal"][1] / served["shoal-student"][1]))
    results.append(row(BENCH, dataset, "shoal-student-raw", "speedup_p99",
                       served["shoal-raw"][1] / served["shoal-student-raw"][1]))
    if got["shoal", "accuracy"] > base:  # a teacher no better than the majority class has no gain to keep
        results.append(row(BENCH, dataset, "shoal-student", "gain_kept", (got["shoal-student", "accuracy"] - base)
                           / (got["shoal", "accuracy"] - base)))
    return results + run_logistic(dataset, train, test, features)


def run_mnist(args: argparse.Namespace, tmp: Path, home: Path) -> list[dict[str, Any]]:
    """shoal (configs/mnist.yaml), the torch script, the distilled student and logistic regression on MNIST."""
    from media_script import run_image_script

    train, test = write_mnist(args.data_dir / "mnist_test", tmp / "mnist", args.mnist_rows or
                              (2000 if args.quick else 10_000))
    cfg = mnist_config(train, 3 if args.quick else None, args.threads)
    return run_systems("mnist", cfg, train, test, home, run_image_script, pixels, args)


def write_heldout_speaker(fsdd: Path, out: Path) -> tuple[Path, Path, str]:
    """All of FSDD's recordings (its train.csv and test.csv) but one speaker's to train, that speaker's to test:
    the first speaker in sorted order. Two CSVs of ``path,digit,speaker`` with absolute paths; (train, test,
    the speaker)."""
    rows = [{**r, "path": str((fsdd / r["path"]).resolve())}
            for r in _read_csv(fsdd / "train.csv") + _read_csv(fsdd / "test.csv")]
    speaker = sorted({r["speaker"] for r in rows})[0]
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.csv", out / "test.csv"
    for path, keep in zip(paths, (lambda s: s != speaker, lambda s: s == speaker), strict=True):
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, ["path", "digit", "speaker"])
            writer.writeheader()
            writer.writerows({k: r[k] for k in ("path", "digit", "speaker")} for r in rows if keep(r["speaker"]))
    return *paths, speaker


def run_fsdd(args: argparse.Namespace, home: Path) -> list[dict[str, Any]]:
    """Every system on FSDD's own split."""
    from media_script import run_audio_script

    fsdd = args.data_dir / "fsdd"
    cfg = config("fsdd", fsdd / "train.csv", "digit", SOUND, 6 if args.quick else 24, args.threads)
    return run_systems("fsdd", cfg, fsdd / "train.csv", fsdd / "test.csv", home, run_audio_script,
                       lambda p: logmel_stats(p, SOUND), args)


def run_heldout_speaker(args: argparse.Namespace, tmp: Path, home: Path) -> list[dict[str, Any]]:
    """shoal and logistic regression on FSDD with a speaker held out (:func:`write_heldout_speaker`)."""
    train, test, speaker = write_heldout_speaker(args.data_dir / "fsdd", tmp / "fsdd-heldout")
    sys.stderr.write(f"{HELDOUT}: testing on speaker {speaker!r}, training on the others\n")
    cfg = config("fsdd-heldout", train, "digit", SOUND, 6 if args.quick else 24, args.threads)
    results = run_shoal(HELDOUT, cfg, test, home)[0]
    return results + run_logistic(HELDOUT, train, test, lambda p: logmel_stats(p, SOUND))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the result rows here")
    parser.add_argument("--quick", action="store_true", help="2,000 MNIST images, fewer epochs")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mnist-rows", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="of batch-1 calls per system")
    parser.add_argument("--only", choices=["mnist", "fsdd"], default=None)
    parser.add_argument("--abba", action="store_true",
                        help="train shoal and the script twice each (shoal, script, script, shoal); train_s and "
                             "train_s_to_common_accuracy are the means of the two runs")
    parser.add_argument("--write-mnist", type=Path, metavar="DIR",
                        help="only write the 10,000 MNIST PNG files and train.csv / test.csv (8,000 / 2,000) to DIR")
    args = parser.parse_args(argv)
    if args.write_mnist:
        for path in write_mnist(args.data_dir / "mnist_test", args.write_mnist, 10_000):
            sys.stdout.write(f"wrote {path}\n")
        return []
    if args.json is None:
        parser.error("--json is required (or --write-mnist DIR)")
    import torch

    torch.set_num_threads(args.threads)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-media-") as tmp:
        home = Path(tmp) / "runs"
        if args.only in (None, "mnist"):
            results += run_mnist(args, Path(tmp), home)
            write_json(results, args.json)  # what finished, should a later dataset fail
        if args.only in (None, "fsdd"):
            results += run_fsdd(args, home)
            write_json(results, args.json)
            results += run_heldout_speaker(args, Path(tmp), home)
    write_json(results, args.json)
    sys.stdout.write(markdown_table(results, ["dataset", "system"], "metric") + "\n")
    return results


if __name__ == "__main__":
    main()
