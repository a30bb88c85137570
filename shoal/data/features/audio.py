"""Audio features: a WAV file as a log-mel spectrogram of fixed size.

Each sound is read with the standard library's ``wave`` (mono 16-bit PCM) or libsndfile (``soundfile``: FLAC,
stereo, 8/24/32-bit or float WAV; channels averaged; anything else is a bad row that says how to convert it),
scaled to [-1, 1], resampled to ``sample_rate`` (:func:`~shoal.data.logmel.resample`), cut
or padded with silence at its end to ``seconds``, then turned into a log-mel spectrogram with torch ops
(:class:`~shoal.data.logmel.LogMel`)::

    cell "rec/7_jackson_0.wav" -> PCM (S0,) at 8 kHz -> (S,) at sample_rate, S = seconds * sample_rate
        -> log-mel (n_mels, T), T = 1 + S // hop  -> the model reads it as a 1-channel image (1, n_mels, T)

``window_ms`` is the Hann window of each frame (the FFT the next power of two at or above it) and ``hop_ms`` the
step between frames. Augmentation (time shifts, SpecAugment masks) happens in the model, in training mode.
"""

from __future__ import annotations

import io
import re
import struct
import wave
from typing import Any, Self

import numpy as np
import torch

from shoal.config import AudioFeature
from shoal.data.features.base import feature_seed
from shoal.data.features.media import MediaColumn, MediaError
from shoal.data.logmel import LogMel, resample

__all__ = ["AUDIO_EXTENSIONS", "AudioColumn", "audio_magic", "usual_pcm16_mono"]

AUDIO_EXTENSIONS = (".wav", ".wave", ".flac")
FINISH_ROWS = 256  # sounds turned into spectrograms at once
CONVERT = "convert it, e.g. `ffmpeg -i IN -ac 1 -c:a pcm_s16le OUT.wav`"
#: A WAV header's sample count at or past this is a streaming writer's placeholder (a data size of ~4 GiB, written
#: before the length was known), not a promise a truncated file breaks: media files are at most a few MiB.
STREAMED_FRAMES = 1 << 30


def audio_magic(data: bytes) -> bool:
    """Whether ``data`` starts like a WAV file (RIFF ... WAVE) or a FLAC file (fLaC)."""
    return (data[:4] == b"RIFF" and data[8:12] == b"WAVE") or data[:4] == b"fLaC"


# The usual mono 16-bit PCM WAV's first 36 bytes: "RIFF", its size, "WAVE", "fmt ", the fmt chunk's size, format
# tag, channels, rate, bytes per second, block align, bits per sample; its "data" chunk follows the fmt chunk.
_RIFF_FMT = struct.Struct("<4sI4s4sIHHIIHH")
_CHUNK = struct.Struct("<4sI")


def usual_pcm16_mono(data: bytes) -> tuple[memoryview, int, int] | None:
    """(the samples as a view of ``data``, the samples the header promises, the rate) of a mono 16-bit PCM WAV laid
    out as most are (the fmt chunk first, the data chunk right after it), read as ``wave`` reads it: no further
    than the data chunk's whole samples, the RIFF chunk's size and the file; None for any other layout (``wave``
    reads those). ``wave``'s chunk objects cost ~10 us a file, as much as the rest of a short sound's decoding."""
    if len(data) < _RIFF_FMT.size + _CHUNK.size:
        return None
    riff, riff_size, kind, fmt, fmt_size, tag, channels, rate, _, _, bits = _RIFF_FMT.unpack_from(data)
    if (riff, kind, fmt, tag, channels, bits) != (b"RIFF", b"WAVE", b"fmt ", 1, 1, 16) or fmt_size < 16:
        return None
    at = 20 + fmt_size + (fmt_size & 1)  # chunks are padded to an even size
    start = at + _CHUNK.size
    if len(data) < start or riff_size + 8 < start:  # the data chunk's header past the file or the RIFF chunk
        return None
    name, size = _CHUNK.unpack_from(data, at)
    if name != b"data":
        return None
    end = start + min(size - size % 2, riff_size + 8 - start)  # whole samples, within the RIFF chunk ...
    return memoryview(data)[start:end], size // 2, rate  # ... and the file (a slice stops at its end)


def _pcm16_mono(data: bytes) -> tuple[bytes | memoryview, int] | None:
    """The 16-bit samples and rate of a mono 16-bit PCM WAV, read with ``wave`` (the common case, exact; the usual
    layout by :func:`usual_pcm16_mono`, the same bytes); None for any other file (``soundfile`` reads those)."""
    if data[:4] != b"RIFF":
        return None
    raw: bytes | memoryview
    usual = usual_pcm16_mono(data)
    if usual is not None:
        raw, frames, rate = usual
    else:
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                if w.getnchannels() != 1 or w.getsampwidth() != 2:
                    return None
                frames, rate = w.getnframes(), w.getframerate()
                raw = w.readframes(frames)
        except (wave.Error, EOFError):
            return None
    # a data chunk shorter than its header says: a truncated file, unless the size is a streaming writer's
    # placeholder (0xFFFFFFFF bytes: the length was not known when the header was written)
    if len(raw) < 2 * frames and frames < STREAMED_FRAMES:
        raise MediaError(f"a truncated WAV file: its header says {frames:,} samples, it holds {len(raw) // 2:,} "
                         "(cut short, e.g. by an interrupted copy)")
    return raw, rate


