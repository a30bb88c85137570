"""The media benchmark's ``torch-script`` peer: the code a user would write without shoal, in plain PyTorch.

Each dataset gets shoal's network written out layer for layer, the same input pipeline written the way a user
would (Pillow for PNG files; the standard library's ``wave``, ``torch.stft`` and a mel filterbank for WAV files:
torchvision and torchaudio are not installed here), and the same training budget as shoal's config: Adam, batch
size, held-out rows (shoal's own, when given), epochs, the learning rate's schedule (a one-cycle one as torch's
``OneCycleLR``, without its momentum cycling, as shoal's), early stopping on the held-out loss with the best
weights restored, and the same augmentation (shifts and rotations for images; a time shift and SpecAugment masks
for spectrograms)::

    mnist: PNG -> (1, 28, 28) / 255, (x - mean) / std -> PlainResNet        -> (B, 10)
    fsdd:  WAV -> (S,) in [-1, 1) -> PlainLogMel (M, T) -> PlainSpectrogramCNN -> (B, 10)

:func:`run_image_script` and :func:`run_audio_script` return the result rows, a one-request predict function
(a file's bytes in, the class out) for the latency comparison, and the held-out accuracy after each epoch with the
seconds since the call began (:data:`Curve`: the time each accuracy took, for a comparison at equal accuracy).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import row, timer  # noqa: E402

__all__ = ["PlainLogMel", "PlainResNet", "PlainSpectrogramCNN", "png_array", "run_audio_script",
           "run_image_script", "wav_array"]

BENCH = "media"
SYSTEM = "torch-script"
Predict = Callable[[bytes], int]
Curve = list[tuple[float, float]]  # (seconds since the training call began, held-out accuracy) after each epoch


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- the networks ---------------------------------------------------------------------------------------------------
class Block(nn.Module):
    """A basic residual block (He et al. 2016): two 3x3 convolutions, a projection where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.skip: nn.Module = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))


class PlainResNet(nn.Module):
    """(B, C, H, W) -> stem, stages of :class:`Block`, global average pool -> MLP head -> (B, classes)."""

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
        return self.head(self.features(x).mean(dim=(2, 3)))  # (B, widths[-1]) -> (B, classes)


class PlainSpectrogramCNN(nn.Module):
    """(B, 1, M, T) log-mel -> batch-norm -> [conv 3x3, batch-norm, ReLU] x blocks per width, 2x2 max-pool
    between widths -> global max pool (B, widths[-1]) -> MLP head -> (B, classes)."""

    def __init__(self, widths: Sequence[int], blocks: int, hidden: int, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]
        cin = 1
        for i, w in enumerate(widths):
            for _ in range(blocks):
                layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))  # (B, widths[-1]) -> (B, classes)


# -- augmentation ---------------------------------------------------------------------------------------------------
def shift_rotate(x: torch.Tensor, shift: float, degrees: float) -> torch.Tensor:
    """Random shifts (up to ``shift`` of the size) and rotations, edge pixels repeated (torchvision's RandomAffine
    does the same with ``affine_grid`` and ``grid_sample``)."""
    b = x.shape[0]
    angle = (torch.rand(b) * 2 - 1) * math.radians(degrees)
    move = (torch.rand(b, 2) * 2 - 1) * 2 * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def spec_augment(x: torch.Tensor, bands: float, frames: float, shift: float) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on (B, 1, M, T): one random time shift for the batch, then per example a mask
    of up to ``bands`` of the mel bands and one of up to ``frames`` of the frames, filled with its mean."""
    b, _, m, t = x.shape
    x = torch.roll(x, int(torch.randint(-int(shift * t), int(shift * t) + 1, ())), dims=3)
    fill = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    for size, length, axis in ((m, bands, 2), (t, frames, 3)):
        width = (torch.rand(b) * length * size).long()  # (B,)
        start = (torch.rand(b) * (size - width + 1)).long()
        pos = torch.arange(size)
        mask = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, size)
        mask = mask[:, None, :, None] if axis == 2 else mask[:, None, None, :]  # (B, 1, M, 1) or (B, 1, 1, T)
        x = torch.where(mask, fill, x)
    return x


# -- reading the files ----------------------------------------------------------------------------------------------
def png_array(data: bytes) -> np.ndarray:
    """A PNG's grey pixels (1, H, W) in [0, 1]."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32)[None] / 255  # (1, H, W)


