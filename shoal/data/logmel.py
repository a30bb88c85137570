"""Log-mel spectrograms in plain torch ops (a short-time Fourier transform, a matrix product, a log), no torchaudio.

The mel scale (Stevens, Volkmann & Newman 1937) in the HTK form ``mel(f) = 2595 log10(1 + f / 700)``; the
filterbank is ``n_mels`` triangles, evenly spaced in mels between ``fmin`` and ``fmax``, each peaking at 1, over
the bins of a ``n_fft``-point FFT::

    wave (B, S) -> STFT, Hann window of win_length, every hop_length samples -> |X|^2 (B, n_fft/2 + 1, T)
                -> filterbank (n_mels, n_fft/2 + 1) @ power -> log(mel + 1e-6) (B, n_mels, T)

with ``T = 1 + S // hop_length`` (frames centred on their sample, the signal padded with zeros at both ends).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LogMel", "mel_filterbank", "resample"]

LOG_FLOOR = 1e-6  # log(0 + floor): silence is about -13.8, not -inf


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters (n_mels, n_fft // 2 + 1) float32: row m weights the FFT bins of band m."""
    fmax = sample_rate / 2 if fmax is None else fmax
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (F,) the frequency of each FFT bin
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    rising = (bins[None] - lower) / np.maximum(centre - lower, 1e-9)  # (M, F)
    falling = (upper - bins[None]) / np.maximum(upper - centre, 1e-9)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``wave`` (S,) sampled at ``rate`` -> at ``target``: band-limited resampling in the frequency domain (the
    spectrum cut or zero-padded, as ``scipy.signal.resample``), which also filters out what ``target`` cannot
    hold (no aliasing)."""
    if rate == target or len(wave) == 0:
        return wave
    n = len(wave)
    m = max(1, round(n * target / rate))
    spectrum = np.fft.rfft(wave)  # (n // 2 + 1,)
    out = np.zeros(m // 2 + 1, dtype=spectrum.dtype)
    keep = min(len(spectrum), len(out))
    out[:keep] = spectrum[:keep]
    return (np.fft.irfft(out, m) * (m / n)).astype(np.float32)


class LogMel(nn.Module):
    """Waveforms (B, S) -> log-mel spectrograms (B, n_mels, T), T = 1 + S // hop_length.

    The short-time Fourier transform is written as a strided 1-D convolution with the real and imaginary parts
    of the windowed DFT basis as its kernels: the same numbers as ``torch.stft(..., center=True,
    pad_mode="constant")`` (tested), in ops every ONNX runtime has (``torch.stft``'s complex output does not
    export), so the same module can run inside an exported graph.
    """

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int) -> None:
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} is longer than n_fft {n_fft}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        left = (n_fft - win_length) // 2  # torch.stft centres a shorter window in the FFT frame
        # the frame's samples outside the window weigh 0: the kernel is the window's taps alone (a DFT of n_fft
        # points over win_length samples), and the signal's padding shrinks by as much on each side
        self.pads = (n_fft // 2 - left, n_fft // 2 - (n_fft - left - win_length))
        window = np.hanning(win_length + 1)[:-1]  # periodic Hann, as torch.hann_window
        k = np.arange(n_fft // 2 + 1)[:, None]  # (F, 1) frequency bins
        angle = 2 * np.pi * k * np.arange(left, left + win_length)[None] / n_fft  # (F, win_length)
        basis = np.concatenate([np.cos(angle), np.sin(angle)]) * window  # (2F, win): real, then imaginary parts
        self.basis: torch.Tensor
        self.filterbank: torch.Tensor
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)).unsqueeze(1), persistent=False)
        self.register_buffer("filterbank", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = F.pad(wave.unsqueeze(1), self.pads)  # (B, 1, S + n_fft - (n_fft - win)): frames centred on their sample
        spec = F.conv1d(x, self.basis, stride=self.hop_length)  # (B, 2F, T): real and imaginary parts
        b, _, t = spec.shape
        power = spec.reshape(b, 2, -1, t).square().sum(dim=1)  # (B, 2, F, T) -> (B, F, T) = re^2 + im^2
        mel = torch.matmul(self.filterbank, power)  # (M, F) @ (B, F, T) -> (B, M, T)
        return torch.log(mel + LOG_FLOOR)