def sound_info(data: bytes) -> tuple[int, float] | None:
    """(sample rate, seconds) of a WAV or FLAC file, None when it cannot be read."""
    if data[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                return w.getframerate(), w.getnframes() / max(w.getframerate(), 1)
        except (wave.Error, EOFError):
            pass
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except (RuntimeError, TypeError, ValueError):
        return None
    return int(info.samplerate), float(info.frames) / max(int(info.samplerate), 1)


def read_sound(data: bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """A WAV or FLAC file -> (samples (S,) float32 in [-1, 1], rate): channels averaged to mono; 16-bit mono WAV
    by the standard library's ``wave``, anything else (FLAC, stereo, 8/24/32-bit or float WAV) by libsndfile
    (``soundfile``). ``max_seconds``: read at most that much. MediaError when it is neither or damaged."""
    pcm = _pcm16_mono(data)
    if pcm is not None:
        raw, rate = pcm
        need = len(raw) // 2 if max_seconds is None else min(len(raw) // 2, int(np.ceil(max_seconds * rate)) + 1)
        x = np.frombuffer(raw[: need * 2], dtype="<i2").astype(np.float32)
        x *= np.float32(1 / 32768)  # a power of two: exactly x / 32768, in place
        return x, rate
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            rate = int(f.samplerate)
            frames = -1 if max_seconds is None else int(np.ceil(max_seconds * rate)) + 1
            x = f.read(frames=frames, dtype="float32", always_2d=True)  # (S, channels)
    except (RuntimeError, TypeError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        why = re.sub(r"^Error opening <[^>]*>: ", "", str(err))  # not the in-memory file's address
        raise MediaError(f"not a readable WAV or FLAC file ({why}); {CONVERT}") from None
    return x.mean(axis=1, dtype=np.float32), rate


class AudioColumn(MediaColumn):
    """An audio feature: WAV or FLAC (channels averaged) -> ``sample_rate`` -> ``seconds`` -> log-mel
    (1, n_mels, frames)."""

    kind = "audio"
    formats = "base64 of a WAV or FLAC file"

    def __init__(self, name: str, column: str, seed: int, sample_rate: int = 16_000, seconds: float = 1.0,
                 n_mels: int = 40, window_ms: float = 25.0, hop_ms: float = 10.0,
                 widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1, augment: bool = False) -> None:
        super().__init__(name, column, seed)
        self.sample_rate = sample_rate
        self.seconds = seconds
        self.n_mels = n_mels
        self.window_ms = window_ms
        self.hop_ms = hop_ms
        self.widths = tuple(widths)
        self.blocks = blocks
        self.augment = augment
        self.samples = max(1, round(seconds * sample_rate))
        self.win_length = max(2, round(window_ms * sample_rate / 1000))
        self.hop_length = max(1, round(hop_ms * sample_rate / 1000))
        self.n_fft = 1 << (self.win_length - 1).bit_length()  # the next power of two >= the window
        self._logmel: LogMel | None = None

    @classmethod
    def from_config(cls, f: AudioFeature) -> AudioColumn:
        return cls(f.name, f.source, feature_seed(f.name), sample_rate=f.sample_rate, seconds=f.seconds,
                   n_mels=f.n_mels, window_ms=f.window_ms, hop_ms=f.hop_ms, widths=tuple(f.widths),
                   blocks=f.blocks, augment=f.augment)

    @property
    def frames(self) -> int:
        return 1 + self.samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int, int]:
        return 1, self.n_mels, self.frames

    @property
    def logmel(self) -> LogMel:
        if self._logmel is None:
            self._logmel = LogMel(self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels)
        return self._logmel

    def decode(self, data: bytes) -> np.ndarray:
        """A WAV or FLAC file -> its first ``seconds`` at ``sample_rate`` (samples,) float32, mono, padded with
        silence."""
        if not audio_magic(data):
            raise MediaError(f"not a WAV or FLAC file ({len(data):,} bytes starting {data[:12]!r}); {CONVERT}")
        x, rate = read_sound(data, self.seconds)  # (S0,) in [-1, 1)
        x = resample(x, rate, self.sample_rate)[: self.samples]
        if len(x) == self.samples:  # a sound as long as the feature's or longer: its first samples, no copy
            return x
        out = np.zeros(self.samples, np.float32)
        out[: len(x)] = x  # silence after a shorter sound
        return out

    def magic(self, data: bytes) -> bool:
        return audio_magic(data)

    def placeholder(self) -> bytes:
        """A WAV of ``seconds`` of silence at ``sample_rate`` (mono, 16-bit PCM)."""
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(bytes(2 * self.samples))
        return out.getvalue()

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Waveforms (N, S) -> log-mel spectrograms (N, 1, n_mels, frames)."""
        out = np.empty((len(raw), *self.shape), np.float32)
        with torch.no_grad():  # in slices: the STFT of a whole chunk would hold (N, n_fft/2 + 1, T) complex values
            for start in range(0, len(raw), FINISH_ROWS):
                part = torch.from_numpy(raw[start:start + FINISH_ROWS])
                out[start:start + FINISH_ROWS] = self.logmel(part).unsqueeze(1).numpy()  # (n, 1, M, T)
        return out

    def options(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "seconds": self.seconds, "n_mels": self.n_mels,
                "window_ms": self.window_ms, "hop_ms": self.hop_ms, "widths": list(self.widths),
                "blocks": self.blocks, "augment": self.augment}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        return cls(d["name"], d["column"], int(d.get("seed", 0)), sample_rate=int(d.get("sample_rate", 16_000)),
                   seconds=float(d.get("seconds", 1.0)), n_mels=int(d.get("n_mels", 40)),
                   window_ms=float(d.get("window_ms", 25.0)), hop_ms=float(d.get("hop_ms", 10.0)),
                   widths=tuple(int(v) for v in d.get("widths", (16, 32, 64))),
                   blocks=int(d.get("blocks", 1)), augment=bool(d.get("augment", False)))