def wav_array(data: bytes, sample_rate: int, samples: int) -> np.ndarray:
    """A mono 16-bit WAV at ``sample_rate`` -> its first ``samples`` samples (samples,) in [-1, 1), padded with
    silence. FSDD is recorded at the 8 kHz the config asks for, so the script does not resample."""
    with wave.open(io.BytesIO(data), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, sample_rate):
            raise ValueError(f"expected mono 16-bit PCM at {sample_rate} Hz, got {w.getnchannels()} channels, "
                             f"{8 * w.getsampwidth()}-bit, {w.getframerate()} Hz")
        pcm = np.frombuffer(w.readframes(samples), "<i2").astype(np.float32) / 32768  # (S0,)
    out = np.zeros(samples, np.float32)
    out[: len(pcm)] = pcm
    return out


def mel_filterbank(n_freqs: int, sample_rate: int, n_mels: int) -> torch.Tensor:
    """HTK-scale triangular filters (n_mels, n_freqs) from 0 Hz to Nyquist, as torchaudio's ``melscale_fbanks``."""
    freqs = torch.linspace(0, sample_rate // 2, n_freqs)  # (F,)
    mel_max = 2595.0 * math.log10(1.0 + (sample_rate / 2) / 700.0)
    points = 700.0 * (10 ** (torch.linspace(0, mel_max, n_mels + 2) / 2595.0) - 1.0)  # (M + 2,) in Hz
    diff = points[1:] - points[:-1]  # (M + 1,)
    slopes = points[None, :] - freqs[:, None]  # (F, M + 2)
    down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]  # (F, M) each
    return torch.clamp(torch.minimum(down, up), min=0).T.contiguous()  # (M, F)


class PlainLogMel:
    """Waves (B, S) -> log-mel (B, n_mels, 1 + S // hop) with ``torch.stft``: a Hann window of ``window_ms`` in an
    FFT of the next power of two, every ``hop_ms``, centred frames padded with zeros, ``log(mel power + 1e-6)``."""

    def __init__(self, sample_rate: int, n_mels: int, window_ms: float, hop_ms: float) -> None:
        self.win = round(window_ms * sample_rate / 1000)
        self.hop = round(hop_ms * sample_rate / 1000)
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window = torch.hann_window(self.win)
        self.filterbank = mel_filterbank(self.n_fft // 2 + 1, sample_rate, n_mels)

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waves, self.n_fft, self.hop, self.win, self.window, center=True, pad_mode="constant",
                          return_complex=True)  # (B, F, T)
        return torch.log(self.filterbank @ spec.abs().square() + 1e-6)  # (M, F) @ (B, F, T) -> (B, M, T)


