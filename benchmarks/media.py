"""Media benchmark: shoal's image and audio features against a plain PyTorch script and scikit-learn logistic
regression, same splits; and a student distilled from shoal's image model.

    python benchmarks/media.py --json bench-media.json [--quick] [--data-dir ../shared/data]
    python benchmarks/media.py --write-mnist data/mnist   # the PNG files and CSVs configs/mnist.yaml reads

Datasets:

* ``mnist``: ``mnist_test`` (the 10,000 MNIST test images, IDX gzip). The first ``--mnist-rows`` (10,000;
  ``--quick``: 2,000) are written as PNG files with a CSV of ``path,label``; the first 80 % train, the last
  20 % test (8,000 / 2,000 for the whole set). shoal reads the PNG files through an ``image`` feature.
* ``fsdd``: the Free Spoken Digit Dataset, its own ``train.csv`` / ``test.csv`` (``path,digit,speaker``; 8 kHz
  mono WAV); shoal reads the WAV files through an ``audio`` feature.

Systems:

* ``shoal``: ``shoal.train`` on ``configs/mnist.yaml`` (its data paths pointed at the files written here) and on
  the config of :func:`config` for fsdd (the log-mel CNN, widths 16-32-64, SpecAugment; an ``mlp`` head of 128,
  Adam 3e-3, batches of 64, up to 24 epochs), 10 % of the training rows held out for early stopping, then
  ``shoal.evaluate_file`` on the test file. ``--quick``: 3 epochs (mnist) / 6 (fsdd).
* ``torch-script`` (mnist): the code a user would write without shoal, plain PyTorch and Pillow (no
  torchvision here): the same ResNet written out (:class:`PlainResNet`), the same head, augmentation, optimiser,
  batch size, held-out rows, epochs and early stopping as ``configs/mnist.yaml``.
* ``shoal-student`` (mnist): ``shoal.distill.distill(shoal's run, "mlp")``: the named ``mlp`` student, whose
  image CNN has half the channels and one block per stage (:func:`shoal.distill.student.smaller_media`).
* ``sklearn-logistic``: ``LogisticRegression`` on raw pixels scaled to [0, 1] (mnist), and on the mean and
  standard deviation over frames of the same log-mel spectrogram shoal computes (fsdd, 2 x 40 values: the
  "MFCC means" floor in its log-mel form), standardised; trained on all training rows.

Metrics (one JSON row each: ``{"bench", "dataset", "system", "metric", "value"}``): ``accuracy``, ``macro_f1``
on the test rows; ``train_s`` (wall seconds from files to a model: shoal includes decoding the files in its
first pass and writing the bundle, the peer includes decoding its features); ``infer_rows_per_s`` (test rows
from raw files to class probabilities, batches of 256); ``latency_ms_p50`` / ``latency_ms_p99`` at batch 1 end to
end, one thread: a PNG's bytes in, the class out (shoal: a one-row Arrow table through the bundle's encoder and
model; the script: Pillow, a tensor, its model); the student's ``gain_kept`` ((student - majority class) /
(teacher - majority class) accuracy) and ``speedup_p99`` (teacher p99 / student p99). Torch trains with
``--threads`` threads (2).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, row, timer, write_json  # noqa: E402

BENCH = "media"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LATENCY_ROUNDS = 5  # interleaved rounds per system; the median of their p50s and p99s


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


def run_shoal(dataset: str, cfg: Any, test: Path, home: Path, system: str = "shoal",
              record: Any = None) -> tuple[list[dict[str, Any]], Any]:
    """Train ``cfg`` (or take the finished ``record``: a distilled student), score the test file; (rows, record)."""
    import shoal
    from shoal.data.readers import BadRowSink
    from shoal.data.stream import chunks

    with timer() as t:
        record = record or shoal.train(cfg, home=home)
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
            row(BENCH, dataset, system, "infer_rows_per_s", infer)], record


def shoal_one(run_id: str, home: Path) -> Callable[[bytes], int]:
    """A run's bundle as one served request: an image's bytes in (a one-row Arrow table), the class index out."""
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


# -- torch-script: the same network and budget as plain PyTorch, the code a user would write without shoal ----------
def _plain_modules() -> tuple[type, type]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.skip: nn.Module = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))

    class PlainResNet(nn.Module):
        def __init__(self, channels: int, widths: Sequence[int], blocks: int, hidden: int, classes: int) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                       nn.ReLU()]
            cin = widths[0]
            for i, w in enumerate(widths):
                for b in range(blocks):
                    layers.append(Block(cin, w, 2 if i > 0 and b == 0 else 1))
                    cin = w
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).mean(dim=(2, 3)))

    return Block, PlainResNet


def _shift_rotate(x: Any, shift: float, degrees: float) -> Any:
    """Random shifts (up to ``shift`` of the size) and rotations, edge pixels repeated (torchvision's RandomAffine
    does the same with ``affine_grid`` and ``grid_sample``)."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    angle = (torch.rand(b) * 2 - 1) * math.radians(degrees)
    move = (torch.rand(b, 2) * 2 - 1) * 2 * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _load_pngs(csv_path: Path, mean: float, std: float) -> tuple[Any, Any]:
    import torch

    rows = _read_csv(csv_path)
    x = np.stack([_png_array((csv_path.parent / r["path"]).read_bytes()) for r in rows])
    return torch.from_numpy((x - mean) / std), torch.tensor([int(r["label"]) for r in rows])


def _png_array(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32)[None] / 255  # (1, H, W)