# -- training and scoring -------------------------------------------------------------------------------------------
def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: Any,
        augment: Callable[[torch.Tensor], torch.Tensor], held_out: torch.Tensor | None = None,
        started: float | None = None) -> tuple[nn.Module, Curve]:
    """``cfg.train``'s loop: Adam (its rate constant, or ``OneCycleLR`` stepped every batch), shuffled batches,
    the ``held_out`` rows (a bool mask; None: ``cfg.data.valid_fraction`` of the rows drawn) held out, early stopping
    on their loss, the best weights restored; with the held-out accuracy after each epoch, timed from ``started``
    (a ``time.perf_counter()``; None: from the call)."""
    tr = cfg.train
    started = time.perf_counter() if started is None else started
    if held_out is None:
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(tr.seed))
        cut = int(len(y) * cfg.data.valid_fraction)
        valid, rows = order[:cut], order[cut:]
    else:
        valid, rows = held_out.nonzero().ravel(), (~held_out).nonzero().ravel()
    curve: Curve = []
    opt = torch.optim.Adam(model.parameters(), lr=tr.lr, weight_decay=tr.weight_decay)
    schedule = None
    if tr.lr_schedule == "onecycle":  # cycle_momentum=False: shoal's one-cycle moves the rate alone
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tr.lr, pct_start=tr.warmup, cycle_momentum=False,
                                                       total_steps=tr.epochs * math.ceil(len(rows) / tr.batch_size))
    elif tr.lr_schedule != "constant":
        raise ValueError(f"the plain script has no {tr.lr_schedule!r} schedule")
    best, best_state, waited, best_epoch = math.inf, None, 0, 0
    for epoch in range(1, tr.epochs + 1):
        model.train()
        for batch in rows[torch.randperm(len(rows))].split(tr.batch_size):
            loss = F.cross_entropy(model(augment(x[batch])), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
        model.eval()
        with torch.no_grad():
            logits = model(x[valid])
            val = float(F.cross_entropy(logits, y[valid]))
            curve.append((time.perf_counter() - started, float((logits.argmax(1) == y[valid]).float().mean())))
        if val < best:
            best, best_state, waited, best_epoch = val, {k: v.clone() for k, v in model.state_dict().items()}, 0, epoch
        else:
            waited += 1
            if waited >= tr.early_stopping_patience:
                break
    sys.stderr.write(f"{SYSTEM}: {epoch} epochs, the best held-out loss after epoch {best_epoch}\n")
    assert best_state is not None
    model.load_state_dict(best_state)
    return model.eval(), curve


def held_out_mask(paths: Sequence[str], held_out: set[str] | None) -> torch.Tensor | None:
    """The rows whose file is in ``held_out`` (shoal's validation rows), as a bool mask; None when not given."""
    return None if held_out is None else torch.tensor([p in held_out for p in paths])


def score(dataset: str, model: nn.Module, load: Callable[[Path], tuple[torch.Tensor, torch.Tensor]], test: Path,
          train_s: float) -> list[dict[str, Any]]:
    """Accuracy, macro F1, the training seconds, and rows/s from the test files to classes in batches of 256."""
    from sklearn.metrics import accuracy_score, f1_score

    start = time.perf_counter()
    xt, yt = load(test)
    with torch.no_grad():
        pred = torch.cat([model(b).argmax(1) for b in xt.split(256)]).numpy()
    infer = len(yt) / (time.perf_counter() - start)
    return [row(BENCH, dataset, SYSTEM, "accuracy", accuracy_score(yt, pred)),
            row(BENCH, dataset, SYSTEM, "macro_f1", f1_score(yt, pred, average="macro")),
            row(BENCH, dataset, SYSTEM, "train_s", train_s),
            row(BENCH, dataset, SYSTEM, "infer_rows_per_s", infer)]


def run_image_script(dataset: str, cfg: Any, train: Path, test: Path,
                     held_out: set[str] | None = None) -> tuple[list[dict[str, Any]], Predict, Curve]:
    """``cfg``'s image network and budget on ``train`` (``held_out``: the files to hold out), scored on ``test``."""
    from shoal.models.vision import Augment

    f = cfg.features[0]

    def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        rows = read_csv(path)
        x = np.stack([png_array((path.parent / r[f.source]).read_bytes()) for r in rows])  # (N, 1, H, W)
        return torch.from_numpy((x - f.mean) / f.std), torch.tensor([int(r[cfg.label.column]) for r in rows])

    def augment(x: torch.Tensor) -> torch.Tensor:
        return shift_rotate(x, Augment.SHIFT, Augment.DEGREES) if f.augment else x

    torch.manual_seed(cfg.train.seed)
    with timer() as t:
        x, y = load(train)
        model = PlainResNet(f.channels, f.widths, f.blocks, cfg.model.hidden[0], int(y.max()) + 1)
        _, curve = fit(model, x, y, cfg, augment, held_out_mask([r[f.source] for r in read_csv(train)], held_out),
                       t.started)

    def one(data: bytes) -> int:
        with torch.no_grad():
            return int(model(torch.from_numpy((png_array(data)[None] - f.mean) / f.std)).argmax())

    return score(dataset, model, load, test, t.seconds), one, curve


def run_audio_script(dataset: str, cfg: Any, train: Path, test: Path,
                     held_out: set[str] | None = None) -> tuple[list[dict[str, Any]], Predict, Curve]:
    """``cfg``'s spectrogram network and budget on ``train`` (``held_out``: the files to hold out), scored on
    ``test``."""
    from shoal.models.audio import SpecAugment

    f = cfg.features[0]
    samples = round(f.seconds * f.sample_rate)
    logmel = PlainLogMel(f.sample_rate, f.n_mels, f.window_ms, f.hop_ms)
    masks = SpecAugment()  # only its sizes: the masks are written out in spec_augment

    def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        rows = read_csv(path)
        waves = torch.from_numpy(np.stack([wav_array((path.parent / r[f.source]).read_bytes(), f.sample_rate,
                                                     samples) for r in rows]))  # (N, S)
        x = torch.cat([logmel(w) for w in waves.split(256)]).unsqueeze(1)  # (N, 1, M, T)
        return x, torch.tensor([int(r[cfg.label.column]) for r in rows])

    def augment(x: torch.Tensor) -> torch.Tensor:
        return spec_augment(x, masks.bands, masks.frames, masks.shift) if f.augment else x

    torch.manual_seed(cfg.train.seed)
    with timer() as t:
        x, y = load(train)
        model = PlainSpectrogramCNN(f.widths, f.blocks, cfg.model.hidden[0], int(y.max()) + 1)
        _, curve = fit(model, x, y, cfg, augment, held_out_mask([r[f.source] for r in read_csv(train)], held_out),
                       t.started)

    def one(data: bytes) -> int:
        with torch.no_grad():
            wave_ = torch.from_numpy(wav_array(data, f.sample_rate, samples))[None]  # (1, S)
            return int(model(logmel(wave_).unsqueeze(1)).argmax())

    return score(dataset, model, load, test, t.seconds), one, curve