def run_torch_script(dataset: str, cfg: Any, train: Path, test: Path, threads: int
                     ) -> tuple[list[dict[str, Any]], Callable[[bytes], int]]:
    """``cfg``'s image network and training budget in plain PyTorch; (rows, a one-image predict function)."""
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import accuracy_score, f1_score

    from shoal.models.vision import Augment

    f, tr = cfg.features[0], cfg.train
    _, plain = _plain_modules()
    torch.manual_seed(tr.seed)
    with timer() as t:
        x, y = _load_pngs(train, f.mean, f.std)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(tr.seed))
        cut = int(len(y) * cfg.data.valid_fraction)
        valid, fit = order[:cut], order[cut:]
        model = plain(f.channels, f.widths, f.blocks, cfg.model.hidden[0], int(y.max()) + 1)
        opt = torch.optim.Adam(model.parameters(), lr=tr.lr, weight_decay=tr.weight_decay)
        best, best_state, waited = math.inf, None, 0
        for _ in range(tr.epochs):
            model.train()
            for batch in fit[torch.randperm(len(fit))].split(tr.batch_size):
                xb = _shift_rotate(x[batch], Augment.SHIFT, Augment.DEGREES) if f.augment else x[batch]
                loss = F.cross_entropy(model(xb), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val = float(F.cross_entropy(model(x[valid]), y[valid]))
            if val < best:
                best, best_state, waited = val, {k: v.clone() for k, v in model.state_dict().items()}, 0
            else:
                waited += 1
                if waited >= tr.early_stopping_patience:
                    break
        assert best_state is not None
        model.load_state_dict(best_state)
    model.eval()
    start = time.perf_counter()
    xt, yt = _load_pngs(test, f.mean, f.std)
    with torch.no_grad():
        pred = torch.cat([model(b).argmax(1) for b in xt.split(256)]).numpy()
    infer = len(yt) / (time.perf_counter() - start)

    def one(data: bytes) -> int:
        with torch.no_grad():
            return int(model(torch.from_numpy((_png_array(data)[None] - f.mean) / f.std)).argmax())

    return [row(BENCH, dataset, "torch-script", "accuracy", accuracy_score(yt, pred)),
            row(BENCH, dataset, "torch-script", "macro_f1", f1_score(yt, pred, average="macro")),
            row(BENCH, dataset, "torch-script", "train_s", t.seconds),
            row(BENCH, dataset, "torch-script", "infer_rows_per_s", infer)], one


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


def run_mnist(args: argparse.Namespace, tmp: Path, home: Path) -> list[dict[str, Any]]:
    """shoal (configs/mnist.yaml), the torch script, the distilled student and logistic regression on MNIST."""
    import shoal.distill

    train, test = write_mnist(args.data_dir / "mnist_test", tmp / "mnist", args.mnist_rows or
                              (2000 if args.quick else 10_000))
    cfg = mnist_config(train, 3 if args.quick else None, args.threads)
    results, teacher = run_shoal("mnist", cfg, test, home)
    script, script_one = run_torch_script("mnist", cfg, train, test, args.threads)
    results += script
    with timer() as t:  # the student's training time includes the teacher's pass over the training rows
        student = shoal.distill.distill(teacher.run_id, "mlp", home, train={"pictures": False})
    rows, student = run_shoal("mnist", cfg, test, home, "shoal-student", student)
    results += [r if r["metric"] != "train_s" else {**r, "value": t.seconds} for r in rows]
    images = [(test.parent / r["path"]).read_bytes() for r in _read_csv(test)[:256]]
    served = end_to_end({"shoal": shoal_one(teacher.run_id, home), "shoal-student": shoal_one(student.run_id, home),
                         "torch-script": script_one}, images, args.latency_seconds, args.threads)
    for system, (p50, p99) in served.items():
        results += [row(BENCH, "mnist", system, "latency_ms_p50", p50),
                    row(BENCH, "mnist", system, "latency_ms_p99", p99)]
    labels = np.array([int(r["label"]) for r in _read_csv(test)])
    base = float((labels == np.bincount([int(r["label"]) for r in _read_csv(train)]).argmax()).mean())
    got = {(r["system"], r["metric"]): r["value"] for r in results}
    results += [row(BENCH, "mnist", "shoal-student", "gain_kept", (got["shoal-student", "accuracy"] - base)
                    / (got["shoal", "accuracy"] - base)),
                row(BENCH, "mnist", "shoal-student", "speedup_p99", served["shoal"][1] / served["shoal-student"][1])]
    return results + run_logistic("mnist", train, test, pixels)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the result rows here")
    parser.add_argument("--quick", action="store_true", help="2,000 MNIST images, fewer epochs")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mnist-rows", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="of batch-1 calls per system")
    parser.add_argument("--only", choices=["mnist", "fsdd"], default=None)
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
        if args.only in (None, "fsdd"):
            fsdd = args.data_dir / "fsdd"
            sound = {"name": "sound", "column": "path", "kind": "audio", "sample_rate": 8000, "seconds": 1.0,
                     "n_mels": 40, "widths": [16, 32, 64], "augment": True}
            cfg = config("fsdd", fsdd / "train.csv", "digit", sound, 6 if args.quick else 24, args.threads)
            results += run_shoal("fsdd", cfg, fsdd / "test.csv", home)[0]
            results += run_logistic("fsdd", fsdd / "train.csv", fsdd / "test.csv",
                                    lambda p: logmel_stats(p, sound))
    write_json(results, args.json)
    sys.stdout.write(markdown_table(results, ["dataset", "system"], "metric") + "\n")
    return results


if __name__ == "__main__":
    main()
